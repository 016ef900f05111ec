"""Issue 16: capture files are bounded regular files inside the capture directory; error text where
output should be is an unreadable capture (exit 2), not drift; names from captures are escaped."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

NAT = str(ROOT / "profiles" / "nat-default.yaml")
INSYNC = ROOT / "tests" / "fixtures" / "audit" / "insync" / "nat-default"
runner = CliRunner()


def audit(captures, *extra):
    result = runner.invoke(app, ["audit", NAT, "--captures", str(captures), *extra], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def caps(tmp_path):
    root = tmp_path / "caps"
    shutil.copytree(INSYNC, root)
    return root


def test_the_copy_is_in_sync(caps):
    assert audit(caps)[0] == 0


def test_capture_linked_to_a_secret_outside_is_not_read(caps, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    target = caps / "caldera02" / "virsh-net-list.txt"
    target.unlink()
    target.symlink_to(secret)
    code, text = audit(caps)
    assert code == 2 and "virsh-net-list.txt" in text and "outside" in text
    assert "SECRETHASH" not in text


def test_capture_subdirectory_linked_out_is_not_read(caps, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(caps / "caldera02" / "net", elsewhere)
    shutil.rmtree(caps / "caldera02" / "net")
    (caps / "caldera02" / "net").symlink_to(elsewhere)
    code, text = audit(caps)
    assert code == 2 and "outside" in text


def test_host_directory_linked_out_is_not_read(caps, tmp_path):
    """The host directory is resolved once for all its files: linked out, none of them is read."""
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(caps / "caldera02"), str(elsewhere))
    (caps / "caldera02").symlink_to(elsewhere)
    code, text = audit(caps)
    assert code == 2 and "outside" in text


def test_link_inside_the_capture_is_fine(caps):
    listing = caps / "caldera02" / "virsh-net-list.txt"
    os.rename(listing, caps / "caldera02" / "listing.txt")
    listing.symlink_to("listing.txt")
    assert audit(caps)[0] == 0


@pytest.mark.parametrize("kind", ["fifo", "zero", "urandom"])
def test_capture_that_is_no_regular_file_fails_fast(caps, kind):
    target = caps / "caldera02" / "brctl-show.txt"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(f"/dev/{kind}")
    started = time.monotonic()
    code, text = audit(caps)
    assert time.monotonic() - started < 2
    assert code == 2 and "brctl-show.txt" in text and "Traceback" not in text


def test_layout_file_that_is_a_fifo_fails_fast(caps):
    os.mkfifo(caps / "caldera02" / "capture-layout.txt")
    code, text = audit(caps)
    assert code == 2 and "capture-layout.txt" in text and "FIFO" in text


def test_oversized_capture_is_refused(caps, monkeypatch):
    import vnetgen.observe as observe

    monkeypatch.setattr(observe, "CAPTURE_LIMIT", 4096)
    assert all(p.stat().st_size < 4096 for p in caps.rglob("*") if p.is_file())
    (caps / "caldera02" / "net" / "default.xml").write_text("<network>" + " " * 5000 + "</network>")
    code, text = audit(caps)
    assert code == 2 and "default.xml" in text and "limit" in text


@pytest.mark.parametrize("content", ["can't get info Operation not supported\n",
                                     "br0: can't get info No such device\n",
                                     "/sys/class/net/br0/bridge: No such file or directory\n"])
def test_brctl_error_instead_of_a_table_is_unreadable_not_drift(caps, content):
    (caps / "caldera02" / "brctl-show.txt").write_text(content)
    code, text = audit(caps)
    assert code == 2, text
    assert "brctl-show.txt:1:" in text and "brctl failed" in text


def test_empty_brctl_capture_still_means_no_bridges(caps):
    """brctl show prints nothing at all when there are no bridges (recorded): that is read, not refused."""
    (caps / "caldera02" / "brctl-show.txt").write_text("")
    code, text = audit(caps)
    assert code != 2 and "brctl failed" not in text


@pytest.mark.parametrize("name", ["virsh-net-list.txt", "virsh-list.txt"])
def test_virsh_error_instead_of_a_table_is_unreadable(caps, name):
    (caps / "caldera02" / name).write_text("error: failed to connect to the hypervisor\n\x1b[2J")
    code, text = audit(caps)
    assert code == 2 and f"{name}:1: virsh failed" in text
    (caps / "caldera02" / name).write_text("")
    code, text = audit(caps)
    assert code == 2 and "empty capture" in text


def test_error_message_quotes_only_a_short_escaped_excerpt(caps):
    junk = "\x1b]0;owned\x07" + "A" * 5000
    (caps / "caldera02" / "virsh-net-list.txt").write_text(
        " Name State Autostart Persistent\n----------\n" + junk + "\n")
    code, text = audit(caps)
    assert code == 2
    assert "\x1b" not in text and "\x07" not in text
    assert len(text) < 600


def _extra_network(caps, name: str) -> None:
    listing = caps / "caldera02" / "virsh-net-list.txt"
    with open(listing, "ab") as handle:
        handle.write(b" " + name.encode("utf-8", "surrogateescape") + b"   inactive   no   yes\n")


def test_names_from_captures_are_escaped_in_text(caps):
    _extra_network(caps, "evil\x1b[2Jnet")
    code, text = audit(caps)
    assert code == 0, text  # network-extra is a warning
    assert "\x1b" not in text and "evil\\x1b[2Jnet" in text


def test_json_report_is_valid_utf8_whatever_the_capture_held(caps):
    _extra_network(caps, "bad\udcffname")
    code, text = audit(caps, "--format", "json")
    assert code == 0
    text.encode("utf-8")  # no lone surrogates
    report = json.loads(text)
    objects = [d["object"] for d in report["hosts"]["caldera02"]["drift"]]
    assert "network/bad\\xffname" in objects, objects

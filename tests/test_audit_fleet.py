"""The audit of a generated 50-host fleet (the bench's profile, 10 networks a host) with known drift.

Two expectations, neither computed by the code under test:
- the (host, kind, object) of every drift follows from the edits made to the in-sync captures
  (`_perturb` says what each edit breaks);
- the whole report, text and JSON, equals the one held in tests/fixtures/audit/fleet50/, written by
  the audit as it was before its speed work (e01d70c): a faster audit must say exactly the same.

Some hosts' network XML is rewritten the way libvirt prints it (single quotes, `connections=`,
`<nat><port/>`, prefix= for netmask=): none of that is drift.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench  # noqa: E402  (the bench's fleet generator and capture writer)

HELD = ROOT / "tests" / "fixtures" / "audit" / "fleet50"
HOSTS = 50


def _libvirt_style(path: Path, h: int) -> None:
    """The same definition as libvirt would print it: by meaning, no drift."""
    text = path.read_text()
    text = re.sub(r'="([^"]*)"', r"='\1'", text)
    text = text.replace("<network>", "<network connections='1'>" if h % 2 else "<network>")
    text = text.replace("<forward mode='nat'/>",
                        "<forward mode='nat'>\n    <nat>\n      <port start='1024' end='65535'/>\n    </nat>\n  </forward>")
    text = text.replace("netmask='255.255.255.0'", "prefix='24'")
    path.write_text(text)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def _perturb(captures: Path, h: int) -> set:
    """Break host `h`'s capture in one of eight ways; the drift that must be reported, as (kind, object)."""
    host = captures / f"h{h:05d}"
    b = h % 250
    k = h % 8
    if h % 5 == 0:
        for xml in sorted((host / "net").glob("*.xml")):
            _libvirt_style(xml, h)
    q = "'" if h % 5 == 0 else '"'
    if k == 1:
        _edit(host / "net" / "net1.xml", f"end={q}172.17.{b}.200{q}", f"end={q}172.17.{b}.150{q}")
        return {("dhcp-range", "network/net1")}
    if k == 2:
        _edit(host / "virsh-net-list.txt", " net2   active   yes         yes\n", "")
        (host / "net" / "net2.xml").unlink()
        return {("network-missing", "network/net2")}
    if k == 3:
        _edit(host / "virsh-net-list.txt", " net3   active   yes         yes", " net3   inactive yes         yes")
        return {("network-inactive", "network/net3")}
    if k == 4:
        _edit(host / "net" / "net4.xml", f"stp={q}on{q}", f"stp={q}off{q}")
        _edit(host / "virsh-net-list.txt", " net6   active   yes         yes", " net6   active   no          yes")
        return {("stp", "network/net4"), ("network-autostart", "network/net6")}
    if k == 5:
        _edit(host / "virsh-net-list.txt", " net8   active", " stray   active   yes         yes\n net8   active")
        return {("network-extra", "network/stray")}
    if k == 6:
        _edit(host / "brctl-show.txt", "no\t\teth0", "no\t\teth1")
        return {("port-missing", "bridge/br0"), ("port-extra", "bridge/br0")}
    if k == 7:
        _edit(host / "sysctl.txt", "net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0")
        _edit(host / "net" / "net5.xml", f"ip={q}172.21.{b}.201{q}", f"ip={q}172.21.{b}.202{q}")
        return {("ip-forward", "host"), ("dhcp-host", "network/net5")}
    return set()


def make_fleet(directory: Path) -> tuple:
    """The profile, its captures with drift, and the drift each host must show."""
    profile = directory / "fleet.yaml"
    profile.write_text(bench.fleet(HOSTS, vms=0))
    captures = directory / "captures"
    bench.write_captures(str(profile), str(captures))
    expected = {f"h{h:05d}": _perturb(captures, h) for h in range(HOSTS)}
    return profile, captures, expected


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return make_fleet(tmp_path_factory.mktemp("fleet50"))


def _audit(profile: Path, captures: Path, *options: str):
    from vnetgen.cli import app

    return CliRunner().invoke(app, ["audit", str(profile), "--captures", str(captures), *options])


def test_fleet_drift_is_what_the_edits_broke(fleet):
    profile, captures, expected = fleet
    run = _audit(profile, captures, "--format", "json")
    assert run.exit_code == 1, run.output
    report = json.loads(run.output)
    found = {host: {(d["kind"], d["object"]) for d in audit["drift"]} for host, audit in report["hosts"].items()}
    assert found == expected
    assert sum(1 for drift in expected.values() if drift) >= HOSTS * 3 // 4


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_fleet_report_is_the_one_held(fleet, fmt):
    profile, captures, _ = fleet
    run = _audit(profile, captures, "--format", fmt)
    assert run.exit_code == 1, run.output
    held = (HELD / f"report.{fmt}").read_text()
    # The held report names its captures' directory as it was when written.
    assert run.output.replace(str(captures), "CAPTURES") == held


if __name__ == "__main__":   # rewrite the held reports: python tests/test_audit_fleet.py (only with the old audit)
    import tempfile

    from vnetgen.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        profile, captures, _ = make_fleet(Path(tmp))
        HELD.mkdir(parents=True, exist_ok=True)
        for fmt in ("json", "text"):
            out = CliRunner().invoke(app, ["audit", str(profile), "--captures", str(captures), "--format", fmt])
            (HELD / f"report.{fmt}").write_text(out.output.replace(str(captures), "CAPTURES"))

"""Air-gapped delivery: reproducible archives that unpack into a runnable bundle; tamper detection."""
from __future__ import annotations

import subprocess
import tarfile


from conftest import ROOT, require_tool
from vnetgen.cli import app
from typer.testing import CliRunner

TWO = str(ROOT / "profiles" / "two-hosts.yaml")


def build(out, *extra):
    result = CliRunner().invoke(app, ["build", TWO, "-o", str(out), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_archives_are_byte_reproducible(tmp_path, monkeypatch):
    build(tmp_path / "a", "--archive")
    monkeypatch.setenv("TZ", "America/Lima")
    build(tmp_path / "b", "--archive")
    for name in ("archives/fleet.tar.gz", "archives/hosts/caldera02.tar.gz", "archives/hosts/caldera03.tar.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_archive_members_are_normalized_and_complete(tmp_path):
    build(tmp_path / "b", "--archive")
    with tarfile.open(tmp_path / "b" / "archives" / "hosts" / "caldera03.tar.gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        kinds = [m.isdir() for m in members]
        assert kinds == sorted(kinds, reverse=True)  # directories first, then files
        assert names == sorted(n for n in names if tar.getmember(n).isdir()) + sorted(
            n for n in names if tar.getmember(n).isfile())
        assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.mtime == 946684800 for m in members)
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    assert set(files) == {f"vnetgen-caldera03/{p}" for p in (
        "REVIEW.md", "SHA256SUMS", "caldera03/runbook.sh", "caldera03/rollback.sh", "caldera03/capture.sh",
        "caldera03/networks/default.xml", "caldera03/ifcfg/ifcfg-ens2", "caldera03/hooks/network")}
    for name, data in files.items():
        assert data == (tmp_path / "b" / name.split("/", 1)[1]).read_bytes()
    with tarfile.open(tmp_path / "b" / "archives" / "hosts" / "caldera03.tar.gz") as tar:
        assert tar.getmember("vnetgen-caldera03/caldera03/runbook.sh").mode == 0o755


def test_archives_are_not_in_sha256sums_and_check_sees_them(tmp_path):
    out = tmp_path / "b"
    build(out, "--archive")
    assert "archives/" not in (out / "SHA256SUMS").read_text()
    result = CliRunner().invoke(app, ["build", TWO, "-o", str(out), "--check", "--archive"])
    assert result.exit_code == 0, result.output
    (out / "archives" / "fleet.tar.gz").write_bytes(b"x")
    result = CliRunner().invoke(app, ["build", TWO, "-o", str(out), "--check", "--archive"])
    assert result.exit_code == 1 and "differs: archives/fleet.tar.gz (a rebuild writes binary content)" in result.output


def _dry_run(runbook):
    return subprocess.run(["bash", str(runbook), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LIBVIRT_DEFAULT_URI": "test:///default"})


def test_unpacked_host_archive_passes_its_checksums(tmp_path):
    require_tool("bash", "sha256sum")
    build(tmp_path / "b", "--archive")
    with tarfile.open(tmp_path / "b" / "archives" / "hosts" / "caldera02.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked")
    result = _dry_run(tmp_path / "unpacked" / "vnetgen-caldera02" / "caldera02" / "runbook.sh")
    assert "ok: require_checksums caldera02" in result.stdout, result.stdout + result.stderr


def test_runbook_detects_an_altered_file(tmp_path):
    require_tool("bash", "sha256sum")
    out = tmp_path / "b"
    build(out)
    assert "ok: require_checksums caldera02" in _dry_run(out / "caldera02" / "runbook.sh").stdout
    xml = out / "caldera02" / "networks" / "default.xml"
    xml.write_text(xml.read_text().replace("192.168.122.254", "192.168.122.250"))
    result = _dry_run(out / "caldera02" / "runbook.sh")
    assert "the bundle was altered since it was built" in result.stdout
    assert "this check fails here: require_checksums caldera02" in result.stdout


def test_runbook_refuses_sums_that_lack_a_file_it_uses(tmp_path):
    """Deleting a file's line from SHA256SUMS used to let the runbook install that file unverified."""
    require_tool("bash", "sha256sum")
    out = tmp_path / "b"
    build(out)
    xml = out / "caldera02" / "networks" / "default.xml"
    xml.write_text(xml.read_text().replace("192.168.122.254", "192.168.122.250"))
    sums = out / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True)
                            if not line.endswith("  caldera02/networks/default.xml\n")))
    result = _dry_run(out / "caldera02" / "runbook.sh")
    assert "SHA256SUMS has no checksum for caldera02/networks/default.xml" in result.stdout, result.stdout
    assert "this check fails here: require_checksums caldera02" in result.stdout


def test_runbook_refuses_sums_emptied_of_its_host(tmp_path):
    require_tool("bash", "sha256sum")
    out = tmp_path / "b"
    build(out)
    sums = out / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if "  caldera02/" not in line))
    result = _dry_run(out / "caldera02" / "runbook.sh")
    assert "SHA256SUMS has no checksum for" in result.stdout and "caldera02/runbook.sh" in result.stdout
    assert "this check fails here: require_checksums caldera02" in result.stdout

"""Issue 16: vnetgen writes, replaces and deletes only inside DIR, never through a link, and reads only
bounded regular files (profile, manifest, bundle files under --check)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

NAT = str(ROOT / "profiles" / "nat-default.yaml")
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def built(tmp_path, name="bundle"):
    out = tmp_path / name
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 0, text
    return out


# --- the manifest -----------------------------------------------------------------


@pytest.mark.parametrize("entry", ["../outside/x", "{outside}/x", "caldera02/../../outside/x", "./x", "a//b"])
def test_force_refuses_a_manifest_entry_outside_dir(tmp_path, entry):
    """Reproduction 1: a crafted manifest made `build --force` delete files outside DIR."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("precious")
    out = built(tmp_path)
    (out / "notes.txt").write_text("foreign, so --force merges")
    manifest = out / ".vnetgen-manifest"
    manifest.write_text(manifest.read_text() + entry.format(outside=outside) + "\n")
    code, text = invoke("build", NAT, "-o", str(out), "--force")
    assert code == 2, text
    assert ".vnetgen-manifest:" in text and "refusing entry" in text
    assert (outside / "x").read_text() == "precious"
    assert (out / "notes.txt").exists()


def test_manifest_entry_through_a_link_is_not_deleted(tmp_path):
    """An entry that resolves outside DIR through a link in DIR: the link is foreign, nothing is deleted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("precious")
    out = built(tmp_path)
    (out / "sub").symlink_to(outside)
    manifest = out / ".vnetgen-manifest"
    manifest.write_text(manifest.read_text() + "sub/x\n")
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "sub" in text and "did not write" in text
    code, text = invoke("build", NAT, "-o", str(out), "--force")
    assert code == 0, text
    assert (outside / "x").read_text() == "precious"
    assert (out / "sub").is_symlink()


def test_manifest_that_is_a_device_or_fifo_fails_fast(tmp_path):
    out = built(tmp_path)
    manifest = out / ".vnetgen-manifest"
    manifest.unlink()
    os.mkfifo(manifest)
    started = time.monotonic()
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "FIFO" in text and ".vnetgen-manifest" in text
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "symbolic link" in text
    assert time.monotonic() - started < 5


def test_oversized_manifest_is_refused(tmp_path, monkeypatch):
    import vnetgen.safeio as safeio

    monkeypatch.setattr(safeio, "MANIFEST_LIMIT", 1000)
    out = built(tmp_path)
    (out / ".vnetgen-manifest").write_text("x\n" * 1000)
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "limit" in text


# --- links in DIR -----------------------------------------------------------------


def test_force_never_writes_through_a_linked_host_directory(tmp_path):
    """Reproduction 2: DIR/<host> -> /elsewhere made --force write the host's files there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "caldera02").symlink_to(elsewhere)
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "caldera02" in text and "did not write" in text
    code, text = invoke("build", NAT, "-o", str(out), "--force")
    assert code == 2 and "symbolic link" in text, text
    assert list(elsewhere.iterdir()) == []
    assert (out / "caldera02").is_symlink()


def test_foreign_link_to_a_directory_is_listed_and_not_deleted(tmp_path):
    """Without --force, a foreign link used to vanish silently with the swap."""
    target = tmp_path / "t"
    target.mkdir()
    (target / "keep").write_text("k")
    out = built(tmp_path)
    (out / "mylink").symlink_to(target)
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "mylink" in text
    assert (out / "mylink").is_symlink() and (target / "keep").exists()


def test_foreign_link_listed_in_the_manifest_is_still_foreign(tmp_path):
    out = built(tmp_path)
    (out / "REVIEW.md").unlink()
    (out / "REVIEW.md").symlink_to(tmp_path / "anything")
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "REVIEW.md" in text and "did not write" in text
    assert (out / "REVIEW.md").is_symlink()


def test_force_never_replaces_a_linked_file(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = built(tmp_path)
    (out / "SHA256SUMS").unlink()
    (out / "SHA256SUMS").symlink_to(victim)
    code, text = invoke("build", NAT, "-o", str(out), "--force")
    assert code == 2 and "symbolic link" in text
    assert victim.read_text() == "precious" and (out / "SHA256SUMS").is_symlink()


def test_output_directory_that_is_a_link_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    code, text = invoke("build", NAT, "-o", str(link))
    assert code == 2 and "symbolic link" in text
    assert list(real.iterdir()) == [] and link.is_symlink()


def test_empty_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("x")
    for extra in ([], ["--force"], ["--check"]):
        code, text = invoke("build", NAT, "-o", "", *extra)
        assert code == 2 and "-o ''" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_stale_entry_is_deleted_only_when_a_regular_file(tmp_path):
    """--force drops files vnetgen wrote before and no longer writes — but not a directory put there."""
    out = built(tmp_path)
    (out / "notes.txt").write_text("foreign")
    manifest = out / ".vnetgen-manifest"
    (out / "caldera02" / "old.txt").write_text("ours once")
    (out / "caldera02" / "olddir").mkdir()
    manifest.write_text(manifest.read_text() + "caldera02/old.txt\ncaldera02/olddir\n")
    code, text = invoke("build", NAT, "-o", str(out), "--force")
    assert code == 0, text
    assert not (out / "caldera02" / "old.txt").exists()
    assert (out / "caldera02" / "olddir").is_dir() and (out / "notes.txt").exists()


# --- --check reads ----------------------------------------------------------------


def test_check_refuses_a_fifo_or_device_in_the_bundle(tmp_path):
    out = built(tmp_path)
    review = out / "REVIEW.md"
    review.unlink()
    os.mkfifo(review)
    started = time.monotonic()
    code, text = invoke("build", NAT, "-o", str(out), "--check")
    assert code == 2 and "REVIEW.md" in text and "FIFO" in text
    review.unlink()
    review.symlink_to("/dev/urandom")
    code, text = invoke("build", NAT, "-o", str(out), "--check")
    assert code == 2 and "REVIEW.md" in text and "symbolic link" in text
    assert time.monotonic() - started < 5


def test_check_refuses_an_oversized_bundle_file(tmp_path, monkeypatch):
    import vnetgen.safeio as safeio

    out = built(tmp_path)
    monkeypatch.setattr(safeio, "BUNDLE_FILE_LIMIT", 100)
    code, text = invoke("build", NAT, "-o", str(out), "--check")
    assert code == 2 and "limit" in text


# --- the profile --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "zero", "urandom", "directory"])
def test_profile_that_is_not_a_regular_file_fails_fast(tmp_path, kind):
    path = tmp_path / "p.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(f"/dev/{kind}")
    started = time.monotonic()
    code, text = invoke("validate", str(path))
    assert time.monotonic() - started < 2
    assert code == 2 and f"{path}:1:1: error:" in text and "not a regular file" in text, text
    assert "Traceback" not in text


def test_oversized_profile_is_refused(tmp_path, monkeypatch):
    import vnetgen.safeio as safeio

    monkeypatch.setattr(safeio, "PROFILE_LIMIT", 64)
    path = tmp_path / "p.yaml"
    path.write_text("vnetgen: 1\n" + "# padding\n" * 20)
    code, text = invoke("validate", str(path))
    assert code == 2 and "limit" in text


def test_profile_through_a_link_still_loads(tmp_path):
    link = tmp_path / "p.yaml"
    link.symlink_to(NAT)
    assert invoke("validate", str(link))[0] == 0


# --- leftovers and concurrent builds ---------------------------------------------------


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_dirs_of_killed_builds_are_cleaned(tmp_path):
    from vnetgen.bundle import _me

    host = _me().split("@", 1)[1]
    dead = tmp_path / f".vnetgen-{_dead_pid()}@{host}-abcd1234"
    dead.mkdir()
    (dead / "half").write_text("x")
    old_style = tmp_path / ".vnetgen-zz9_ab12"
    old_style.mkdir()
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    recent_old_style = tmp_path / ".vnetgen-yy9_ab12"   # may belong to an older vnetgen running now
    recent_old_style.mkdir()
    alive = tmp_path / f".vnetgen-{os.getpid()}@{host}-live1234"  # a build still running
    alive.mkdir()
    not_ours = tmp_path / ".vnetgen-notes"
    not_ours.mkdir()
    link = tmp_path / ".vnetgen-old-ab12cd34"
    link.symlink_to(tmp_path / "t")
    built(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert dead.name not in left and old_style.name not in left
    assert {recent_old_style.name, alive.name, not_ours.name, link.name} <= set(left)


def test_a_killed_build_leaves_nothing_after_the_next(tmp_path):
    """A build killed while staging: the next build into the same place removes its staging dir."""
    code = ("import os, sys, vnetgen.bundle as b\n"
            "real = b._swap\n"
            "def die(*a):\n    os._exit(9)\n"
            "b._swap = die\n"
            "from vnetgen.cli import main\n"
            f"sys.argv = ['vnetgen', 'build', {NAT!r}, '-o', {str(tmp_path / 'bundle')!r}]\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == 9, done.stderr
    assert any(p.name.startswith(".vnetgen-") for p in tmp_path.iterdir())
    built(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_concurrent_builds_into_one_dir_are_serialized(tmp_path):
    out = tmp_path / "bundle"
    profiles = [NAT, str(ROOT / "profiles" / "two-hosts.yaml")]
    procs = [subprocess.Popen([sys.executable, "-m", "vnetgen", "build", profiles[i % 2], "-o", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    manifest = (out / ".vnetgen-manifest").read_text().split()
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".vnetgen-manifest")
    assert found == sorted(manifest)  # one whole bundle, never two half-merged


def test_lock_is_held_while_writing(tmp_path, monkeypatch):
    import fcntl

    import vnetgen.bundle as bundle

    seen = []

    def probe(*args):
        fd = os.open(str(tmp_path), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("locked")
        finally:
            os.close(fd)
        return real(*args)

    real = bundle._swap
    monkeypatch.setattr(bundle, "_swap", probe)
    built(tmp_path)
    assert seen == ["locked"]


def test_a_waiting_build_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    import fcntl

    import vnetgen.bundle as bundle

    monkeypatch.setattr(bundle, "LOCK_WAIT", 0.2)
    fd = os.open(str(tmp_path), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code, text = invoke("build", NAT, "-o", str(tmp_path / "bundle"))
    finally:
        os.close(fd)
    assert code == 2 and "another vnetgen build" in text
    assert not (tmp_path / "bundle").exists()

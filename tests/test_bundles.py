"""Whole bundles of every shipped profile: snapshots of every file, byte determinism, layout."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import PROFILES, ROOT


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_bundle_snapshot(build_bundle, file_snapshot, profile):
    bundle = build_bundle(profile)
    for path, artifact in sorted(bundle.files.items()):
        if artifact.binary:
            continue   # ansible/bundles/HOST.tar: tests/test_ansible.py checks its members
        assert artifact.text == file_snapshot(name=path.replace("/", "--")), path


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_bundle_layout(build_bundle, profile):
    bundle = build_bundle(profile)
    assert {"REVIEW.md", "SHA256SUMS"} <= set(bundle.files)
    for plan in bundle.plans:
        for name in ("runbook.sh", "rollback.sh", "capture.sh"):
            assert bundle.files[f"{plan.name}/{name}"].mode == 0o755
        for net in plan.networks.values():
            if net.net.state != "absent":
                assert f"{plan.name}/networks/{net.name}.xml" in bundle.files
        needs_hook = any(n.net.ports and n.mode.libvirt_bridge for n in plan.networks.values())
        assert (f"{plan.name}/hooks/network" in bundle.files) == needs_hook
    sums = bundle.files["SHA256SUMS"].text.splitlines()
    tars = {p for p in bundle.files if p.startswith("ansible/bundles/")}   # they carry SHA256SUMS
    assert tars == {f"ansible/bundles/{plan.name}.tar" for plan in bundle.plans}
    assert sorted(line.split("  ", 1)[1] for line in sums) == sorted(set(bundle.files) - {"SHA256SUMS"} - tars)


def _build_in_subprocess(profile, out, env_extra):
    env = dict(os.environ, **env_extra)
    out.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "vnetgen", "build", str(profile), "-o", str(out)], check=True,
                   env=env, cwd=out.parent, capture_output=True)
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_same_profile_same_bytes(tmp_path, profile):
    """Two builds in different processes, directories, time zones, locales and hash seeds agree."""
    a = _build_in_subprocess(profile, tmp_path / "one" / "out", {"TZ": "UTC", "PYTHONHASHSEED": "1"})
    b = _build_in_subprocess(profile, tmp_path / "two" / "deeper" / "out",
                             {"TZ": "Asia/Kolkata", "PYTHONHASHSEED": "2", "LC_ALL": "C"})
    assert a == b


def test_profile_name_only_is_recorded(build_bundle):
    """Bundles are relocatable: nothing of the build machine's paths leaks into them."""
    bundle = build_bundle(ROOT / "profiles" / "two-hosts.yaml")
    for artifact in bundle.files.values():
        assert str(ROOT) not in artifact.text


def test_streamed_build_writes_what_the_in_memory_build_holds(pm, tmp_path):
    """`vnetgen build` writes a Stream (each host's files as they are rendered, then REVIEW.md,
    ansible/ and SHA256SUMS): the same files, bytes and modes as build()'s whole bundle, and the
    stream keeps only REVIEW.md's part of each plan (no network XML, checks or runbook text)."""
    from vnetgen.bundle import Stream, build, write
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(ROOT / "profiles" / "two-hosts.yaml"), pm)
    whole = build(profile, pm, "two-hosts.yaml")
    stream = Stream(profile, pm, "two-hosts.yaml")
    written = write(stream, str(tmp_path / "out"))
    assert sorted(written) == sorted(whole.files)
    for path, artifact in whole.files.items():
        on_disk = tmp_path / "out" / path
        assert on_disk.read_bytes() == artifact.content(), path
        assert on_disk.stat().st_mode & 0o777 == artifact.mode, path
    assert stream.hosts == len(whole.plans) == 2
    assert all(not p.checks and not p.helpers and all(not n.xml for n in p.networks.values())
               for p in stream.plans)


def test_a_stream_that_fails_midway_leaves_the_directory_as_it_was(pm, tmp_path):
    """The second host's rendering fails after the first host's files were written to staging:
    DIR keeps its old bundle, and no staging directory is left beside it."""
    from vnetgen.bundle import Stream, write
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(ROOT / "profiles" / "two-hosts.yaml"), pm)
    out = tmp_path / "out"
    write(Stream(profile, pm, "two-hosts.yaml"), str(out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    class Broken(Exception):
        pass

    def failing():
        for artifact in Stream(profile, pm, "two-hosts.yaml"):
            if artifact.path.startswith(list(profile.hosts)[1] + "/"):
                raise Broken()
            yield artifact

    with pytest.raises(Broken):
        write(failing(), str(out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]

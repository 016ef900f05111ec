"""DIR/ansible/: inventory, the per-host tars, ansible-playbook --syntax-check and ansible-lint on every
profile's output, wave order, and site.yml --check against this machine (runbook.sh --dry-run only)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import PROFILES, ROOT, require_tool

TWO = ROOT / "profiles" / "two-hosts.yaml"
PLAYBOOKS = ("site.yml", "capture.yml", "rollback.yml")
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """The tool from this interpreter's environment (pip installs ansible-core there), else PATH."""
    local = BIN / name
    if local.exists():
        return str(local)
    require_tool(name)
    return name


def _write(tmp_path: Path, profile: Path, name: str = "b") -> Path:
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "vnetgen", "build", str(profile), "-o", str(out)], check=True,
                   capture_output=True)
    return out


def _ansible_env(**extra: str) -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP="/tmp", ANSIBLE_RETRY_FILES_ENABLED="0",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    env.pop("ANSIBLE_CONFIG", None)
    env.update(extra)
    return env


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_inventory_lists_exactly_the_profile_hosts_in_run_order(build_bundle, profile):
    from vnetgen.review import run_waves

    bundle = build_bundle(profile)
    text = bundle.files["ansible/inventory.ini"].text
    groups, current = {}, None
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            groups[current] = []
        elif line and not line.startswith("#"):
            groups[current].append(line)
    waves = run_waves(bundle.plans[0].profile, bundle.plans)
    assert groups["vnetgen_wave_1"] == [h for h, _ in waves[0]]
    assert groups["vnetgen_wave_2"] == ([h for h, _ in waves[1]] if len(waves) > 1 else [])
    assert groups["vnetgen_hosts:children"] == ["vnetgen_wave_1", "vnetgen_wave_2"]
    assert sorted(groups["vnetgen_wave_1"] + groups["vnetgen_wave_2"]) == sorted(p.name for p in bundle.plans)


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_inventory_parsed_by_ansible(tmp_path):
    out = _write(tmp_path, TWO)
    result = subprocess.run([_tool("ansible-inventory"), "-i", str(out / "ansible" / "inventory.ini"), "--list"],
                            capture_output=True, text=True, env=_ansible_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["vnetgen_wave_1"]["hosts"] == ["caldera02"]      # the DHCP server of the link goes first
    assert listed["vnetgen_wave_2"]["hosts"] == ["caldera03"]
    assert sorted(listed["vnetgen_hosts"]["children"]) == ["vnetgen_wave_1", "vnetgen_wave_2"]
    assert sorted(listed["_meta"]["hostvars"]) in ([], ["caldera02", "caldera03"])  # no addresses of ours


def test_selected_hosts_only(build_bundle):
    bundle = build_bundle(TWO, hosts=["caldera03"])
    entries = [line for line in bundle.files["ansible/inventory.ini"].text.splitlines()
               if line and not line.startswith(("#", "["))]
    assert entries == ["caldera03", "vnetgen_wave_1", "vnetgen_wave_2"]   # the host, the children
    assert set(p for p in bundle.files if p.startswith("ansible/bundles/")) == {"ansible/bundles/caldera03.tar"}


def _members(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:   # "r:": plain tar, never gzip
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_host_tar_matches_sha256sums(build_bundle, profile):
    bundle = build_bundle(profile)
    sums = dict(reversed(line.split("  ", 1)) for line in bundle.files["SHA256SUMS"].text.splitlines())
    for plan in bundle.plans:
        data = bundle.files[f"ansible/bundles/{plan.name}.tar"].content()
        assert not data.startswith(b"\x1f\x8b")   # unarchive cannot look into a gzip'd tar in check mode
        members = _members(data)
        top = f"vnetgen-{plan.name}/"
        files = {m.name[len(top):]: (m, content) for m, content in members if m.isfile()}
        expected = {"SHA256SUMS"} | {p for p in bundle.files if p.startswith(plan.name + "/")}
        assert set(files) == expected
        own = [line for line in bundle.files["SHA256SUMS"].text.splitlines(keepends=True)
               if line.split("  ", 1)[1].startswith(plan.name + "/")]
        assert files["SHA256SUMS"][1].decode() == "".join(own)   # its lines of the bundle's SHA256SUMS
        for path, (member, content) in files.items():
            assert member.mode == bundle.files[path].mode, path
            if path != "SHA256SUMS":
                assert hashlib.sha256(content).hexdigest() == sums[path], path
        names = [m.name for m, _ in members]
        assert all(n == top.rstrip("/") or n.startswith(top) for n in names)
        assert [n for n in names if n.startswith(top)] == names[1:]
        file_names = [m.name for m, _ in members if m.isfile()]
        assert file_names == sorted(file_names)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m, _ in members} == {(946684800, 0, 0, "", "")}


def _tarfile_reference(top, files):
    """The same archive written member by member by Python's tarfile (the real component)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        names = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        for name in [""] + names:
            info = tarfile.TarInfo(f"{top}/{name}".rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 946684800
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mode, info.mtime = len(data), mode, 946684800
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tar_is_the_bytes_tarfile_writes():
    """archive.tar builds ustar headers itself (a 1,000-host build writes 1,000 tars): byte for byte
    what tarfile writes, for short, long (ustar prefix) and non-ASCII names, empty and odd sizes."""
    from vnetgen.archive import tar

    files = {"h/runbook.sh": (b"#!/bin/bash\n" * 100, 0o755), "h/networks/n\u00e9t.xml": (b"<network/>", 0o644),
             "h/empty": (b"", 0o600), "h/" + "d" * 60 + "/" + "f" * 60: (b"x" * 513, 0o644),
             "SHA256SUMS": (b"0" * 511, 0o644)}
    assert tar("vnetgen-h", files) == _tarfile_reference("vnetgen-h", files)
    assert tar("vnetgen-h", {}) == _tarfile_reference("vnetgen-h", {})


def test_tar_constants_are_tarfiles():
    """vnetgen.archive spells tarfile's constants itself (a build need not import tarfile)."""
    from vnetgen import archive

    assert (archive.DIRTYPE, archive.REGTYPE, archive.BLOCKSIZE, archive.RECORDSIZE) == \
        (tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.BLOCKSIZE, tarfile.RECORDSIZE)


def test_host_tars_are_byte_identical_across_builds(tmp_path):
    a = _write(tmp_path, TWO, "one")
    b = _write(tmp_path, TWO, "two")
    for host in ("caldera02", "caldera03"):
        assert (a / "ansible" / "bundles" / f"{host}.tar").read_bytes() == \
            (b / "ansible" / "bundles" / f"{host}.tar").read_bytes()
    assert "ansible/bundles/" not in (a / "SHA256SUMS").read_text()
    assert "ansible/site.yml" in (a / "SHA256SUMS").read_text()


def test_playbooks_use_only_ansible_builtin(build_bundle):
    import yaml

    bundle = build_bundle(TWO)
    seen = set()

    def walk(tasks):
        for task in tasks or ():
            modules = [k for k in task if "." in k]
            assert all(k.startswith("ansible.builtin.") for k in modules), task.get("name")
            seen.update(modules)
            for key in ("block", "rescue", "always"):
                walk(task.get(key))

    for path, artifact in bundle.files.items():
        if path.startswith("ansible/") and path.endswith(".yml") and path != "ansible/rollout.yml":   # vars
            data = yaml.safe_load(artifact.text)
            if path.startswith("ansible/tasks/"):
                walk(data)
            else:
                for play in data:
                    walk(play.get("tasks"))
    assert {"ansible.builtin.unarchive", "ansible.builtin.async_status", "ansible.builtin.fetch"} <= seen


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_syntax_check(tmp_path, profile):
    out = _write(tmp_path, profile)
    ansible = out / "ansible"
    result = subprocess.run([_tool("ansible-playbook"), "-i", "inventory.ini", "--syntax-check", *PLAYBOOKS],
                            cwd=ansible, capture_output=True, text=True, env=_ansible_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_ansible_lint_production(tmp_path, build_bundle):
    """The playbooks are the same files for every profile (only the inventory and the rollout.yml
    variables differ): lint them once, with the variables file."""
    texts = {}
    for profile in PROFILES:
        bundle = build_bundle(profile)
        for path, artifact in bundle.files.items():
            if path.startswith("ansible/") and path.endswith(".yml") and path != "ansible/rollout.yml":
                assert texts.setdefault(path, artifact.text) == artifact.text, (profile, path)
    lint = _tool("ansible-lint")
    out = _write(tmp_path, TWO)
    result = subprocess.run([lint, "--offline", "--profile", "production", "--nocolor", *PLAYBOOKS, "tasks", "rollout.yml"],
                            cwd=out / "ansible", capture_output=True, text=True, timeout=600,
                            env=_ansible_env(HOME=str(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_site_plays_wave_1_before_wave_2_and_rollback_the_reverse(tmp_path):
    out = _write(tmp_path, TWO)
    plays = {}
    for playbook in ("site.yml", "rollback.yml"):
        result = subprocess.run([_tool("ansible-playbook"), "-i", "inventory.ini", "--list-hosts", playbook],
                                cwd=out / "ansible", capture_output=True, text=True, env=_ansible_env(), timeout=120)
        assert result.returncode == 0, result.stderr
        plays[playbook] = [line.strip() for line in result.stdout.splitlines() if line.strip() in ("caldera02", "caldera03")]
    assert plays == {"site.yml": ["caldera02", "caldera03"], "rollback.yml": ["caldera03", "caldera02"]}


def _check_run(out: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", "inventory.ini", "site.yml", "--check",
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", "vnetgen_become=false", "-e", f"vnetgen_root={root}", *extra],
        cwd=out / "ansible", capture_output=True, text=True, timeout=600,
        env=_ansible_env(LIBVIRT_DEFAULT_URI="test:///default", HOME=str(root.parent)))


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_check_mode_against_this_machine_is_a_dry_run(tmp_path):
    """site.yml --check with the local connection: each host's runbook.sh --dry-run, from a scratch
    copy that is removed afterwards; --root keeps even the runbook's state out of this machine."""
    require_tool("bash", "sha256sum", "tar")
    out = _write(tmp_path, TWO)
    root = tmp_path / "root"
    root.mkdir()
    before = set(os.listdir("/tmp"))
    result = _check_run(out, root, "-e", "vnetgen_allow_renamed_host=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run finished: nothing was changed" in result.stdout
    assert "would run: set_sysctl net.ipv4.ip_forward 1" in result.stdout           # caldera02's NAT
    assert "caldera02                  : ok=" in result.stdout and "failed=0" in result.stdout
    assert list(root.iterdir()) == []                  # nothing written under --root
    assert not any(n.startswith("vnetgen.") for n in set(os.listdir("/tmp")) - before)   # scratch removed


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_check_mode_refuses_a_machine_of_another_name(tmp_path):
    require_tool("bash")
    out = _write(tmp_path, TWO)
    root = tmp_path / "root"
    root.mkdir()
    result = _check_run(out, root)
    if result.returncode == 0:
        pytest.skip("this machine is named like a profile host")
    assert "but the inventory entry is host caldera02 of the profile" in result.stdout + result.stderr
    assert "caldera03" not in result.stdout.split("PLAY RECAP")[0]      # wave 2 never started


# --- site.yml for real, against this machine, with a stand-in runbook.sh -----------------------
# The real runbook would change this machine. The stand-in speaks the same protocol (--confirm,
# --confirm-timeout, --root, the state directory's confirm-pending/confirmed, exit 3 when not
# confirmed) and changes nothing outside --root, so the playbook's orchestration runs for real.
FAKE_RUNBOOK = r"""#!/usr/bin/env bash
set -eu
ROOT="" CONFIRM=0 TIMEOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift ;;
    --confirm) CONFIRM=1 ;;
    --confirm-timeout) TIMEOUT=$2; shift ;;
    --host-is) shift ;;
  esac
  shift
done
STATE="$ROOT/var/lib/vnetgen/@HOST@"
mkdir -p "$STATE"
if [ "$CONFIRM" = 1 ]; then
  [ -e "$STATE/confirm-pending" ] || { echo "no run is waiting for confirmation" >&2; exit 1; }
  : > "$STATE/confirmed"; echo confirmed; exit 0
fi
echo "== step 1: stand-in for @HOST@"
if [ -e "$ROOT/fail-@HOST@" ]; then echo "stand-in fails on @HOST@" >&2; exit 1; fi
: > "$STATE/confirm-pending"
for _ in $(seq "$TIMEOUT"); do
  if [ -e "$STATE/confirmed" ]; then
    rm -f "$STATE/confirm-pending" "$STATE/confirmed"
    echo "confirmed: the change stays"; echo "1 change(s) applied to host @HOST@"; exit 0
  fi
  sleep 1
done
rm -f "$STATE/confirm-pending"; echo "no confirmation within $TIMEOUT s: rolling back"; exit 3
"""

FAKE_ROLLBACK = r"""#!/usr/bin/env bash
set -eu
ROOT=""
while [ $# -gt 0 ]; do case "$1" in --root) ROOT=$2; shift ;; esac; shift; done
echo "stand-in rollback of @HOST@"
echo "@HOST@" >> "$ROOT/rolled-back"
echo "1 change(s) undone on host @HOST@"
"""


def _bundle_with_stand_ins(tmp_path: Path, profile_path: Path = TWO) -> Path:
    from vnetgen.api import Artifact
    from vnetgen.bundle import build, write
    from vnetgen.fleet import host_tars
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid
    from vnetgen.render import sha256sums

    pm = get_plugin_manager()
    profile, _ = load_valid(str(profile_path), pm)
    bundle = build(profile, pm, profile_file=profile_path.name)
    hosts = [p.name for p in bundle.plans]
    files = {p: a for p, a in bundle.files.items() if not p.startswith("ansible/bundles/") and p != "SHA256SUMS"}
    for host in hosts:
        files[f"{host}/runbook.sh"] = Artifact(f"{host}/runbook.sh", FAKE_RUNBOOK.replace("@HOST@", host), 0o755)
        files[f"{host}/rollback.sh"] = Artifact(f"{host}/rollback.sh", FAKE_ROLLBACK.replace("@HOST@", host), 0o755)
    files["SHA256SUMS"] = Artifact("SHA256SUMS", sha256sums(files))
    files.update(host_tars(files, hosts))
    bundle.files = files
    out = tmp_path / "b"
    write(bundle, str(out))
    return out


def _apply(out: Path, root: Path, *extra: str, playbook: str = "site.yml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", "inventory.ini", playbook,
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", "vnetgen_become=false", "-e", "vnetgen_allow_renamed_host=true", "-e", "vnetgen_confirm_timeout=30",
         "-e", f"vnetgen_root={root}", "-e", f"vnetgen_remote_dir={root}/bundles", *extra],
        cwd=out / "ansible", capture_output=True, text=True, timeout=600,
        env=_ansible_env(ANSIBLE_ASYNC_DIR=str(root.parent / "async"), ANSIBLE_REMOTE_TEMP=str(root.parent / "tmp")))


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_site_applies_confirms_and_reports(tmp_path):
    require_tool("bash", "sha256sum", "tar", "flock")
    out = _bundle_with_stand_ins(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    result = _apply(out, root)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    for host in ("caldera02", "caldera03"):
        assert f"1 change(s) applied to host {host}" in log
        assert (root / "bundles" / f"vnetgen-{host}" / host / "runbook.sh").is_file()
        assert (root / "bundles" / f"vnetgen-{host}.exit").read_text() == "0\n"
        assert not (root / "var" / "lib" / "vnetgen" / host / "confirm-pending").exists()
    recap = log.split("PLAY RECAP")[1]
    assert "caldera02                  : ok=" in recap and "failed=0" in recap
    assert log.index("stand-in for caldera02") < log.index("stand-in for caldera03")   # wave 1 first


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_site_stops_at_a_failed_host_and_keeps_wave_2_untouched(tmp_path):
    require_tool("bash", "sha256sum", "tar", "flock")
    out = _bundle_with_stand_ins(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "fail-caldera02").write_text("")
    result = _apply(out, root)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "stand-in fails on caldera02" in log
    assert "runbook.sh failed on caldera02 (exit 1)" in log
    assert "stand-in for caldera03" not in log
    assert not (root / "bundles" / "vnetgen-caldera03").exists()


THREE_ROLLOUT = """\
vnetgen: 1
rollout: {serial: 2, max_fail_percentage: 50}
defaults:
  networks:
    default: {mode: nat, ip: 192.168.122.1/24}
hosts:
  kvm-a: {}
  kvm-b: {}
  kvm-c: {}
"""


def test_rollout_section_becomes_the_playbooks_batch_variables(build_bundle, tmp_path):
    import yaml

    path = tmp_path / "three.yaml"
    path.write_text(THREE_ROLLOUT.replace("serial: 2", 'serial: "40%"'))
    bundle = build_bundle(path)
    assert yaml.safe_load(bundle.files["ansible/rollout.yml"].text) == \
        {"vnetgen_serial": "40%", "vnetgen_max_fail_percentage": 50}
    assert yaml.safe_load(build_bundle(TWO).files["ansible/rollout.yml"].text) == \
        {"vnetgen_serial": 1, "vnetgen_max_fail_percentage": 0}          # no rollout: one host at a time
    for playbook in ("site.yml", "rollback.yml"):
        plays = yaml.safe_load(bundle.files[f"ansible/{playbook}"].text)
        assert all(play["vars_files"] == ["rollout.yml"] for play in plays), playbook


@pytest.mark.parametrize("bad, message", [
    ("serial: 0", "serial"), ("serial: 101%", "serial"), ("max_fail_percentage: 101", "max_fail_percentage"),
    ("batch: 2", "batch"), ("serial: 2; rm -rf /", "serial"),
])
def test_rollout_section_is_validated(tmp_path, bad, message):
    path = tmp_path / "p.yaml"
    path.write_text(f"vnetgen: 1\nrollout:\n  {bad}\nnetworks:\n  default: {{mode: isolated}}\n")
    result = subprocess.run([sys.executable, "-m", "vnetgen", "validate", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}:3:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def _batches(log: str) -> list:
    """The hosts of each batch Ansible ran, in order: each batch starts with its own PLAY header (a
    play with no host left prints one too: empty batches are dropped), then each task names its hosts."""
    import re

    batches = []
    for line in log.splitlines():
        if line.startswith("PLAY [Apply the vnetgen bundle"):
            batches.append([])
        else:
            found = re.match(r"(?:ok|changed|fatal|skipping): \[([A-Za-z0-9_.-]+)\]", line)
            if found and batches and found.group(1) not in batches[-1]:
                batches[-1].append(found.group(1))
    return [batch for batch in batches if batch]


def _wait_for_file(path: Path, seconds: float) -> str:
    """The text of `path` once it exists (a state), failing after `seconds` (a bound, not a sleep)."""
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)
    return path.read_text()


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_site_batches_by_the_profile_and_by_extra_vars(tmp_path):
    """rollout: {serial: 2, max_fail_percentage: 50}: kvm-a fails in the first batch of two (50%, not
    exceeded), so kvm-b is confirmed and the second batch runs; -e vnetgen_max_fail_percentage=0:
    kvm-b is not confirmed (its run rolls back by itself) and kvm-c is never touched; -e
    vnetgen_serial=3 makes one batch of the three (1 of 3 failed: kvm-b and kvm-c are confirmed)."""
    require_tool("bash", "sha256sum", "tar", "flock")
    profile = tmp_path / "three.yaml"
    profile.write_text(THREE_ROLLOUT)
    out = _bundle_with_stand_ins(tmp_path, profile)
    for name, extra, batches, confirmed in [
            ("profile", (), [["kvm-a", "kvm-b"], ["kvm-c"]], ["kvm-b", "kvm-c"]),
            ("strict", ("-e", "vnetgen_max_fail_percentage=0"), [["kvm-a", "kvm-b"]], []),
            ("one-batch", ("-e", "vnetgen_serial=3"), [["kvm-a", "kvm-b", "kvm-c"]], ["kvm-b", "kvm-c"])]:
        root = tmp_path / f"root-{name}"
        root.mkdir()
        (root / "fail-kvm-a").write_text("")
        result = _apply(out, root, *extra, "-e", "vnetgen_confirm_timeout=10")
        log = result.stdout + result.stderr
        assert result.returncode == 2, log                    # a host failed: ansible-playbook says so
        assert [sorted(b) for b in _batches(result.stdout)] == batches, (name, log)
        assert "runbook.sh failed on kvm-a (exit 1)" in log
        ran = {host for batch in batches for host in batch}
        for host in ("kvm-b", "kvm-c"):
            exit_file = root / "bundles" / f"vnetgen-{host}.exit"
            if host in confirmed:
                assert exit_file.read_text() == "0\n", (name, host, log)
                assert f"1 change(s) applied to host {host}" in log
            elif host in ran:                                   # held: its own timeout rolls it back
                assert "not confirmed: kvm-a of this batch of 2 failed" in log, (name, log)
                assert _wait_for_file(exit_file, 60) == "3\n", (name, host)
            else:                                               # a later batch: never started
                assert not (root / "bundles" / f"vnetgen-{host}").exists(), (name, host)
                assert not exit_file.exists(), (name, host)


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_site_refuses_an_altered_bundle_on_the_host(tmp_path):
    require_tool("bash", "sha256sum", "tar")
    out = _bundle_with_stand_ins(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    # The tar no longer holds the reviewed bundle: a file differs from the SHA256SUMS beside the playbook.
    sums = out / "SHA256SUMS"
    sums.write_text("".join("0" * 64 + line[64:] if line.endswith("  caldera02/runbook.sh\n") else line
                            for line in sums.read_text().splitlines(keepends=True)))
    result = _apply(out, root)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "caldera02/runbook.sh: FAILED" in log
    assert "stand-in for caldera02" not in log


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_capture_playbook_feeds_audit(tmp_path):
    """capture.yml against this machine (capture.sh only reads), then vnetgen audit --captures reads
    the result: every host's directory in the layout, and an audit that reports (0 or 1), not 2."""
    require_tool("bash", "tar", "virsh", "ip")
    out = _write(tmp_path, TWO)
    captures = tmp_path / "captures"
    result = subprocess.run(
        [_tool("ansible-playbook"), "-i", "inventory.ini", "capture.yml",
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", "vnetgen_become=false", "-e", "vnetgen_allow_renamed_host=true", "-e", f"vnetgen_captures={captures}"],
        cwd=out / "ansible", capture_output=True, text=True, timeout=600,
        env=_ansible_env(LIBVIRT_DEFAULT_URI="test:///default"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in captures.iterdir()) == ["caldera02", "caldera03"]   # no tar left behind
    assert (captures / "caldera02" / "capture-layout.txt").is_file()
    audit = subprocess.run([sys.executable, "-m", "vnetgen", "audit", str(TWO), "--captures", str(captures)],
                           capture_output=True, text=True, timeout=120)
    assert audit.returncode in (0, 1), audit.stdout + audit.stderr


@pytest.mark.realtool  # runs ansible-playbook / ansible-lint
def test_rollback_runs_wave_2_first(tmp_path):
    require_tool("bash", "sha256sum", "tar", "flock")
    out = _bundle_with_stand_ins(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    refused = _apply(out, root, playbook="rollback.yml")          # nothing applied yet: nothing to run
    assert refused.returncode != 0 and "site.yml has not applied this bundle" in refused.stdout + refused.stderr
    assert _apply(out, root).returncode == 0
    result = _apply(out, root, playbook="rollback.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (root / "rolled-back").read_text() == "caldera03\ncaldera02\n"
    assert "1 change(s) undone on host caldera02" in result.stdout

"""Runbook hardening on the real stack: runs interrupted anywhere, networks known under another UUID, dry runs."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import labkit as kit

pytestmark = pytest.mark.lab

# The commands by which a runbook (or rollback) changes a host; everything else only looks.
MUTATING = (r"^(virsh (net-define|net-undefine|net-create|net-start|net-destroy|net-autostart|net-update)"
            r"|brctl (addbr|delbr|addif|delif|stp|setfd)"
            r"|ip (link (add|del|set)|addr (add|del|flush)|route (add|del|replace|change))"
            r"|sysctl -w|install) ")

# A test double of each tool, first on PATH: it runs the real tool, except that the FAIL_AT-th call
# matching FAIL_MATCH fails, saying so on stderr. Every matching call is logged to FAIL_LOG.
WRAPPER = r"""#!/bin/bash
tool=${0##*/}
call="$tool $*"
if [[ "$call " =~ $FAIL_MATCH ]]; then
  n=$(( $(cat "$FAIL_COUNTER" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "$FAIL_COUNTER"
  echo "$call" >> "$FAIL_LOG"
  if [ "$n" = "$FAIL_AT" ]; then echo "injected failure: $call" >&2; exit 1; fi
fi
PATH=$REAL_PATH exec "$tool" "$@"
"""

# Sourced by bash before runbook.sh (BASH_ENV): the run stops at the first command of step
# $FAIL_STEP, through the runbook's own fail(), as though that command had failed. The DEBUG trap
# sees top-level commands only (functions and $(...) do not inherit it), i.e. the actions.
STEP_TRAP = r"""trap 'if [[ "${STEP:-}" == "$FAIL_STEP" ]]; then fail "$BASH_COMMAND" "injected failure in step $FAIL_STEP"; fi' DEBUG
"""

class Injector:
    """Makes runs fail on purpose: at the k-th matching tool call (PATH), or at a step (BASH_ENV)."""

    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "fakebin"
        self.bin.mkdir()
        wrapper = tmp / "wrapper.sh"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        for tool in ("virsh", "brctl", "ip", "sysctl", "install"):
            (self.bin / tool).symlink_to(wrapper)
        self.counter = tmp / "fail-counter"
        self.log = tmp / "fail-log"
        self.trap = tmp / "step-trap.sh"
        self.trap.write_text(STEP_TRAP)

    def at_call(self, k: int, match: str = MUTATING) -> dict:
        """Environment for a run whose k-th call matching `match` fails (k=0: none fails)."""
        for path in (self.counter, self.log):
            if path.exists():
                path.unlink()
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "REAL_PATH": os.environ["PATH"],
                "FAIL_MATCH": match, "FAIL_AT": str(k), "FAIL_COUNTER": str(self.counter),
                "FAIL_LOG": str(self.log)}

    def at_step(self, step: str) -> dict:
        return {"BASH_ENV": str(self.trap), "FAIL_STEP": step}

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


def _runbook(host, bundle, *args, env=None):
    return kit.run_script(host, str(bundle / host.name), "runbook.sh", "--no-vms", *args, env=env)


def _step_titles(bundle, host):
    """{number: title} of the runbook's steps, from the script itself."""
    text = (bundle / host / "runbook.sh").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^# ---- step (\d+): (.*)$", text, re.M)}


def _current_step(stdout):
    headers = re.findall(r"^== step (\d+):", stdout, re.M)
    return headers[-1] if headers else None


def _assert_failed_at(result, step, why=""):
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert kit.failed_step(result.stderr) == step, f"{why}: expected step {step}\n{out}"
    assert "  command: " in result.stderr and "injected failure" in result.stderr, out
    assert "Undo what this run changed with: " in result.stderr and "/rollback.sh" in result.stderr, out


def _rerun_completes(host, bundle):
    result = _runbook(host, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    # Verify passes; a run stopped at verify itself had made every change already.
    assert re.search(r"^   all \d+ checks hold$", result.stdout, re.M), result.stdout
    assert re.search(r"(every check holds|already matches the profile)$", result.stdout.rstrip()), result.stdout
    return result


def _rollback_restores(host, bundle, initial):
    result = kit.run_script(host, str(bundle / host.name), "rollback.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    changes = kit.state_changes(initial, kit.host_state(host))
    assert not changes, "\n".join(changes) + "\n" + result.stdout


def _scenario(lab, tmp_path, name):
    profile = kit.profile_path(name)
    bundle = kit.build(profile, tmp_path / "bundle")
    host = lab.host("caldera02")
    host.assert_private()
    if name == "two-hosts":
        # caldera02 alone: its trunk NIC only has to exist.
        lab.nic(host, "ens2", lab.lan("trunk0", "198.18.0.0/24", dhcp=False))
    else:
        kit.uplink(lab, host)
    return profile, bundle, host


# --- (a) a run interrupted anywhere can be run again to completion ------------------------------


@pytest.mark.parametrize("name", ["nat-and-bridged", "two-hosts"])
def test_a_run_failing_at_any_change_rolls_back_or_reruns(lab, tmp_path, name):
    """Each change the runbook makes fails once in turn (the k-th virsh/brctl/ip/sysctl/install
    call that changes something): the failure names the step, the command, its output and
    rollback.sh, and rollback.sh restores the host; failed there again, a plain re-run completes
    and verifies (and rollback.sh restores the host once more)."""
    profile, bundle, host = _scenario(lab, tmp_path, name)
    inject = Injector(tmp_path)
    initial = kit.host_state(host)
    clean = _runbook(host, bundle, env=inject.at_call(0))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    calls = inject.calls()
    assert len(calls) >= 8, calls
    # Steps that change the host through its tools (the backup step only writes its own notes).
    changing_steps = {_current_step(clean.stdout[:m.start()])
                      for m in re.finditer(r"^   \+ (?!backup_net )", clean.stdout, re.M)}
    _rollback_restores(host, bundle, initial)

    failed_in = set()
    for k, call in enumerate(calls, 1):
        result = _runbook(host, bundle, env=inject.at_call(k))
        step = _current_step(result.stdout)
        _assert_failed_at(result, step, f"call {k} ({call})")
        assert f"injected failure: {call}" in result.stderr
        failed_in.add(step)
        _rollback_restores(host, bundle, initial)
        _assert_failed_at(_runbook(host, bundle, env=inject.at_call(k)), step, f"call {k} ({call}), again")
        _rerun_completes(host, bundle)
        _rollback_restores(host, bundle, initial)
    assert failed_in == changing_steps  # every step that changes something was interrupted


@pytest.mark.parametrize("name", ["nat-and-bridged", "two-hosts"])
def test_an_interrupted_rollback_can_be_rerun(lab, tmp_path, name):
    """rollback.sh says it can be re-run: each change it makes fails once in turn, and a plain
    re-run of rollback.sh then restores the state before the runbook all the same."""
    profile, bundle, host = _scenario(lab, tmp_path, name)
    inject = Injector(tmp_path)
    initial = kit.host_state(host)
    kit.apply(host, bundle)
    clean = kit.run_script(host, str(bundle / host.name), "rollback.sh", env=inject.at_call(0))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    calls = inject.calls()
    assert len(calls) >= 4, calls
    for k, call in enumerate(calls, 1):
        kit.apply(host, bundle)
        result = kit.run_script(host, str(bundle / host.name), "rollback.sh", env=inject.at_call(k))
        out = result.stdout + result.stderr
        assert result.returncode == 1 and f"injected failure: {call}" in result.stderr, out
        assert kit.failed_step(result.stderr) == _current_step(result.stdout), out
        assert "rollback.sh (it can be re-run)" in result.stderr, out
        _rollback_restores(host, bundle, initial)


@pytest.mark.parametrize("name", ["nat-and-bridged", "two-hosts"])
def test_a_run_stopped_at_any_step_can_be_rerun_or_rolled_back(lab, tmp_path, name):
    """For every numbered step (preflight and verify too): a run stopped as it enters the step
    is rolled back to the state before; stopped there again, a plain re-run completes."""
    profile, bundle, host = _scenario(lab, tmp_path, name)
    inject = Injector(tmp_path)
    initial = kit.host_state(host)
    steps = _step_titles(bundle, host.name)
    assert list(steps)[0] == "1" and steps["1"] == "preflight" and list(steps.values())[-1] == "verify"
    for number in steps:
        _assert_failed_at(_runbook(host, bundle, env=inject.at_step(number)), number, steps[number])
        _rollback_restores(host, bundle, initial)
        _assert_failed_at(_runbook(host, bundle, env=inject.at_step(number)), number, steps[number])
        _rerun_completes(host, bundle)
        _rollback_restores(host, bundle, initial)


# --- (b) a network libvirt already knows under another UUID ---------------------------------------


def _unpinned_profile(tmp_path):
    """nat-default without its UUID, and with another DHCP range, so the definition must change."""
    text = kit.profile_path("nat-default").read_text()
    text = re.sub(r"^\s*uuid: .*\n", "", text, flags=re.M).replace("start: 192.168.122.2", "start: 192.168.122.100")
    assert "uuid" not in text and "192.168.122.100" in text
    path = tmp_path / "nat-unpinned.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("transient", [False, True], ids=["defined", "transient"])
@pytest.mark.parametrize("pinned", [True, False], ids=["profile-pins-another-uuid", "profile-pins-none"])
def test_network_known_under_another_uuid(lab, tmp_path, pinned, transient):
    profile = kit.profile_path("nat-default") if pinned else _unpinned_profile(tmp_path)
    bundle = kit.build(profile, tmp_path / "bundle")
    host = lab.host("caldera02")
    host.assert_private()
    old_uuid, old_xml = kit.libvirt_default(host, tmp_path, transient=transient)
    before = kit.host_state(host)

    kit.apply(host, bundle)

    uuid = host.virsh("net-uuid", "default").stdout.strip()
    # A pinned UUID wins (the network is defined anew); otherwise libvirt's own is kept.
    assert uuid == ("f6514662-26e5-431e-8544-fd216bed9312" if pinned else old_uuid)
    info = host.virsh("net-info", "default").stdout
    assert re.search(r"^Active:\s+yes", info, re.M) and re.search(r"^Persistent:\s+yes", info, re.M)
    if not pinned:
        # The new definition is live too, not only saved.
        assert "<range start='192.168.122.100'" in host.virsh("net-dumpxml", "default").stdout
    kit.assert_second_run_changes_nothing(host, bundle)
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")
    kit.assert_rollback_restores(host, bundle, before)
    assert host.virsh("net-uuid", "default").stdout.strip() == old_uuid
    assert host.virsh("net-dumpxml", "--inactive", "default").stdout == old_xml
    assert re.search(r"^Persistent:\s+" + ("no" if transient else "yes"), host.virsh("net-info", "default").stdout,
                     re.M)


def test_a_failed_backup_stops_the_run_before_anything_changes(lab, tmp_path):
    """The backup step's own virsh fails: the run must stop there (not define the network over an
    empty backup), leave libvirt's network untouched, and a re-run must still back it up properly."""
    profile = kit.profile_path("nat-default")
    bundle = kit.build(profile, tmp_path / "bundle")
    host = lab.host("caldera02")
    host.assert_private()
    old_uuid, old_xml = kit.libvirt_default(host, tmp_path)
    inject = Injector(tmp_path)
    backup_step = next(n for n, t in _step_titles(bundle, host.name).items() if t == "back up networks")

    result = _runbook(host, bundle, env=inject.at_call(1, r"^virsh net-dumpxml --inactive default "))

    _assert_failed_at(result, backup_step, "backup")
    assert host.virsh("net-uuid", "default").stdout.strip() == old_uuid
    _rerun_completes(host, bundle)
    rollback = kit.run_script(host, str(bundle / host.name), "rollback.sh")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert host.virsh("net-uuid", "default").stdout.strip() == old_uuid
    assert host.virsh("net-dumpxml", "--inactive", "default").stdout == old_xml


# --- (c) --dry-run changes nothing ---------------------------------------------------------------


def _everything(host):
    """State plus every file the host wrote under /etc and /var (backups and notes included)."""
    return kit.host_state(host), host.changed_files()


def test_dry_run_changes_nothing(lab, tmp_path):
    profile, bundle, host = _scenario(lab, tmp_path, "nat-and-bridged")
    inject = Injector(tmp_path)
    steps = _step_titles(bundle, host.name)

    def dry(script, *args):
        before = _everything(host)
        result = kit.run_script(host, str(bundle / host.name), script, "--dry-run", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith("dry run finished: nothing was changed"), result.stdout
        assert _everything(host) == before
        return result.stdout

    # A fresh host: every change is printed, none is made (VMs included: no --no-vms here).
    out = dry("runbook.sh")
    for change in ("would run: brctl addbr mybridge0", "would run: ip addr add 10.10.10.98/24 dev mybridge0",
                   "would run: virsh net-start default", "would run: set_sysctl net.ipv4.ip_forward 1",
                   "would run: virt-install --name VM3"):
        assert change in out, out
    # Quoted as bash needs it: pasted into a shell, the line runs what the runbook would run.
    assert "--extra-args console=ttyS0\\,115200n8\\ serial" in out, out
    # Half applied (stopped as it reached the first network): still nothing, either way.
    network_step = next(n for n, t in steps.items() if t.startswith("network "))
    _assert_failed_at(_runbook(host, bundle, env=inject.at_step(network_step)), network_step)
    assert "would run: virsh net-start default" in dry("runbook.sh", "--no-vms")
    assert "would run: ip addr del 10.10.10.98/24 dev mybridge0" in dry("rollback.sh")
    # Fully applied: nothing left to do, and the dry run says no more.
    _rerun_completes(host, bundle)
    assert "would run" not in dry("runbook.sh", "--no-vms")
    assert "would run: restore_net default" in dry("rollback.sh")

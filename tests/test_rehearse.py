"""`vnetgen rehearse`: a profile's runbooks replayed in a throw-away lab, reported as evidence; exit 2 where no lab can run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import labkit as kit
from conftest import require_tool
from vnetgen.lab import namespaces
from vnetgen.lab import rehearse as rehearsal
from vnetgen.lab import snapshots
from vnetgen.cli import app

runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


# --- no lab needed -----------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["the lab needs root (network, mount and PID namespaces)",
                                    "missing tools: libvirtd, dnsmasq"])
def test_without_root_or_libvirt_exits_2_and_says_why(monkeypatch, reason):
    monkeypatch.setattr(namespaces, "lab_available", lambda: (False, reason))
    code, out = _invoke("rehearse", str(kit.profile_path("nat-default")))
    assert code == 2
    assert reason in out and "cannot run a lab here" in out and "libvirt-daemon" in out
    lines = []
    assert rehearsal.rehearse(None, None, echo=lines.append) == 2 and reason in lines[0]


def test_unavailable_comes_before_the_profile(monkeypatch, tmp_path):
    # Even a missing profile gets the real reason first: this machine cannot rehearse anything.
    monkeypatch.setattr(namespaces, "lab_available", lambda: (False, "the lab needs root"))
    code, out = _invoke("rehearse", str(tmp_path / "nope.yaml"))
    assert code == 2 and "the lab needs root" in out


def test_invalid_profile_and_unknown_host_exit_2(monkeypatch, write_profile):
    monkeypatch.setattr(namespaces, "lab_available", lambda: (True, "ok"))
    bad = write_profile("vnetgen: 1\nnetworks:\n  n: {mode: nat}\n")
    code, out = _invoke("rehearse", bad)
    assert code == 2 and "error:" in out
    code, out = _invoke("rehearse", str(kit.profile_path("two-hosts")), "--host", "caldera99")
    assert code == 2 and "no host caldera99" in out


def test_help_lists_rehearse():
    code, out = _invoke("--help")
    assert code == 0 and "rehearse" in out


# --- real stack --------------------------------------------------------------------------------


@pytest.mark.lab
def test_rehearse_two_hosts_end_to_end(lab_ready):
    """The CLI as an administrator runs it: both hosts, cabled, in REVIEW.md's order; exit 0."""
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    result = subprocess.run([sys.executable, "-m", "vnetgen", "rehearse", str(kit.profile_path("two-hosts"))],
                            capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.index("== caldera02: runbook.sh") < out.index("== caldera03: runbook.sh")
    assert "cable caldera02:ens2 — caldera03:ens2" in out
    assert "== step 1: preflight" in out and "change(s) applied to host caldera03" in out
    assert "caldera03/VM1 on default (isolated, bridge virbr0): DHCP lease 192.168.122." in out
    assert "router 192.168.122.1" in out
    assert "ok   caldera03/VM1 → internet host 203.0.113.10: reached" in out
    assert "ok   caldera02/VM1 → caldera03/VM2" in out
    for host in ("caldera02", "caldera03"):
        assert f"ok   {host}: nothing to change" in out
        assert f"ok   {host}: capture.sh + vnetgen audit --captures" in out
        assert f"ok   {host}: rollback.sh restored the state before the runbook" in out
    assert "verdict: PASSED" in out
    # Nothing of it on this machine: the same interfaces before and after.
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1] for line in after.splitlines()] == [line.split(":")[1] for line in before.splitlines()]


def _pids(name: str, under: str) -> set:
    """Processes called `name` whose command line names a path under `under` (a lab's NetworkManager
    runs with --config in its lab's directory: labs of tests running beside this one are not counted)."""
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    found = set()
    for pid in done.stdout.split():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if under.encode() in handle.read():
                    found.add(pid)
        except OSError:
            pass
    return found


@pytest.mark.lab
def test_rehearse_el9_under_a_real_networkmanager(lab_ready, tmp_path, monkeypatch):
    """target el9 on a host that NetworkManager runs, its NIC in a profile of its own: the runbook moves
    the address with one activation, a second run changes nothing, the audit is in sync, rollback.sh
    gives the NIC its old profile back (addresses, routes, /etc as before); nothing outlives the lab."""
    require_tool("NetworkManager", "nmcli", "dbus-daemon")
    import tempfile

    made = []                                   # the lab's directory, in this test's tmp_path
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    code, out = _invoke("rehearse", str(kit.profile_path("bridged-el9")))
    assert code == 0, out
    assert "caldera02: NetworkManager runs; each NIC has its own profile (System NIC)" in out
    assert "ok: nm_running" in out  # preflight: a host whose NetworkManager is down is refused
    assert "+ nmcli connection up id vnetgen-mybridge0-port-enp0s25" in out
    # one activation did it all: the re-activation of the bridge was not needed
    assert "+ nmcli connection up id vnetgen-mybridge0\n" not in out
    assert "ok   LAN router → host caldera02 10.10.10.98 (now on mybridge0): reached" in out
    assert "ok   caldera02/VM3 → internet host 203.0.113.10: reached" in out
    assert "ok   caldera02: nothing to change" in out
    assert "ok   caldera02: capture.sh + vnetgen audit --captures" in out
    assert "ok   caldera02: rollback.sh restored the state before the runbook" in out
    assert "verdict: PASSED" in out
    assert any(d.startswith(str(tmp_path / "vnetgen-lab-")) for d in made), made   # the check below looks there
    assert _pids("NetworkManager", under=str(tmp_path)) == set()  # the lab's NetworkManager died with it


@pytest.mark.lab
def test_rehearse_one_host_of_a_fleet(lab_ready):
    """--host caldera03 alone: its trunk leads nowhere, so its isolated network is closed — and shown so."""
    code, out = _invoke("rehearse", str(kit.profile_path("two-hosts")), "--host", "caldera03")
    assert code == 0, out
    assert "caldera02" not in out.split("== caldera03: runbook.sh")[1].split("verdict")[0]
    assert "NIC ens2 on a LAN of its own" in out
    assert "static" in out and "not reached — a closed segment" in out
    assert "verdict: PASSED" in out


@pytest.mark.lab
def test_rehearse_routed_probes_networks_without_vms(lab_ready):
    code, out = _invoke("rehearse", str(kit.profile_path("routed")))
    assert code == 0, out
    assert "upstream route 192.168.132.0/24 via caldera02" in out
    assert "probe-router on router (route, bridge virbr1): static 192.168.132.254/24, gateway 192.168.132.1" in out
    assert "ok   internet host → caldera02/probe-router 192.168.132.254 (its own address, no NAT): reached" in out


@pytest.mark.lab
def test_a_failing_runbook_is_reported_and_rolled_back(lab_ready, monkeypatch, tmp_path, pm):
    """A host where `virsh net-start` fails: exit 1, the failed step named, and rollback.sh still run."""
    from vnetgen.profile import load_valid

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "virsh").write_text('#!/bin/bash\nif [ "$1" = net-start ]; then echo "error: no can do" >&2; exit 1; fi\n'
                                'exec /usr/bin/env PATH="$REAL_PATH" virsh "$@"\n')
    os.chmod(fake / "virsh", 0o755)
    real = rehearsal.run_script

    def broken(host, host_dir, script, *args, env=None, timeout=300):
        if script == "runbook.sh":
            env = dict(env or {}, PATH=f"{fake}:{os.environ['PATH']}", REAL_PATH=os.environ["PATH"])
        return real(host, host_dir, script, *args, env=env, timeout=timeout)

    monkeypatch.setattr(rehearsal, "run_script", broken)
    profile, _ = load_valid(str(kit.profile_path("nat-default")), pm)
    lines = []
    assert rehearsal.rehearse(profile, pm, echo=lines.append) == 1
    out = "\n".join(lines)
    # step 5: the network's (after preflight, firewall coexistence, sysctl, backup)
    assert "FAILED in step 5" in out and "error: no can do" in out and "rollback.sh" in out
    assert "caldera02: runbook.sh failed in step 5 (exit 1)" in out
    assert "ok   caldera02: rollback.sh restored the state before the runbook" in out
    assert "verdict: FAILED" in out


ODD_PROFILE = """\
vnetgen: 1
host: odd1
target: el7
bridges:
  br-ext: {external: true}
networks:
  ext: {mode: bridge, bridge: br-ext}
  opennet: {mode: open, ip: 192.168.140.1/24}
  iso2:
    mode: isolated
    ip: 192.168.150.1/24
    dhcp: {start: 192.168.150.10, end: 192.168.150.20}
  gone: {mode: nat, ip: 192.168.160.1/24, state: absent}
vms:
  multi:
    memory: 512
    vcpus: 1
    networks: [ext, opennet, iso2]
    import: true
    disk: {path: /data/multi.img}
    os_variant: generic
"""


@pytest.mark.lab
def test_rehearse_every_other_mode(lab_ready, write_profile):
    """An external bridge, open and numbered isolated networks, an absent one, a VM on three of them.
    (Found by it: libvirt turns ip_forward on for an open network, so the open mode must persist it
    and rollback.sh must put it back.)"""
    code, out = _invoke("rehearse", write_profile(ODD_PROFILE))
    assert code == 0, out
    assert "external bridge br-ext made by the lab" in out
    assert "odd1/multi#0 on ext (bridge, bridge br-ext): DHCP lease 198.18." in out
    # unpinned libvirt bridges start at virbr1: virbr0 is libvirt's stock default network's
    assert "odd1/multi#1 on opennet (open, bridge virbr1): static 192.168.140.254/24, gateway 192.168.140.1" in out
    assert "odd1/multi#2 on iso2 (isolated, bridge virbr2): DHCP lease 192.168.150." in out
    assert "ok   odd1/multi#1 → internet host 203.0.113.10: reached" in out
    assert "ok   odd1/multi#2 → internet host 203.0.113.10: not reached" in out
    assert "set_sysctl net.ipv4.ip_forward 1" in out
    assert "verdict: PASSED" in out


# The scenarios where the target does something (host bridges, trunk ports); the others' target
# work is the sysctl drop-in, which every scenario shares, and each is replayed on el7 already.
SEED_SCENARIOS = ["bridged", "nat-and-bridged", "two-hosts"]


@pytest.mark.lab
@pytest.mark.parametrize("target", ["el9", "ubuntu"])
@pytest.mark.parametrize("scenario", SEED_SCENARIOS)
def test_seed_scenarios_rehearse_on_the_modern_targets(lab_ready, tmp_path, scenario, target):
    """Each scenario of the seed, its hosts retargeted: applied (el9 under a real NetworkManager),
    guests and reachability as the profile implies, second run a no-op, audit in sync, rollback."""
    if target == "el9":
        require_tool("NetworkManager", "nmcli", "dbus-daemon")
    else:
        require_tool("netplan")
    text = (kit.PROFILE_DIR / f"{scenario}.yaml").read_text()
    assert "target: el7" in text
    path = tmp_path / f"{scenario}-{target}.yaml"
    path.write_text(text.replace("target: el7", f"target: {target}"))
    code, out = _invoke("rehearse", str(path))
    assert code == 0, out
    assert "verdict: PASSED" in out
    if target == "el9":
        assert "NetworkManager runs; each NIC has its own profile" in out


@pytest.mark.lab
def test_host_state_sees_what_rollback_must_restore(lab):
    """The snapshot rollback is judged by sees an address, a port's master, a bridge's STP and a route
    that changed (so a rollback that forgot one of them fails the tests)."""
    host = lab.host("caldera02")
    host.assert_private()
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=False, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
    before = snapshots.host_state(host)
    assert snapshots.state_changes(before, snapshots.host_state(host)) == []
    host.run("ip link add br9 type bridge && ip link set enp0s25 master br9 && ip addr del 10.10.10.98/24 dev enp0s25"
             " && ip addr add 10.10.10.98/24 dev br9 && ip link set dev br9 type bridge stp_state 1")
    changes = "\n".join(snapshots.state_changes(before, snapshots.host_state(host)))
    assert "+ br9 10.10.10.98/24" in changes and "- enp0s25 10.10.10.98/24" in changes  # addresses
    assert "+ enp0s25 up master br9" in changes       # a port's master
    assert "+ br9 stp 1 delay" in changes             # a bridge and its STP
    assert "- default via 10.10.10.1 dev enp0s25" in changes  # the route it lost

"""A runbook on a real, remote host (issue: safe on a real host): in a lab host with a real libvirtd,
the identity guard, routes/addresses/resolvers kept or refused, clashes refused before any change, and
a run that survives the loss of its SSH session, through a real sshd whose client is killed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import labkit as kit
from conftest import ROOT, require_tool
from vnetgen.lab import LIBVIRT_URI, in_private_netns, wait_until

pytestmark = pytest.mark.lab


def _host(lab, name="caldera02"):
    host = lab.host(name)
    assert in_private_netns(host.pid)  # before any runbook runs: a namespace of its own
    host.assert_private()
    return host


def _lan(lab, host):
    """The seed's LAN: enp0s25 holds 10.10.10.98/24, default via 10.10.10.1."""
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=True, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, mac="00:24:81:0d:3f:8d", ip="10.10.10.98/24", gateway="10.10.10.1")
    return lan


def _variant(tmp_path: Path, name: str, *edits) -> Path:
    text = (ROOT / "profiles" / f"{name}.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}-variant.yaml"
    path.write_text(text)
    return path


def _run(host, bundle: Path, *args: str):
    return kit.run_script(host, str(bundle / host.name), "runbook.sh", "--no-vms", *args)


def _refused(host, bundle: Path, before, *expected: str) -> str:
    """The runbook stops in step 1, says each expected text, and the host is as it was."""
    result = _run(host, bundle)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert kit.failed_step(result.stderr) == "1", out
    for text in expected:
        assert text in out, out
    assert "\n   + " not in result.stdout, "a refused run changed something:\n" + out
    assert kit.state_changes(before, kit.host_state(host)) == []
    return out


# --- 1. identity ----------------------------------------------------------------------------

def test_another_hosts_runbook_is_refused_until_host_is_names_it(lab, tmp_path):
    profile = kit.profile_path("nat-default")
    bundle = kit.build(profile, tmp_path / "bundle")
    host = _host(lab, "kvm-b")  # the machine is kvm-b; the bundle is caldera02's
    (bundle / "kvm-b").symlink_to(bundle / "caldera02")
    before = kit.host_state(host)
    _refused(host, bundle, before, "this machine is kvm-b, but this runbook is for host caldera02; "
                                   "on a renamed host run it with --host-is caldera02")
    result = _run(host, bundle, "--host-is", "caldera02")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Network default started" in result.stdout


# --- 2. routes, addresses and resolvers -------------------------------------------------------

def test_a_lost_default_route_is_refused_unless_the_profile_accepts_it(lab, tmp_path):
    no_gateway = _variant(tmp_path, "bridged", ("    gateway: 10.10.10.1\n", ""))
    bundle = kit.build(no_gateway, tmp_path / "bundle")
    host = _host(lab)
    _lan(lab, host)
    before = kit.host_state(host)
    _refused(host, bundle, before,
             "the default route via 10.10.10.1 on enp0s25 would be lost when enp0s25 joins mybridge0: "
             'add "gateway: 10.10.10.1" to bridge mybridge0 in the profile, or "gateway: none"')
    accepted = _variant(tmp_path, "bridged", ("    gateway: 10.10.10.1\n", "    gateway: none\n"))
    bundle = kit.build(accepted, tmp_path / "accepted")
    result = _run(host, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.addresses("mybridge0") == ["10.10.10.98/24"]
    assert kit.default_route(host) is None  # given up, as the profile said
    kit.assert_rollback_restores(host, bundle, before)
    assert kit.default_route(host) == "10.10.10.1"  # rollback.sh puts it back


def test_an_address_the_bridge_does_not_take_is_refused(lab, tmp_path):
    other = _variant(tmp_path, "bridged", ("    ip: 10.10.10.98/24\n", "    ip: 10.10.10.97/24\n"))
    bundle = kit.build(other, tmp_path / "bundle")
    host = _host(lab)
    _lan(lab, host)
    before = kit.host_state(host)
    _refused(host, bundle, before, "enp0s25 holds 10.10.10.98/24, which it loses as a port of mybridge0: "
                                   'give mybridge0 "ip: 10.10.10.98/24" in the profile')


def test_el9_resolvers_of_the_port_are_refused_unless_the_profile_keeps_them(lab, tmp_path):
    require_tool("NetworkManager", "nmcli", "dbus-daemon")
    no_dns = _variant(tmp_path, "bridged-el9", ("    dns: [8.8.8.8]\n", ""))
    bundle = kit.build(no_dns, tmp_path / "bundle")
    host = _host(lab)
    _lan(lab, host)
    host.start_networkmanager()
    host.nm_adopt("enp0s25")
    host.run(["nmcli", "connection", "modify", "System enp0s25", "ipv4.dns", "10.10.10.53"])
    host.run(["nmcli", "connection", "up", "id", "System enp0s25"])
    before = kit.host_state(host)
    _refused(host, bundle, before, "enp0s25 gives the host its resolvers (10.10.10.53), mybridge0 would not: "
                                   'add "dns: [10.10.10.53]" to bridge mybridge0 in the profile, or "dns: none"')


# --- 3. clashes -----------------------------------------------------------------------------

LAB_NETWORK = """\
vnetgen: 1
host: caldera02
networks:
  lab:
    mode: nat
    ip: {ip}
{extra}"""


STOCK_UUID = "dd8fe884-6c02-601e-7551-cca97df1c5df"


def _stock_default(host, tmp_path):
    """libvirt's stock default network, running, as on nearly every libvirt host (its UUID pinned, for
    the clash a profile pinning the same UUID makes)."""
    kit.libvirt_default(host, tmp_path, uuid=STOCK_UUID)

def test_an_unpinned_network_runs_beside_libvirts_stock_default(lab, tmp_path, write_profile):
    host = _host(lab)
    _lan(lab, host)
    _stock_default(host, tmp_path)
    profile = Path(write_profile(LAB_NETWORK.format(ip="192.168.100.1/24", extra="")))
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)
    kit.apply(host, bundle)
    assert "192.168.100.1/24" in host.addresses("virbr1") and "192.168.122.1/24" in host.addresses("virbr0")
    kit.assert_rollback_restores(host, bundle, before)


@pytest.mark.parametrize("extra, ip, expected", [
    ("    bridge: virbr0\n", "192.168.100.1/24",
     "bridge name virbr0 is used by libvirt network default: pin another bridge for lab"),
    ("    uuid: dd8fe884-6c02-601e-7551-cca97df1c5df\n", "192.168.100.1/24",
     "UUID dd8fe884-6c02-601e-7551-cca97df1c5df belongs to libvirt network default, not lab"),
    ("", "10.10.10.1/24", "10.10.10.0/24 overlaps 10.10.10.0/24, routed via enp0s25"),
    ("    bridge: enp0s25\n", "192.168.100.1/24",
     "interface enp0s25 already exists on this host and network lab does not run it"),
], ids=["bridge-of-another-network", "uuid-of-another-network", "subnet-in-use", "bridge-is-a-nic"])
def test_clashes_are_refused_before_any_change(lab, tmp_path, write_profile, extra, ip, expected):
    host = _host(lab)
    _lan(lab, host)
    _stock_default(host, tmp_path)
    profile = Path(write_profile(LAB_NETWORK.format(ip=ip, extra=extra)))
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)
    _refused(host, bundle, before, expected)


# --- 4. a run survives its SSH session ----------------------------------------------------------

MANY = "vnetgen: 1\nhost: caldera02\nnetworks:\n" + "".join(
    f"  iso{n}:\n    mode: isolated\n    ip: 192.168.{200 + n}.1/24\n" for n in range(8))

SSHD_CONFIG = """\
Port 2222
ListenAddress 127.0.0.1
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile {dir}/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
"""


@pytest.fixture
def sshd(lab, tmp_path):
    """A real sshd inside lab host caldera02 on its own 127.0.0.1:2222, and a way to ssh in."""
    require_tool("sshd", "ssh", "ssh-keygen")
    host = _host(lab)
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    (keys / "sshd_config").write_text(SSHD_CONFIG.format(dir=keys))
    sshd_path = subprocess.run(["sh", "-c", "command -v sshd || echo /usr/sbin/sshd"], capture_output=True,
                               text=True, env={"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}).stdout.strip()
    host.run(["mkdir", "-p", "/run/sshd"])
    host.run([sshd_path, "-f", str(keys / "sshd_config")])
    # sshd daemonizes before it listens, and writes its pid file once it does: wait for that state.
    assert wait_until((keys / "sshd.pid").exists, timeout=30, interval=0.05), "sshd never listened"

    def ssh(command: str) -> subprocess.Popen:
        """`ssh -tt root@127.0.0.1 COMMAND` from inside the lab host (a terminal, as an administrator has)."""
        argv = ["ssh", "-tt", "-i", str(keys / "client_key"), "-p", "2222", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "root@127.0.0.1", f"LIBVIRT_DEFAULT_URI={LIBVIRT_URI} {command}"]
        return subprocess.Popen(host._nsenter() + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    return host, ssh


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> str:
    """The client's output up to the first line matching `pattern` (fails on EOF or timeout)."""
    seen = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            seen += chunk
            if re.search(pattern, seen.decode(errors="replace")):
                return seen.decode(errors="replace")
        elif proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"never saw {pattern!r}; output:\n{seen.decode(errors='replace')}")


def _drop(proc: subprocess.Popen) -> None:
    """The connection goes away: the client dies without a word, sshd hangs up the session."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _wait_for_log(host, pattern: str, timeout: float = 120) -> str:
    """Wait for a state: the newest runbook log on the host says `pattern`, and the lock is free."""
    state = host.root_path("/var/lib/vnetgen/caldera02")
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        logs = sorted(Path(state).glob("runbook.sh-*.log"), key=lambda p: p.stat().st_mtime_ns)
        text = logs[-1].read_text(errors="replace") if logs else ""
        if re.search(pattern, text) and _lock_free(host):
            return text
        time.sleep(0.1)
    raise AssertionError(f"the run never got to {pattern!r}; its log:\n{text}")


def _lock_free(host) -> bool:
    done = host.run(["flock", "-n", "/var/lib/vnetgen/caldera02/lock", "true"], check=False)
    return done.returncode == 0


def test_a_run_completes_after_its_ssh_session_drops(sshd, tmp_path, write_profile):
    host, ssh = sshd
    bundle = kit.build(Path(write_profile(MANY)), tmp_path / "bundle")
    client = ssh(f"bash {bundle}/caldera02/runbook.sh --no-vms")
    seen = _read_until(client, r"== step 4:")
    _drop(client)
    assert "every check holds" not in seen  # it was cut off mid-run
    log = _wait_for_log(host, r"change\(s\) applied to host caldera02; every check holds")
    assert "== step 4:" in log
    nets = host.virsh("net-list", "--all", "--name").stdout.split()
    assert sorted(nets) == sorted(f"iso{n}" for n in range(8))
    assert all(host.virsh("net-info", n).stdout.count("yes") >= 2 for n in nets)  # active, autostart
    kit.assert_second_run_changes_nothing(host, bundle)


def test_without_confirmation_a_dropped_run_rolls_back(sshd, tmp_path, write_profile):
    host, ssh = sshd
    bundle = kit.build(Path(write_profile(MANY)), tmp_path / "bundle")
    before = kit.host_state(host)
    client = ssh(f"bash {bundle}/caldera02/runbook.sh --no-vms --confirm-timeout 3")
    _read_until(client, r"Confirm within 3 s")
    _drop(client)
    log = _wait_for_log(host, r"change\(s\) undone on host caldera02")
    assert "no confirmation within 3 s: rolling back" in log
    assert kit.state_changes(before, kit.host_state(host)) == []


def test_a_second_run_is_refused_while_one_waits_then_confirm_keeps_it(sshd, tmp_path, write_profile):
    host, ssh = sshd
    bundle = kit.build(Path(write_profile(MANY)), tmp_path / "bundle")
    first = ssh(f"bash {bundle}/caldera02/runbook.sh --no-vms --confirm-timeout 120")
    _read_until(first, r"Confirm within 120 s")
    second = _run(host, bundle)
    assert second.returncode == 1
    assert "another runbook.sh or rollback.sh of host caldera02 is running" in second.stderr
    _drop(first)  # the operator's session is gone; they reconnect and confirm
    confirmed = kit.run_script(host, str(bundle / "caldera02"), "runbook.sh", "--confirm")
    assert confirmed.returncode == 0 and "confirmed" in confirmed.stdout
    log = _wait_for_log(host, r"change\(s\) applied to host caldera02; every check holds")
    assert "confirmed: the change stays" in log


# --- 5. the host's own files ----------------------------------------------------------------------

OWN_HOOK = """#!/bin/sh
# the administrator's own libvirt network hook
echo "$@" >> /run/own-hook.calls
cat > "/run/own-hook.stdin-$1-$2"
"""


def test_an_existing_network_hook_keeps_working_chained_after_ours(lab, tmp_path, write_profile):
    host = _host(lab)
    _lan(lab, host)
    trunk = lab.lan("trunk", "198.51.100.0/24", dhcp=False)
    lab.nic(host, "ens9", trunk)
    hook = host.root_path("/etc/libvirt/hooks/network")
    os.makedirs(os.path.dirname(hook), exist_ok=True)
    Path(hook).write_text(OWN_HOOK)
    os.chmod(hook, 0o755)
    host.restart_libvirtd()
    profile = Path(write_profile(LAB_NETWORK.format(ip="192.168.100.1/24", extra="    ports: [ens9]\n")))
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)

    out = kit.apply(host, bundle)

    assert "+ chain_hook /etc/libvirt/hooks/network" in out
    assert Path(hook + ".before-vnetgen").read_text() == OWN_HOOK
    host.restart_libvirtd()  # libvirtd reads hooks when it starts
    host.virsh("net-destroy", "lab")
    host.virsh("net-start", "lab")
    assert "ens9" in kit.bridge_ports(host, "virbr1")  # our part: the trunk NIC is back in the bridge
    calls = Path(host.root_path("/run/own-hook.calls")).read_text()
    assert "lab started begin -" in calls  # theirs still runs, with libvirt's arguments
    assert "<name>lab</name>" in Path(host.root_path("/run/own-hook.stdin-lab-started")).read_text()
    kit.assert_rollback_restores(host, bundle, before)
    assert Path(hook).read_text() == OWN_HOOK and not os.path.exists(hook + ".before-vnetgen")

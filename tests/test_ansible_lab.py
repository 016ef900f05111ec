"""The fleet rollout for real: the two-host seed scenario rolled out by `ansible-playbook site.yml`
over a real sshd in each lab host, evidence collected with capture.yml and audited, a drift made by
hand reported, and rollback.yml restoring both hosts. The control node is the lab router's namespace,
on a management LAN with the hosts: nothing leaves the lab."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import labkit as kit
from conftest import require_tool
from vnetgen.lab import LIBVIRT_URI, in_private_netns, wait_until

pytestmark = pytest.mark.lab

MGMT = {"caldera02": "192.0.2.12", "caldera03": "192.0.2.13"}

SSHD_CONFIG = """\
Port 2222
ListenAddress {address}
HostKey {keys}/host_key
AuthorizedKeysFile {keys}/authorized_keys
PidFile {keys}/sshd-{host}.pid
UsePAM no
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
# The lab's libvirtd serves networks only, at this URI (a real host needs nothing here).
SetEnv LIBVIRT_DEFAULT_URI={uri}
"""

INVENTORY = """\
[vnetgen_wave_1]
caldera02 ansible_host={caldera02}

[vnetgen_wave_2]
caldera03 ansible_host={caldera03}

[vnetgen_hosts:vars]
ansible_port=2222
ansible_user=root
ansible_ssh_private_key_file={keys}/client_key
ansible_ssh_common_args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 -o ServerAliveInterval=1 -o ServerAliveCountMax=3
ansible_python_interpreter={python}
"""


@pytest.fixture
def fleet(lab, tmp_path, request):
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"  # pip installs ansible-core there
    if not ansible_playbook.exists():
        require_tool("ansible-playbook")
        ansible_playbook = Path(shutil.which("ansible-playbook"))
    require_tool("sshd", "ssh", "ssh-keygen")
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    sshd = shutil.which("sshd", path=os.environ["PATH"] + ":/usr/sbin:/sbin")
    mgmt = lab.lan("mgmt0", "192.0.2.0/24", dhcp=False, gateway_ip="192.0.2.1")
    hosts = {}
    for name, address in MGMT.items():
        host = lab.host(name)
        assert in_private_netns(host.pid)
        host.assert_private()
        lab.nic(host, "mgmt0", mgmt, ip=f"{address}/24")
        config = keys / f"sshd-{name}.conf"
        config.write_text(SSHD_CONFIG.format(address=address, keys=keys, host=name, uri=LIBVIRT_URI))
        host.run(["mkdir", "-p", "/run/sshd"])
        host.run([sshd, "-f", str(config)])
        # sshd daemonizes before it listens, and writes its pid file once it does: wait for that state.
        assert wait_until((keys / f"sshd-{name}.pid").exists, timeout=30, interval=0.05), f"{name}: no sshd"
        hosts[name] = host
    lab.link(hosts["caldera02"], "ens2", hosts["caldera03"], "ens2")  # the seed's trunk
    bundle = kit.build(kit.profile_path("two-hosts"), tmp_path / "bundle")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(INVENTORY.format(keys=keys, python=sys.executable, **MGMT))
    control = lab.router()
    # ssh's master connections: this test's own (labs of tests beside it have hosts at the same
    # addresses; ansible's ~/.ansible/cp would reach into them), in a short path (a socket's is limited).
    control_dir = tempfile.mkdtemp(prefix="vcp-")
    request.addfinalizer(lambda: shutil.rmtree(control_dir, ignore_errors=True))

    def playbook(name: str, *extra: str) -> subprocess.CompletedProcess:
        """ansible-playbook run on the control node (the router's namespace), as an administrator would."""
        env = {"ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False"}
        argv = [str(ansible_playbook), "-i", str(bundle / "ansible" / "inventory.ini"), "-i",
                str(inventory), str(bundle / "ansible" / name), "-e", "vnetgen_no_vms=true", *extra]
        return control.run(argv, env=env, check=False, timeout=600)

    return hosts, bundle, playbook, tmp_path


def test_the_two_host_scenario_rolls_out_audits_and_rolls_back(fleet):
    hosts, bundle, playbook, tmp_path = fleet
    before = {name: kit.host_state(host) for name, host in hosts.items()}

    applied = playbook("site.yml", "-e", "vnetgen_confirm_timeout=60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    out = applied.stdout
    assert out.index("caldera02") < out.index("caldera03")  # wave 1 first
    for name, host in hosts.items():
        assert "default" in host.virsh("net-list", "--name").stdout.split()
    assert "ens2" in kit.bridge_ports(hosts["caldera02"], "virbr0")
    assert "ens2" in kit.bridge_ports(hosts["caldera03"], "virbr0")

    captures = tmp_path / "captures"
    collected = playbook("capture.yml", "-e", f"vnetgen_captures={captures}")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    audit = subprocess.run([sys.executable, "-m", "vnetgen", "audit", str(kit.profile_path("two-hosts")),
                            "--captures", str(captures)], capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    hosts["caldera03"].run(["ip", "link", "set", "ens2", "nomaster"])  # a drift made by hand
    collected = playbook("capture.yml", "-e", f"vnetgen_captures={captures}")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    audit = subprocess.run([sys.executable, "-m", "vnetgen", "audit", str(kit.profile_path("two-hosts")),
                            "--captures", str(captures)], capture_output=True, text=True, timeout=120)
    assert audit.returncode == 1 and "port-missing" in audit.stdout, audit.stdout + audit.stderr

    rolled = playbook("rollback.yml")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    for name, host in hosts.items():
        taps = [vm.host_ifname for vm in host.vms]
        changes = kit.state_changes(kit.host_state_ignoring(before[name], taps), kit.host_state(host, ignore=taps))
        assert changes == [], f"{name} after rollback.yml:\n" + "\n".join(changes)


# The administrator's own libvirt network hook on caldera02, standing in for a change that cuts the
# host off from the control node: when network default starts, the management link goes down.
CUTTING_HOOK = """#!/bin/sh
if [ "$1" = default ] && [ "$2" = started ]; then ip link set mgmt0 down; fi
exit 0
"""


def test_a_host_lost_mid_rollout_rolls_back_by_itself_and_stops_the_rollout(fleet):
    """caldera02 (wave 1) is cut off by its own change during its run: Ansible reports it by name,
    the rollout stops (wave 2, caldera03, is never started), and caldera02's runbook, never confirmed,
    rolls back by itself: both hosts end as they were."""
    hosts, bundle, playbook, tmp_path = fleet
    lost = hosts["caldera02"]
    hook = lost.root_path("/etc/libvirt/hooks/network")
    os.makedirs(os.path.dirname(hook), exist_ok=True)
    Path(hook).write_text(CUTTING_HOOK)
    os.chmod(hook, 0o755)
    lost.restart_libvirtd()   # libvirtd reads hooks when it starts
    before = {name: kit.host_state(host) for name, host in hosts.items()}

    applied = playbook("site.yml", "-e", "vnetgen_confirm_timeout=15", "-e", "vnetgen_ssh_retries=1")
    log = applied.stdout + applied.stderr
    assert applied.returncode != 0, log
    assert re.search(r"fatal: \[caldera02\]: (UNREACHABLE|FAILED)!", log), log      # reported by name
    assert "[caldera03]" not in log                    # the rollout stopped: wave 2 never started
    assert not os.path.exists(hosts["caldera03"].root_path("/var/lib/vnetgen/bundles/vnetgen-caldera03"))

    exit_file = Path(lost.root_path("/var/lib/vnetgen/bundles/vnetgen-caldera02.exit"))
    assert wait_until(exit_file.exists, timeout=180, interval=0.5), "caldera02's run never ended"
    assert exit_file.read_text() == "3\n"            # runbook.sh: not confirmed in time, rolled back
    lost.ip("link", "set", "mgmt0", "up")             # the hook's cut, not the runbook's change
    for name, host in hosts.items():
        changes = kit.state_changes(before[name], kit.host_state(host))
        assert changes == [], f"{name} after the lost rollout:\n" + "\n".join(changes)

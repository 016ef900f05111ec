"""The two faces of one check registry agree (issue: one source of truth): after a drift made by
hand on a lab host where the runbook has run, `runbook.sh --verify` (bash on the host) and
`vnetgen audit` (Python on what the host's tools print) flag the same check ids."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import labkit as kit
from vnetgen.lab import in_private_netns

pytestmark = pytest.mark.lab

# (scenario, host, drift commands run on the host, at least these ids flagged)
DRIFTS = [
    ("nat-default", "caldera02", ["virsh net-destroy default"], {"network-inactive network/default"}),
    ("nat-default", "caldera02", ["virsh net-autostart --disable default"], {"network-autostart network/default"}),
    ("nat-default", "caldera02", ["sysctl -w net.ipv4.ip_forward=0"], {"ip-forward host"}),
    ("nat-default", "caldera02",
     ["virsh net-update default delete ip-dhcp-range \"<range start='192.168.122.2' end='192.168.122.254'/>\" "
      "--live --config",
      "virsh net-update default add ip-dhcp-range \"<range start='192.168.122.2' end='192.168.122.200'/>\" "
      "--live --config"], {"dhcp-range network/default"}),
    ("bridged", "caldera02", ["ip addr del 10.10.10.98/24 dev mybridge0"], {"bridge-address bridge/mybridge0"}),
    ("bridged", "caldera02", ["ip link set enp0s25 nomaster"], {"port-missing bridge/mybridge0"}),
    ("bridged", "caldera02", ["ip link set dev mybridge0 type bridge stp_state 1"], {"stp bridge/mybridge0"}),
    ("two-hosts", "caldera03", ["ip link set ens2 nomaster"], {"port-missing bridge/virbr0"}),
]


def _lab_host(lab, scenario, host_name):
    """The host of `scenario` wired as `vnetgen rehearse` wires it, the runbook applied."""
    host = lab.host(host_name)
    assert in_private_netns(host.pid)
    if scenario == "bridged":
        kit.uplink(lab, host)
    elif scenario == "two-hosts":
        trunk = lab.lan("trunk", "198.51.100.0/24", dhcp=False)
        lab.nic(host, "ens2", trunk)
    return host


def _testable_ids(profile: Path, host: str) -> set:
    from vnetgen.plan import plan_profile
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    pm = get_plugin_manager()
    plan = plan_profile(load_valid(str(profile), pm)[0], pm, [host])[0]
    return {c.id for c in plan.checks if c.test and not c.skip_flag}


@pytest.mark.parametrize("scenario, host_name, commands, expected", DRIFTS,
                         ids=[f"{d[0]}-{d[3].copy().pop().split()[0]}" for d in DRIFTS])
def test_runbook_verify_and_audit_flag_the_same_checks(lab, tmp_path, scenario, host_name, commands, expected):
    profile = kit.profile_path(scenario)
    bundle = kit.build(profile, tmp_path / "bundle")
    host = _lab_host(lab, scenario, host_name)
    kit.apply(host, bundle)
    for command in commands:
        host.run(["bash", "-c", command])

    verify = kit.run_script(host, str(bundle / host_name), "runbook.sh", "--verify", "--no-vms")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    runbook_ids = {m.split(": ", 1)[0] for m in re.findall(r"^   drift: (.*)$", verify.stdout, re.M)}
    audit = host.run([sys.executable, "-m", "vnetgen", "audit", str(profile), "--host", host_name, "--format", "json"],
                     check=False)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    drift = json.loads(audit.stdout)["hosts"][host_name]["drift"]
    audit_ids = {f"{d['kind']} {d['object']}" for d in drift if d["severity"] == "error"}
    assert expected <= runbook_ids
    # Every check the runbook can test, the audit judges alike (the audit also judges what bash cannot).
    assert runbook_ids == audit_ids & _testable_ids(profile, host_name)

"""REVIEW.md: run order with reasons, per-host changes, warnings, and a Mermaid diagram."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import IN_CI, PROFILES, ROOT, require_tool


def review(build_bundle, path):
    return build_bundle(path).files["REVIEW.md"].text


def test_dhcp_server_host_runs_first_and_says_why(build_bundle, write_profile):
    text = (ROOT / "profiles" / "two-hosts.yaml").read_text()
    # List the isolated host first in the profile: the order must still put the DHCP server first.
    swapped = text.replace("hosts:\n  caldera02:", "hosts:\n  caldera01:\n    networks: {x: {mode: isolated}}\n"
                                                  "  caldera02:")
    body = review(build_bundle, write_profile(swapped))
    order = re.findall(r"^\d+\. \*\*(\S+)\*\* — (.*)$", body, flags=re.M)
    assert order[0] == ("caldera02", "serves DHCP to caldera03 over a link: its network must be up before theirs")
    assert [h for h, _ in order] == ["caldera02", "caldera01", "caldera03"]


def test_host_sections_list_what_changes(build_bundle):
    body = review(build_bundle, ROOT / "profiles" / "bridged.yaml")
    assert "address 10.10.10.98/24 moves onto the bridge from enp0s25" in body
    assert "`bridged_network`: bridge on bridge `mybridge0`" in body
    assert "`net.bridge.bridge-nf-call-iptables = 0`" in body
    assert "`VM3`: 2048 MiB, 2 vCPU, on bridged_network" in body
    steps = re.findall(r"^(\d+)\. (.+?) — ", body.split("Runbook steps")[1], flags=re.M)
    assert [int(n) for n, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[0][1] == "preflight" and steps[-1][1] == "verify"


def test_warnings_appear_with_their_reason(build_bundle, write_profile):
    path = write_profile("vnetgen: 1\nbridges:\n  br0: {ports: [eth0, eth1], stp: false}\n")
    body = review(build_bundle, path)
    assert "## Warnings" in body
    assert "- line 3: bridge br0: stp is off with 2 physical ports: a loop between them would flood the LAN" in body


def test_mermaid_diagram_has_every_object(build_bundle):
    body = review(build_bundle, ROOT / "profiles" / "two-hosts.yaml")
    diagram = body.split("```mermaid\n")[1].split("```")[0]
    assert diagram.startswith("flowchart LR\n")
    for needle in ('subgraph h_caldera02["host caldera02"]', 'subgraph h_caldera03["host caldera03"]',
                   'caldera02_net_default{{"network default (nat) 192.168.122.1/24"}}',
                   'caldera02_nic_ens2(["NIC ens2"])', 'caldera02_vm_VM1["VM VM1"] --> caldera02_net_default',
                   'caldera02_nic_ens2 ===|"link"| caldera03_nic_ens2'):
        assert needle in diagram, needle
    assert diagram.count("subgraph") == diagram.count("\n  end")


def _diagram(body: str) -> str:
    return body.split("```mermaid\n")[1].split("```")[0]


def test_mermaid_diagram_draws_the_settings_beyond_the_seed(build_bundle):
    """IPv6 addresses and VLAN ids on the network's node, the NICs a bridgeless mode's guests go out
    through (macvtap devs, an SR-IOV PF, a forward dev) as uplinks, port forwards as entry points."""
    modes = _diagram(review(build_bundle, ROOT / "tests" / "fixtures" / "modes" / "modes.yaml"))
    for needle in ('kvm1_nic_eno1(["NIC eno1"]) -.-|"uplink"| kvm1_net_lan_direct',
                   'kvm1_nic_eno2(["NIC eno2"]) -.-|"uplink"| kvm1_net_lan_vepa',
                   'kvm1_nic_eno3(["NIC eno3"]) -.-|"uplink"| kvm1_net_lan_vepa',
                   'kvm1_net_lan_pass{{"network lan-pass (direct) VLAN 30"}}',
                   'kvm1_nic_enp1s0(["NIC enp1s0"]) -.-|"uplink"| kvm1_net_sriov',
                   'kvm1_net_ovs_lan{{"network ovs-lan (ovs) VLAN 10,20"}}', "kvm1_net_ovs_lan --- kvm1_br_ovsbr0"):
        assert needle in modes, needle
    assert "uplink\"| kvm1_net_sriov_vfs" not in modes   # VFs by PCI address: no host NIC to draw

    dual = _diagram(review(build_bundle, ROOT / "tests" / "fixtures" / "grow" / "ipv6.yaml"))
    assert 'kvm1_net_dual{{"network dual (nat) 192.168.160.1/24 fd00:160::1/64"}}' in dual
    assert 'kvm1_net_routed6{{"network routed6 (route) 2001:db8:161::1/64"}}' in dual

    forwards = _diagram(review(build_bundle, ROOT / "tests" / "fixtures" / "forwards" / "port-forwards.yaml"))
    assert ('caldera02_fwd_default_tcp_2222_192_168_122_91_22>"tcp port 2222 to 192.168.122.91:22"] --> '
            'caldera02_net_default') in forwards
    assert forwards.count('>"udp port 5353 to 192.168.122.91:53"] --> caldera02_net_default') == 1
    assert '>"tcp port 8080 to 192.168.150.10:80"] --> caldera02_net_web' in forwards


@pytest.mark.realtool
def test_mermaid_parses_every_diagram(build_bundle):
    """Mermaid's own parser (tests/mermaid, installed by tests/run.sh) reads the diagram of every shipped
    profile and of the fixtures with every setting and mode beyond the seed's."""
    require_tool("node")
    checker = ROOT / "tests" / "mermaid"
    if not (checker / "node_modules" / "mermaid").is_dir():
        message = "needs tests/mermaid/node_modules: tests/run.sh installs it (npm ci)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    paths = PROFILES + sorted((ROOT / "tests" / "fixtures").glob("*/*.yaml"))
    diagrams = {}
    for path in paths:
        diagrams[path.name] = _diagram(review(build_bundle, path))
    assert len(diagrams) == len(paths) >= len(PROFILES) + 5
    broken = "flowchart LR\n  a -->> b{{\n"   # the parser must be able to say no
    result = subprocess.run(["node", str(checker / "check.mjs")], input=json.dumps([*diagrams.values(), broken]),
                            capture_output=True, text=True, timeout=120, check=True)
    verdicts = json.loads(result.stdout)
    assert verdicts[-1] and "Parse error" in verdicts[-1]
    assert {name: error for name, error in zip(diagrams, verdicts) if error} == {}

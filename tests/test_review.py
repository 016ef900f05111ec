"""REVIEW.md: run order with reasons, per-host changes, warnings, and a Mermaid diagram."""
from __future__ import annotations

import re

from conftest import ROOT


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

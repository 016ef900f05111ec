"""A port forward through libvirt's nftables backend, against the real kernel's nftables (issue 14).

libvirt 10.4+ keeps a network's firewall in the nftables table `ip libvirt_network`; the lab's
libvirt is 9.0, which has only the iptables backend, so this test uses a STAND-IN for libvirt's
table: the nft commands libvirt's nftables backend (src/network/network_nftables.c, read at a master
later than 10.4; releases differ in details such as a DHCP checksum rule) issues for a nat network
(`forward` chain hooked at filter/forward, jumping to `guest_output`, `guest_input` and `guest_cross`;
per network a catch-all `reject` of what enters or leaves its bridge, the accept of the subnet's
outgoing traffic and of answers (`ct state related,established`) coming in, traffic across the
bridge, and the masquerade rules of `guest_nat`), written here by the test, not by libvirt. Everything
else is real: libvirt 9.0 defines and starts the network from the runbook (with its own iptables
rules, which the test then flushes, as a host whose libvirt uses nftables has none: here `iptables` is
iptables-nft, so they would otherwise sit in nftables too and decide the outcome), the bundle's
installed network hook (the FUNCTIONS of plugins/forwards.py) finds the stand-in table and writes
its nftables rules, the kernel's nftables does the DNAT and the rejecting. A TCP connection from the
upstream router to the host's uplink address and port reaches a listener in the guest only with the
rules (and not with the DNAT alone: the stand-in's reject holds until the hook's accept is in
`guest_input`); the audit reads the forward from `nft list ruleset`; after the hook's del and
rollback.sh the connection is gone. Only namespaces the lab made."""
from __future__ import annotations

import re

import pytest

import labkit as kit
from conftest import require_tool
from test_forwards_lab import PROFILE   # the same network and forward, under the other firewall backend
from vnetgen.lab import in_private_netns
from vnetgen.lab.processes import wait_until

pytestmark = pytest.mark.lab


TAG = "vnetgen forward lab tcp/2222"
HOOK = "/etc/libvirt/hooks/network"

# The stand-in: what libvirt's nftables backend runs when it starts network `lab` (bridge virbr5,
# 192.168.100.0/24, forward mode nat, no forward dev), in its order: nftablesSetupPrivateChains, then
# nftablesAddGeneralIPv4FirewallRules (rejects, cross), then nftablesAddMasqueradingFirewallRules.
# Each rule is an `insert` (to the top of its chain), as libvirt's are.
LIBVIRT_NFTABLES_STANDIN = """\
add table ip libvirt_network { comment "Managed by libvirt for virtual networks: https://libvirt.org/firewall.html#the-virtual-network-driver"; }
add chain ip libvirt_network forward { type filter hook forward priority 0; policy accept; }
add chain ip libvirt_network guest_output
insert rule ip libvirt_network forward counter jump guest_output
add chain ip libvirt_network guest_input
insert rule ip libvirt_network forward counter jump guest_input
add chain ip libvirt_network guest_cross
insert rule ip libvirt_network forward counter jump guest_cross
add chain ip libvirt_network guest_nat { type nat hook postrouting priority 100; policy accept; }
insert rule ip libvirt_network guest_output iif virbr5 counter reject
insert rule ip libvirt_network guest_input oif virbr5 counter reject
insert rule ip libvirt_network guest_cross iif virbr5 oif virbr5 counter accept
insert rule ip libvirt_network guest_output ip saddr 192.168.100.0/24 iif virbr5 counter accept
insert rule ip libvirt_network guest_input oif virbr5 ip daddr 192.168.100.0/24 ct state related,established counter accept
insert rule ip libvirt_network guest_nat ip saddr 192.168.100.0/24 ip daddr != 192.168.100.0/24 counter masquerade
insert rule ip libvirt_network guest_nat meta l4proto udp ip saddr 192.168.100.0/24 ip daddr != 192.168.100.0/24 counter masquerade to :1024-65535
insert rule ip libvirt_network guest_nat meta l4proto tcp ip saddr 192.168.100.0/24 ip daddr != 192.168.100.0/24 counter masquerade to :1024-65535
insert rule ip libvirt_network guest_nat ip saddr 192.168.100.0/24 ip daddr 255.255.255.255/32 counter return
insert rule ip libvirt_network guest_nat ip saddr 192.168.100.0/24 ip daddr 224.0.0.0/24 counter return
"""

def _reach(router) -> bool:
    """One connection from the router to the host's port 2222: the guest's web server answers."""
    return kit.http_answers(router, "10.10.10.98", 2222)


def _iptables_rules(host) -> str:
    """Every rule `iptables`/`ip6tables` (the variant libvirt 9.0 uses) shows in the host: "-A" lines."""
    out = host.run("for t in filter nat mangle; do iptables -w -t $t -S; ip6tables -w -t $t -S; done").stdout
    return "\n".join(line for line in out.splitlines() if line.startswith("-A "))


def _flush_libvirt_iptables(host) -> None:
    """Turn the host into one whose libvirt uses nftables: no iptables rule of libvirt's (nor of the
    runbook's forward, written then for the iptables backend) is left."""
    host.run("for t in filter nat mangle; do for x in iptables ip6tables; do "
             "$x -w -t $t -F && $x -w -t $t -X || exit 1; done; done")
    assert _iptables_rules(host) == ""


def _hook(host, operation: str):
    return host.run([HOOK, "lab", operation], check=False)


def _tagged(host) -> str:
    """The nftables rules carrying the forward's comment (their counters left out)."""
    rules = host.run(["nft", "list", "ruleset"]).stdout.splitlines()
    return "\n".join(re.sub(r"counter packets \d+ bytes \d+", "counter", line.strip()) for line in rules if TAG in line)


def test_a_port_forward_through_libvirts_nftables_table_reaches_the_guest(lab, tmp_path):
    require_tool("nft", "iptables", "ip6tables")
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    kit.uplink(lab, host)
    router = lab.router()
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)

    kit.apply(host, bundle)   # libvirt 9.0: the network runs behind its iptables rules
    assert "LIBVIRT_FWI" in _iptables_rules(host) and TAG in _iptables_rules(host)
    vm = lab.vm(host, "VM1", "virbr5")
    vm.set_static("192.168.100.91/24", gw="192.168.100.1")
    kit.serve_http(lab, vm, "192.168.100.91", 8000)
    assert wait_until(lambda: _reach(router), timeout=20)   # the iptables backend's forward, as proven elsewhere

    _flush_libvirt_iptables(host)
    assert host.run("nft list table ip libvirt_network", check=False).returncode != 0
    host.run(["nft", "-f", "-"], input=LIBVIRT_NFTABLES_STANDIN)
    assert wait_until(lambda: not _reach(router), timeout=20)   # nothing forwards port 2222 now
    assert vm.ping("10.10.10.1", timeout=10)   # the stand-in's accepts and masquerade carry the guest's own traffic

    # The hook's add finds the table and writes nftables rules, none in iptables.
    assert _hook(host, "vnetgen-forwards-add").returncode == 0
    assert _iptables_rules(host) == ""
    tagged = _tagged(host)
    assert tagged.count("dnat to 192.168.100.91:8000") == 2, tagged   # prerouting and output
    assert 'oif "virbr5" ip daddr 192.168.100.91 tcp dport 8000 ct status dnat' in tagged, tagged
    guest_input = host.run("nft list chain ip libvirt_network guest_input").stdout
    assert guest_input.index(TAG) < guest_input.index("reject"), guest_input   # before libvirt's reject
    assert wait_until(lambda: _reach(router), timeout=20), host.run("nft list ruleset").stdout
    assert _hook(host, "vnetgen-forwards-check").returncode == 0
    assert _hook(host, "vnetgen-forwards-add").returncode == 0 and _tagged(host) == tagged   # idempotent

    # The DNAT alone does not pass libvirt's reject: without the hook's accept in guest_input, no answer.
    host.run(["bash", "-c", f"source <(sed -n '/^forward_backend()/,$p' {HOOK}) && "
                            f"forward_nft_del libvirt_network guest_input '{TAG}'"])
    assert "ct status dnat" not in _tagged(host)
    assert wait_until(lambda: not _reach(router), timeout=20)
    assert _hook(host, "vnetgen-forwards-check").returncode != 0
    assert _hook(host, "vnetgen-forwards-add").returncode == 0 and _tagged(host) == tagged
    assert wait_until(lambda: _reach(router), timeout=20)

    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")
    ruleset = (tmp_path / "captures" / "caldera02" / "nft-ruleset.txt").read_text()
    assert "dnat to 192.168.100.91:8000" in ruleset and "table ip libvirt_network" in ruleset

    # The hook's del (libvirt's `stopped`) removes every rule; the connection is gone.
    assert _hook(host, "vnetgen-forwards-del").returncode == 0
    assert _tagged(host) == ""
    assert _hook(host, "vnetgen-forwards-gone").returncode == 0
    assert wait_until(lambda: not _reach(router), timeout=20)

    # Added again, rollback.sh removes it too (its del looks in both firewalls).
    assert _hook(host, "vnetgen-forwards-add").returncode == 0 and _tagged(host) == tagged
    kit.assert_rollback_restores(host, bundle, before)
    assert _tagged(host) == ""
    assert not _reach(router)

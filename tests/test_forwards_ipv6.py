"""IPv6 port forwards (issue 14): `to: "[ADDRESS]:PORT"` on a nat network with an IPv6 address — located errors,
the hook's ip6tables/nftables `ip6` rules (in a hook of IPv4 forwards only when needed), the capture's
ip6tables-nat.txt, the audit's reading of both firewalls, shellcheck; and the rules themselves, added, checked,
read back by the audit's parser and removed by the hook's own functions with the real ip6tables and nft in a
private network namespace."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app
from test_forwards import _case, shellcheck_clean
from test_forwards import _variant as forwards_variant
from vnetgen_plugins.forwards import IP6TABLES_NAT, IPTABLES_NAT, NFT_RULESET, forwarded

PROFILE = ROOT / "tests" / "fixtures" / "forwards" / "port-forwards-ipv6.yaml"
V4_PROFILE = ROOT / "tests" / "fixtures" / "forwards" / "port-forwards.yaml"
runner = CliRunner()
SSH6 = '{proto: tcp, port: 2222, to: "[2001:db8:ca2:2::150]:22"}'


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    return forwards_variant(tmp_path, old, new, source=PROFILE)


def test_the_example_is_valid_and_one_port_serves_both_families():
    result = runner.invoke(app, ["validate", str(PROFILE)])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output


@pytest.mark.parametrize("old, new, message", [
    (SSH6, SSH6.replace("2001:db8:ca2:2::150", "2001:db8:ca2:3::150"),
     "2001:db8:ca2:3::150 is not a guest address of the network's subnet 2001:db8:ca2:2::/64"),
    (SSH6, SSH6.replace("2001:db8:ca2:2::150", "2001:db8:ca2:2::1"), "is the host's own address on the network"),
    (SSH6, SSH6.replace("2001:db8:ca2:2::150", "2001:db8:ca2:2::"), "2001:db8:ca2:2:: is not a guest address"),
    (SSH6, SSH6.replace('"[2001:db8:ca2:2::150]:22"', '"2001:db8:ca2:2::150:22"'), "IPv6 address in brackets"),
    (SSH6, SSH6.replace("]:22", "]:65536"), "is not ADDRESS:PORT"),
    ("{proto: tcp, port: 8080, to: 192.168.171.10:80}", '{proto: tcp, port: 8080, to: "[2001:db8:ca2:2::150]:80"}',
     "2001:db8:ca2:2::150 is IPv6 and the network has no IPv6 address"),
    ("{proto: udp, port: 5353,", "{proto: tcp, port: 2222,", "tcp port 2222 of host caldera02 is forwarded twice "
     "over IPv6 (also by network dual)"),
    ("to: 192.168.170.91:22}", "to: 192.168.171.91:22}", "192.168.171.91 is not a guest address of the network's "
     "subnet 192.168.170.0/24"),
])
def test_bad_forwards_are_located_errors(tmp_path, old, new, message):
    path = _variant(tmp_path, old, new)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    found = re.search(rf"{re.escape(str(path))}:(\d+):\d+: error: .*{re.escape(message)}", result.output)
    assert found, result.output
    line = path.read_text().splitlines()[int(found.group(1)) - 1]
    assert "proto" in line, line   # the forward it is about


def test_the_same_port_twice_over_ipv6_across_networks_is_an_error(tmp_path):
    text = PROFILE.read_text().replace(
        "    ip: 192.168.171.1/24\n", "    ips:\n      - address: 192.168.171.1/24\n      - address: fd00:171::1/64\n")
    text = text.replace("{proto: tcp, port: 8080, to: 192.168.171.10:80}", '{proto: udp, port: 5353, to: "[fd00:171::10]:53"}')
    path = tmp_path / "p.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "udp port 5353 of host caldera02 is forwarded twice over IPv6" in result.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle6") / "b"
    result = runner.invoke(app, ["build", str(PROFILE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "caldera02"


def test_the_hook_adds_both_families(bundle):
    hook = (bundle / "hooks" / "network").read_text()
    assert _case(hook, "started", "dual") == [
        "vnetgen_forward add dual virbr12 tcp 2222 192.168.170.91 22",
        "vnetgen_forward6 add dual virbr12 tcp 2222 2001:db8:ca2:2::150 22",
        "vnetgen_forward6 add dual virbr12 udp 5353 2001:db8:ca2:2::150 53"]
    assert _case(hook, "stopped", "dual")[1] == "vnetgen_forward6 del dual virbr12 tcp 2222 2001:db8:ca2:2::150 22"
    assert _case(hook, "vnetgen-forwards-gone", "dual")[2] == \
        "vnetgen_forward6 gone dual virbr12 udp 5353 2001:db8:ca2:2::150 53 || exit 1"
    assert hook.count("\nvnetgen_forward6() {") == 1 and "nft insert rule ip6 libvirt_network guest_input" in hook
    assert '--to-destination "[$addr]:$to"' in hook


def test_a_hook_of_ipv4_forwards_is_as_it_was(tmp_path):
    out = tmp_path / "b"
    assert runner.invoke(app, ["build", str(V4_PROFILE), "-o", str(out)]).exit_code == 0
    assert "forward6" not in (out / "caldera02" / "hooks" / "network").read_text()
    assert IP6TABLES_NAT not in (out / "caldera02" / "capture.sh").read_text()


def test_capture_review_and_verify(bundle):
    capture = (bundle / "capture.sh").read_text()
    assert "ip6tables -w -t nat -S" in capture and '"$OUT/ip6tables-nat.txt"' in capture
    review = (bundle.parent / "REVIEW.md").read_text()
    assert "tcp 2222 -> 192.168.170.91:22; tcp 2222 -> [2001:db8:ca2:2::150]:22; udp 5353 -> [2001:db8:ca2:2::150]:53" \
        in review
    runbook = (bundle / "runbook.sh").read_text()
    assert "tcp port 2222 of the host is forwarded to [2001:db8:ca2:2::150]:22" in runbook


IP6TABLES = """-P PREROUTING ACCEPT
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 2222 -m comment --comment "vnetgen forward6 dual tcp/2222" -j DNAT --to-destination [2001:db8:ca2:2::150]:22
"""
NFT = """table ip vnetgen_forwards {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local tcp dport 2222 counter packets 0 bytes 0 dnat to 192.168.170.91:22 comment "vnetgen forward dual tcp/2222"
	}
}
table ip6 vnetgen_forwards {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local udp dport 5353 counter packets 0 bytes 0 dnat to [2001:db8:ca2:2::150]:53 comment "vnetgen forward6 dual udp/5353"
	}
}
"""


@pytest.mark.parametrize("text, source, args, found", [
    (IP6TABLES, IP6TABLES_NAT, ("tcp", 2222, "2001:db8:ca2:2::150", 22), True),
    (IP6TABLES.replace("[2001:db8:ca2:2::150]", "[2001:DB8:CA2:2:0::150]"), IP6TABLES_NAT,
     ("tcp", 2222, "2001:db8:ca2:2::150", 22), True),   # compared by meaning
    (IP6TABLES, IP6TABLES_NAT, ("tcp", 2222, "2001:db8:ca2:2::151", 22), False),
    (IP6TABLES, IP6TABLES_NAT, ("udp", 2222, "2001:db8:ca2:2::150", 22), False),
    (IP6TABLES, IPTABLES_NAT, ("tcp", 2222, "192.168.170.91", 22), False),
    (NFT, NFT_RULESET, ("udp", 5353, "2001:db8:ca2:2::150", 53), True),
    (NFT, NFT_RULESET, ("tcp", 2222, "192.168.170.91", 22), True),
    (NFT, NFT_RULESET, ("tcp", 2222, "2001:db8:ca2:2::150", 22), False),
    (NFT.replace("table ip6 vnetgen_forwards", "table ip vnetgen_forwards2"), NFT_RULESET,
     ("udp", 5353, "2001:db8:ca2:2::150", 53), False),   # an IPv6 DNAT in an ip table is no rule of nft's
    ("junk\n-A PREROUTING\n", IP6TABLES_NAT, ("tcp", 2222, "2001:db8:ca2:2::150", 22), False),
])
def test_the_audit_reads_both_firewalls(text, source, args, found):
    assert forwarded(text, source, *args) is found


@pytest.mark.realtool
def test_the_audit_reads_ip6tables_nat(tmp_path, bundle):
    """The bundle's networks as libvirt's test driver runs them, captured with the forwards' files: an IPv6
    forward missing from ip6tables-nat.txt is drift; present, in sync; not captured, not audited."""
    from test_profile_grows import SEPARATOR, _virsh_session
    from vnetgen.audit import audit_captures

    host = tmp_path / "captures" / "caldera02"
    (host / "net").mkdir(parents=True)
    commands = []
    for name in ("dual", "web"):
        commands += [f"net-define {bundle / 'networks' / name}.xml", f"net-start {name}", f"net-autostart {name}",
                     f"echo {SEPARATOR}", f"net-dumpxml {name}"]
    parts = [part.lstrip("\n") for part in _virsh_session("; ".join(commands + [f"echo {SEPARATOR}", "net-list --all"]))
             .split(SEPARATOR)]
    for name, xml in zip(("dual", "web"), parts[1:3]):
        (host / "net" / f"{name}.xml").write_text(xml)
    (host / "virsh-net-list.txt").write_text(" Name   State    Autostart   Persistent\n------------------------------------\n"
                                             + "".join(line + "\n" for line in parts[3].splitlines()
                                                       if line.split()[:1] != ["default"]))
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n")
    v4 = ("-A PREROUTING -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.168.170.91:22\n"
          "-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.171.10:80\n")
    (host / IPTABLES_NAT).write_text(v4)

    def forwards_drift():
        report = audit_captures(str(PROFILE), tmp_path / "captures")
        host_report = report["hosts"]["caldera02"]
        return ([d["expected"] for d in host_report["drift"] if d["kind"] == "port-forward"],
                [line for line in host_report["not_audited"] if "port forward" in line])

    assert forwards_drift() == ([], ["network/dual: port forward tcp 2222 -> [2001:db8:ca2:2::150]:22: neither "
                                     "ip6tables-nat.txt nor nft-ruleset.txt was captured",
                                     "network/dual: port forward udp 5353 -> [2001:db8:ca2:2::150]:53: neither "
                                     "ip6tables-nat.txt nor nft-ruleset.txt was captured"])
    (host / IP6TABLES_NAT).write_text(IP6TABLES)
    assert forwards_drift() == (["udp 5353 -> [2001:db8:ca2:2::150]:53"], [])
    (host / IP6TABLES_NAT).write_text(IP6TABLES + IP6TABLES.splitlines()[1].replace("tcp", "udp").replace(
        "2222", "5353").replace("]:22", "]:53") + "\n")
    assert forwards_drift() == ([], [])


@pytest.mark.realtool
def test_hook_runbook_and_rollback_are_shellcheck_clean(bundle):
    shellcheck_clean(bundle)


# --- the rules themselves: the bundle's hook in a private network namespace -----------------------------

IPV6_FORWARDS = [("tcp", 2222, "2001:db8:ca2:2::150", 22), ("udp", 5353, "2001:db8:ca2:2::150", 53)]


@pytest.mark.lab
@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_the_hooks_ipv6_rules_for_real(lab, bundle, backend):
    """With the real ip6tables and nft (nftables: libvirt's tables stood in for by empty ones of its names):
    the hook's add makes rules its check finds and the audit's parser reads from the capture command's
    output, a second add changes nothing, del leaves none, and gone then holds."""
    from vnetgen.lab import in_private_netns

    node = lab.router("fw6")
    assert in_private_netns(node.pid)
    node.assert_private()
    node.ip("link", "add", "virbr12", "type", "bridge")
    if backend == "nftables":   # what libvirt's nftables backend has: the hook then writes nftables rules
        for family in ("ip", "ip6"):
            node.run(f"nft add table {family} libvirt_network && nft add chain {family} libvirt_network guest_input "
                     "'{ type filter hook forward priority 0; policy accept; }'")
    hook = str(bundle / "hooks" / "network")

    def run(operation: str) -> subprocess.CompletedProcess:
        return node.run(["bash", hook, "dual", operation], check=False, timeout=30)

    def rules() -> str:
        if backend == "iptables":
            return node.run("ip6tables -w -t nat -S; ip6tables -w -S FORWARD").stdout
        return node.run("nft list ruleset").stdout

    source = IP6TABLES_NAT if backend == "iptables" else NFT_RULESET
    assert run("vnetgen-forwards-check").returncode != 0
    added = run("vnetgen-forwards-add")
    assert added.returncode == 0, added.stderr
    assert run("vnetgen-forwards-check").returncode == 0
    text = rules()
    for item in IPV6_FORWARDS:
        assert forwarded(text, source, *item), text
    assert 'comment "vnetgen forward6 dual tcp/2222"' in text.replace("--comment ", "comment ")
    assert run("vnetgen-forwards-add").returncode == 0 and rules() == text   # a second add changes nothing
    if backend == "iptables":
        assert "-A FORWARD -d 2001:db8:ca2:2::150/128 -o virbr12 -p tcp" in text
    else:
        assert "ip6 daddr 2001:db8:ca2:2::150 tcp dport 22 ct status dnat" in text
    assert run("vnetgen-forwards-gone").returncode != 0
    deleted = run("vnetgen-forwards-del")
    assert deleted.returncode == 0, deleted.stderr
    assert run("vnetgen-forwards-gone").returncode == 0
    assert "vnetgen forward" not in rules()

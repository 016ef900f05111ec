"""IPv6 in `vnetgen diff` and `build --against` (issue 14): a DHCPv6 static host added or removed applies live
(`virsh net-update … ip-dhcp-host --parent-index N`), anything else of the IPv6 `<ip>` restarts the network;
what diff says and what the runbook does agree, proven on libvirt's test driver with the exact commands the
runbook runs; the runbook's definition tokens hold on what libvirt prints of a dual-stack network."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from test_profile_grows import _variant as grows_variant
from vnetgen.cli import app

IPV6 = ROOT / "tests" / "fixtures" / "grow" / "ipv6.yaml"
runner = CliRunner()
SEPARATOR = "=====vnetgen====="

VM2 = '            - {name: vm2, ip: "fd00:160::51"}\n'
VM3 = '            - {id: "00:03:00:01:52:54:00:16:00:07", name: vm3, ip: "fd00:160::52"}\n'
RANGE = "end: fd00:160::1ff"

# (edits of ipv6.yaml, the changes of network dual diff reports: (what, impact))
CASES = {
    "host-swapped": (((VM2, VM3),), [
        ("DHCPv6 static host added: <host id='00:03:00:01:52:54:00:16:00:07' name='vm3' ip='fd00:160::52'/>", "live"),
        ("DHCPv6 static host removed: <host name='vm2' ip='fd00:160::51'/>", "live")]),
    "host-added": (((VM2, VM2 + VM3),), [
        ("DHCPv6 static host added: <host id='00:03:00:01:52:54:00:16:00:07' name='vm3' ip='fd00:160::52'/>", "live")]),
    "host-and-range": (((VM2, VM3), (RANGE, "end: fd00:160::2ff")), [
        ("ipv6: IPv6 fd00:160::1/64, DHCPv6 fd00:160::100-fd00:160::1ff → IPv6 fd00:160::1/64, DHCPv6 "
         "fd00:160::100-fd00:160::2ff", "restart"),
        ("DHCPv6 static host added: <host id='00:03:00:01:52:54:00:16:00:07' name='vm3' ip='fd00:160::52'/>", "restart"),
        ("DHCPv6 static host removed: <host name='vm2' ip='fd00:160::51'/>", "restart")]),
    "address": ((("fd00:160::1/64", "fd00:160::2/64"),), [
        ("ipv6: IPv6 fd00:160::1/64, DHCPv6 fd00:160::100-fd00:160::1ff → IPv6 fd00:160::2/64, DHCPv6 "
         "fd00:160::100-fd00:160::1ff", "restart")]),
    "with-ipv4-lease": (((VM2, VM3), ("{mac: \"52:54:00:16:00:05\", name: vm1, ip: 192.168.160.5}",
                                      "{mac: \"52:54:00:16:00:05\", name: vm1, ip: 192.168.160.6}")), [
        ("static lease added: <host mac='52:54:00:16:00:05' name='vm1' ip='192.168.160.6'/>", "live"),
        ("static lease removed: <host mac='52:54:00:16:00:05' name='vm1' ip='192.168.160.5'/>", "live"),
        ("DHCPv6 static host added: <host id='00:03:00:01:52:54:00:16:00:07' name='vm3' ip='fd00:160::52'/>", "live"),
        ("DHCPv6 static host removed: <host name='vm2' ip='fd00:160::51'/>", "live")]),
    "dhcp6-dropped": ((("        dhcp:\n          start: fd00:160::100\n          end: fd00:160::1ff\n          hosts:\n"
                        "            - {id: \"00:03:00:01:52:54:00:16:00:05\", name: vm1, ip: \"fd00:160::50\"}\n" + VM2,
                        ""),), [
        ("ipv6: IPv6 fd00:160::1/64, DHCPv6 fd00:160::100-fd00:160::1ff → IPv6 fd00:160::1/64", "restart")]),
}


def _variant(tmp_path: Path, edits) -> Path:
    return grows_variant(tmp_path, *edits, source=IPV6)


def _load(path, pm):
    from vnetgen.profile import load_valid

    return load_valid(str(path), pm)[0]


def _plans(path, pm, previous=None):
    from vnetgen.plan import plan_profile

    return plan_profile(_load(path, pm), pm, previous=previous)


@pytest.mark.parametrize("case", sorted(CASES))
def test_diff_says_which_ipv6_changes_apply_live(tmp_path, pm, case):
    from vnetgen.diff import diff_plans

    edits, expected = CASES[case]
    new = _variant(tmp_path, edits)
    found = [(c.what, c.impact) for c in diff_plans(_plans(IPV6, pm), _plans(new, pm)) if c.object == "network dual"]
    assert found == expected
    result = runner.invoke(app, ["diff", str(IPV6), str(new)])
    assert result.exit_code == 0, result.output
    for what, impact in expected:
        assert what in result.output


def _live_commands(plan) -> list:
    """The runbook's live updates of network dual: (helper, argv) of each action, as the runbook runs them."""
    step = next(s for s in plan.steps if s.title.startswith("network dual"))
    return [shlex.split(c) for a in step.actions for c in a.commands if c.startswith("net_update ")]


def _as_virsh(words: list) -> str:
    """What the runbook's net_update helper runs for one call, on a running persistent network."""
    helper, name, verb, section, xml, *index = words
    flags = ["--config"] + (["--parent-index", index[0]] if index else []) + ["--live"]
    return " ".join(shlex.quote(w) for w in ["net-update", name, verb, section, xml, *flags])


def _matches(xml: str, tokens) -> bool:
    """The runbook's net_xml_match (has:/lacks:/count: on net-dumpxml, lines stripped of leading blanks)."""
    text = "\n".join(line.lstrip() for line in xml.splitlines())
    for token in tokens:
        verb, _, rest = token.partition(":")
        if verb == "count":
            count, _, pattern = rest.partition(":")
            if text.count(pattern) != int(count):
                return False
        elif (rest in text) != (verb == "has"):
            return False
    return True


def _session(commands) -> list:
    require_tool("virsh")
    result = subprocess.run(["virsh", "-q", "-c", "test:///default", "; ".join(commands)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [part.lstrip("\n") for part in result.stdout.split(SEPARATOR)]


@pytest.mark.realtool
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_runbook_does_what_diff_says_on_libvirts_test_driver(tmp_path, pm, case):
    """Live in diff ⇔ the runbook updates the running network with net-update, and after the exact commands
    it runs the new definition's every token holds on the live XML (so its restart check passes: no
    restart); a restart in diff ⇔ no net-update at all."""
    from vnetgen.checks import definition_tokens
    from vnetgen.diff import RESTART, diff_plans

    edits, _ = CASES[case]
    new = _variant(tmp_path, edits)
    old_plans = _plans(IPV6, pm)
    new_plan = _plans(new, pm, previous=old_plans)[0]
    commands = _live_commands(new_plan)
    restart = any(c.impact == RESTART for c in diff_plans(old_plans, [new_plan]) if c.object == "network dual")
    assert (commands == []) == restart, commands
    if restart:
        return
    old_xml = tmp_path / "old.xml"
    old_xml.write_text(old_plans[0].networks["dual"].xml)
    tokens = definition_tokens(new_plan.checks, "dual")
    before, after = _session([f"net-define {old_xml}", "net-start dual", f"echo {SEPARATOR}", "net-dumpxml dual",
                              f"echo {SEPARATOR}", *(_as_virsh(c) for c in commands), f"echo {SEPARATOR}",
                              "net-dumpxml dual"])[1::2]
    assert not _matches(before, tokens) and _matches(after, tokens), after
    assert any(c[3] == "ip-dhcp-host" and len(c) == 6 and c[-1] == "1" for c in commands)   # the IPv6 <ip>: the second


@pytest.mark.realtool
def test_runbook_tokens_hold_on_a_dual_stack_network(tmp_path, pm):
    """Every network's definition tokens hold on libvirt's net-dumpxml of the bundle's own XML (a DHCPv6 host
    without a DUID prints as `<host name=`, like an IPv4 lease without a MAC: one count covers both)."""
    from vnetgen.checks import definition_tokens

    plan = _plans(IPV6, pm)[0]
    commands = []
    for name, net in plan.networks.items():
        path = tmp_path / f"{name}.xml"
        path.write_text(net.xml)
        commands += [f"net-define {path}", f"echo {SEPARATOR}", f"net-dumpxml {name}"]
    dumped = _session(commands)[1:]
    for (name, _), xml in zip(plan.networks.items(), dumped):
        assert _matches(xml, definition_tokens(plan.checks, name)), (name, xml)
    # and a DHCPv6 host the definition lacks is noticed
    dual = dumped[list(plan.networks).index("dual")]
    assert not _matches(dual.replace("<host name='vm2' ip='fd00:160::51'/>", ""), definition_tokens(plan.checks, "dual"))


def test_runbook_updates_dhcpv6_hosts_in_the_ipv6_ip_and_reads_the_network_again(tmp_path, pm):
    """The runbook's one net_update helper, with the IPv6 <ip>'s index: it passes --parent-index to virsh,
    and after it the cached state of the network is stale (net_effect), so what follows reads libvirt again."""
    from vnetgen.bundle import build

    new = _variant(tmp_path, CASES["host-swapped"][0])
    against = build(_load(new, pm), pm, "new.yaml", against=_load(IPV6, pm)).files["kvm1/runbook.sh"].text
    add = ("net_update dual add ip-dhcp-host \"<host id='00:03:00:01:52:54:00:16:00:07' name='vm3' "
           "ip='fd00:160::52'/>\" 1")
    assert "run " + add in against
    assert "run net_update dual delete ip-dhcp-host \"<host name='vm2' ip='fd00:160::51'/>\" 1" in against
    assert subprocess.run(["bash", "-n"], input=against, text=True).returncode == 0
    # the two helpers alone (never the runbook itself: it would run), virsh and net-info stood in for
    helpers = "".join(re.search(rf"^{name}\(\) \{{.*?^\}}\n", against, re.S | re.M).group(0)
                      for name in ("net_update", "net_effect"))
    script = ("set -euo pipefail\ndeclare -A NET_INFO=() NET_STALE=()\n" + helpers +
              "virsh() { printf 'virsh'; printf ' %s' \"$@\"; printf '\\n'; }\nnet_info_is() { return 0; }\n"
              "NET_CACHED=1; NET_INFO[dual]=x\n" + add + "\nnet_effect " + add + "\necho stale=${NET_STALE[dual]:-no}\n")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert ("virsh net-update dual add ip-dhcp-host <host id='00:03:00:01:52:54:00:16:00:07' name='vm3' "
            "ip='fd00:160::52'/> --config --parent-index 1 --live") in out.stdout, out.stdout + out.stderr
    assert "stale=1" in out.stdout, out.stdout + out.stderr

"""Port forwards into NAT guests (issue 14): validation with located errors, the hook's text (every value
literal and quoted, one case per libvirt operation), the runbook's and rollback's calls, the audit's
reading of `iptables -t nat -S` and `nft list ruleset`."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app
from vnetgen_plugins.forwards import IPTABLES_NAT, NFT_RULESET, forwarded

PROFILE = ROOT / "tests" / "fixtures" / "forwards" / "port-forwards.yaml"
runner = CliRunner()


def _variant(tmp_path: Path, old: str, new: str, source: Path = PROFILE) -> Path:
    text = source.read_text()
    assert text.count(old) == 1, old
    out = tmp_path / "profile.yaml"
    out.write_text(text.replace(old, new))
    return out


def test_the_example_is_valid():
    result = runner.invoke(app, ["validate", str(PROFILE)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("old, new, message", [
    ("to: 192.168.122.91:22}", "to: 192.168.123.91:22}", "192.168.123.91 is not a guest address of the network's subnet 192.168.122.0/24"),
    ("to: 192.168.122.91:22}", "to: 192.168.122.255:22}", "192.168.122.255 is not a guest address"),
    ("to: 192.168.122.91:22}", "to: 192.168.122.1:22}", "is the host's own address on the network"),
    ("to: 192.168.122.91:22}", "to: 192.168.122.91:70000}", "is not ADDRESS:PORT"),
    ("{proto: tcp, port: 2222,", "{proto: tcp, port: 65536,", "65536"),
    ("{proto: tcp, port: 2222,", "{proto: tcp, port: 0,", "port"),
    ("{proto: tcp, port: 8080,", "{proto: tcp, port: 2222,", "tcp port 2222 of host caldera02 is forwarded twice (also by network default)"),
    ("    mode: nat\n    bridge: virbr11", "    mode: route\n    bridge: virbr11", "'forwards' does not apply to mode route (only to mode nat)"),
    ("{proto: tcp, port: 2222,", "{proto: sctp, port: 2222,", "proto"),
])
def test_bad_forwards_are_located_errors(tmp_path, old, new, message):
    path = _variant(tmp_path, old, new)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = path.read_text().splitlines()
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: error: .*{re.escape(message)}", result.output), result.output
    where = int(re.search(rf"{re.escape(str(path))}:(\d+):\d+: error: .*{re.escape(message)}", result.output).group(1))
    # the error points at the forward (or the key) it is about, not at the network
    assert "forward" in line[where - 1] or "proto" in line[where - 1] or "to:" in line[where - 1], line[where - 1]


@pytest.mark.parametrize("to", ["5", '"192.168.122.91"', '"fd00::5:22"'])
def test_a_to_of_the_wrong_shape_is_one_error_at_its_key(tmp_path, to):
    """The schema says it (with the spelling it wants); the plugin's own check does not repeat it."""
    path = _variant(tmp_path, "to: 192.168.122.91:22}", f"to: {to}}}")
    result = runner.invoke(app, ["validate", str(path)])
    errors = [line for line in result.output.splitlines() if ": error: " in line]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert re.search(r"profile\.yaml:18:38: error: networks\.default\.forwards\[0\]\.to: invalid value", errors[0])


def test_same_port_other_proto_is_fine(tmp_path):
    path = _variant(tmp_path, "{proto: udp, port: 5353,", "{proto: udp, port: 2222,")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    result = runner.invoke(app, ["build", str(PROFILE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "caldera02"


def _case(hook: str, operation: str, network: str) -> list:
    block = re.search(rf'if \[ "\$\{{2:-\}}" = {operation} \]; then\n  case "\$\{{1:-\}}" in\n(.*?)\n  esac', hook, re.S)
    assert block, operation
    lines = block.group(1).splitlines()
    start = lines.index(f"    {network})")
    return [line.strip() for line in lines[start + 1:lines.index("      ;;", start)]]


def test_the_hook_adds_on_start_and_reconnect_and_removes_on_stop(bundle):
    hook = (bundle / "hooks" / "network").read_text()
    add = ["vnetgen_forward add default virbr10 tcp 2222 192.168.122.91 22",
           "vnetgen_forward add default virbr10 udp 5353 192.168.122.91 53"]
    assert _case(hook, "started", "default") == add
    assert _case(hook, "reconnect", "default") == add
    assert _case(hook, "vnetgen-forwards-add", "default") == add
    assert _case(hook, "stopped", "web") == ["vnetgen_forward del web virbr11 tcp 8080 192.168.150.10 80"]
    assert _case(hook, "vnetgen-forwards-check", "web") == ["vnetgen_forward check web virbr11 tcp 8080 192.168.150.10 80 || exit 1"]
    # both backends, chosen by what libvirt did; the host's own hook still chained for libvirt's operations
    assert "nft list table ip libvirt_network" in hook and "iptables -w -t" in hook
    assert hook.rstrip().endswith('if [ -x "$chained" ]; then exec "$chained" "$@"; fi')
    assert 'case "${2:-}" in vnetgen-*) exit 0 ;; esac' in hook


def test_hostile_names_stay_quoted_in_the_hook(tmp_path):
    # a network name with shell metacharacters cannot pass the schema; the quoting is still cmd's
    path = _variant(tmp_path, "  web:\n", "  'web;reboot':\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_runbook_applies_to_a_running_network_and_rollback_removes(bundle):
    runbook = (bundle / "runbook.sh").read_text()
    rollback = (bundle / "rollback.sh").read_text()
    assert 'if ! net_info_is default Active yes || "$HERE/hooks/network" default vnetgen-forwards-check' in runbook
    assert 'run "$HERE/hooks/network" default vnetgen-forwards-add' in runbook
    assert 'run "$HERE/hooks/network" web vnetgen-forwards-del' in rollback
    # rules go before the hook is restored (undo runs in reverse order)
    assert rollback.index("vnetgen-forwards-del") < rollback.index('run restore_file "$ROOT/etc/libvirt/hooks/network"')
    review = (bundle.parent / "REVIEW.md").read_text()
    assert "tcp 2222 -> 192.168.122.91:22; udp 5353 -> 192.168.122.91:53" in review
    assert "tcp 8080 -> 192.168.150.10:80" in review


def test_the_hook_is_valid_bash(bundle):
    assert subprocess.run(["bash", "-n", str(bundle / "hooks" / "network")]).returncode == 0


IPTABLES = """-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N LIBVIRT_PRT
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 2222 -m comment --comment "vnetgen forward default tcp/2222" -j DNAT --to-destination 192.168.122.91:22
-A POSTROUTING -j LIBVIRT_PRT
"""
NFT = """table ip vnetgen_forwards {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local tcp dport 2222 counter packets 0 bytes 0 dnat to 192.168.122.91:22 comment "vnetgen forward default tcp/2222"
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local udp dport 5353 counter packets 0 bytes 0 dnat to 192.168.122.91:53
	}
}
"""


@pytest.mark.parametrize("text, source, args, found", [
    (IPTABLES, IPTABLES_NAT, ("tcp", 2222, "192.168.122.91", 22), True),
    (IPTABLES, IPTABLES_NAT, ("tcp", 2222, "192.168.122.91", 2222), False),
    (IPTABLES, IPTABLES_NAT, ("udp", 2222, "192.168.122.91", 22), False),
    (IPTABLES.replace("-A PREROUTING", "-A OUTPUT"), IPTABLES_NAT, ("tcp", 2222, "192.168.122.91", 22), False),
    (NFT, NFT_RULESET, ("tcp", 2222, "192.168.122.91", 22), True),
    (NFT, NFT_RULESET, ("tcp", 222, "192.168.122.91", 22), False),
    (NFT, NFT_RULESET, ("udp", 5353, "192.168.122.91", 53), False),   # only in output: not a forward from outside
    ("junk\n-A PREROUTING\n", IPTABLES_NAT, ("tcp", 2222, "192.168.122.91", 22), False),
])
def test_the_audit_reads_both_firewalls(text, source, args, found):
    assert forwarded(text, source, *args) is found


def shellcheck_clean(bundle: Path) -> None:
    from conftest import require_tool

    require_tool("shellcheck")
    paths = [str(bundle / name) for name in ("hooks/network", "runbook.sh", "rollback.sh", "capture.sh")]
    result = subprocess.run(["shellcheck", "-S", "style", *paths], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout


@pytest.mark.realtool
def test_hook_runbook_and_rollback_are_shellcheck_clean(bundle):
    shellcheck_clean(bundle)


def test_the_hook_functions_fill_each_word_as_a_pattern_would():
    """FUNCTIONS and FUNCTIONS6 fill FAMILY's @WORD@s by str.replace: the text re.sub of the pattern
    @[A-Z]+@ gives, and none left."""
    from vnetgen_plugins import forwards

    assert forwards.FUNCTIONS.startswith(forwards.BACKEND)
    for version, text in ((4, forwards.FUNCTIONS[len(forwards.BACKEND):]), (6, forwards.FUNCTIONS6)):
        expected = {4: {"@F@": "", "@IPT@": "iptables", "@NFT@": "ip", "@HOST@": "32", "@DNAT@": "$addr:$to",
                        "@WHAT@": "one port forward"},
                    6: {"@F@": "6", "@IPT@": "ip6tables", "@NFT@": "ip6", "@HOST@": "128", "@DNAT@": "[$addr]:$to",
                        "@WHAT@": "one IPv6 port forward"}}[version]
        assert text == re.sub("@[A-Z]+@", lambda m: expected[m.group(0)], forwards.FAMILY)
        assert not re.search("@[A-Z]+@", text)

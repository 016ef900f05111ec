"""Port forwards into NAT guests (`forwards: [{proto: tcp, port: 2222, to: 192.168.122.91:22}]`):
DNAT rules the bundle's libvirt network hook adds when libvirt starts the network and removes when
it stops it, in the firewall libvirt itself uses (iptables, or its nftables backend of libvirt 10.4+).

How the hook finds the backend: it looks at what libvirt did, not at its configuration — libvirt's
nftables backend keeps its rules in the table `ip libvirt_network`; when that table exists the hook
writes nftables rules, else iptables ones (which, with iptables-nft, land in nftables' `ip nat` and
`ip filter` tables, where libvirt's iptables backend has its own). A hook must not call virsh (libvirtd
waits for the hook), so the firewall plugin's `virsh version` test is not available there. Removal
looks in both.

IPv6 (`to: "[2001:db8:ca2:2::150]:22"`, the address in brackets as in a URL, RFC 3986): on a nat network
with an IPv6 address (`ips:`), the same rules in the other family — ip6tables (nat PREROUTING/OUTPUT DNAT,
filter FORWARD accept) or nftables' `ip6 vnetgen_forwards` and libvirt's `ip6 libvirt_network` — tagged
"vnetgen forward6 NETWORK PROTO/PORT". libvirt does not NAT IPv6 on a nat network (only with `<nat
ipv6='yes'>`, libvirt 6.5+): it routes the network's IPv6 prefix; a DNAT of one of the host's own IPv6
addresses to a guest's works on a routed prefix all the same, and the guest answers through the host, its
IPv6 router. A host port is one socket per family: tcp 2222 may go to one guest over IPv4 and to another
(or the same) over IPv6. The IPv6 functions are a block of their own, in a hook only when a forward needs
them: a hook of IPv4 forwards is as it was.

iptables (libvirt's wiki, "Forwarding Incoming Connections"): DNAT in nat PREROUTING and OUTPUT (the
host itself), for the host's own addresses only (`addrtype LOCAL`, so guests' traffic to other
hosts' port is untouched), and an ACCEPT of the DNATed connection inserted first in FORWARD, before
the jumps to libvirt's reject rules. nftables: libvirt's own table rejects in its `guest_input` chain
whatever is not an answer, and a reject in one table is final whatever another table accepts: so the
DNAT goes in vnetgen's own table `ip vnetgen_forwards`, and the ACCEPT of DNATed connections (`ct
status dnat`) is inserted into libvirt's `guest_input` chain (libvirt rebuilds that table when it
restarts: the hook's `reconnect` puts it back). Every rule carries the comment
"vnetgen forward NETWORK PROTO/PORT", which finds it again.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Dict, List, Optional, Tuple, Union

from vnetgen.api import PORTS, Action, CaptureFile, Check, CheckKind, HookCase, Step, cmd, here, hookimpl

IPTABLES_NAT = "iptables-nat.txt"
IP6TABLES_NAT = "ip6tables-nat.txt"
NFT_RULESET = "nft-ruleset.txt"
HOOK = "hooks/network"
MODES = ("nat",)   # where libvirt masquerades: the guests' addresses are private to the host

CAPTURES = [
    CaptureFile(IPTABLES_NAT, ("iptables", "-w", "-t", "nat", "-S"), "the iptables nat table (port forwards "
                "of the iptables backend)", required=False, since=5, owner="forwards"),
    CaptureFile(NFT_RULESET, ("nft", "list", "ruleset"), "the nftables ruleset (port forwards of libvirt's "
                "nftables backend)", required=False, since=5, owner="forwards"),
]
# Only a host with an IPv6 forward records it: optional, of the layout its siblings came with (no capture
# could hold an IPv6 forward before, so no layout number needs to tell its absence apart).
CAPTURE6 = CaptureFile(IP6TABLES_NAT, ("ip6tables", "-w", "-t", "nat", "-S"), "the ip6tables nat table (IPv6 "
                       "port forwards of the iptables backend)", required=False, since=5, owner="forwards")

BACKEND = r"""
forward_backend() {  # forward_backend: nftables when libvirt's nftables backend has its table, else iptables
  if command -v nft >/dev/null 2>&1 && nft list table ip libvirt_network >/dev/null 2>&1; then
    echo nftables
  else
    echo iptables
  fi
}
"""

# The functions of one address family, written once: @F@ is "" or "6" (function names and the rules'
# comment tag), @IPT@ iptables or ip6tables, @NFT@ nftables' family (ip, ip6), @HOST@ a host prefix
# length, @DNAT@ the DNAT target (an IPv6 address in brackets), @WHAT@ what the entry point handles.
FAMILY = r"""
forward@F@_rule() {  # forward@F@_rule add|del|check TABLE CHAIN RULE...: one @IPT@ rule, idempotently
  local act=$1 table=$2 chain=$3
  shift 3
  case "$act" in
    add) @IPT@ -w -t "$table" -C "$chain" "$@" 2>/dev/null || @IPT@ -w -t "$table" -I "$chain" 1 "$@" ;;
    del) while @IPT@ -w -t "$table" -C "$chain" "$@" 2>/dev/null; do @IPT@ -w -t "$table" -D "$chain" "$@"; done ;;
    *) @IPT@ -w -t "$table" -C "$chain" "$@" 2>/dev/null ;;
  esac
}

forward@F@_iptables() {  # forward@F@_iptables add|del|check NETWORK BRIDGE PROTO PORT ADDRESS TO-PORT
  local act=$1 bridge=$3 proto=$4 port=$5 addr=$6 to=$7 tag="vnetgen forward@F@ $2 $4/$5" chain
  for chain in PREROUTING OUTPUT; do
    forward@F@_rule "$act" nat "$chain" -p "$proto" -m addrtype --dst-type LOCAL -m "$proto" --dport "$port" \
      -m comment --comment "$tag" -j DNAT --to-destination "@DNAT@" || return 1
  done
  forward@F@_rule "$act" filter FORWARD -o "$bridge" -d "$addr/@HOST@" -p "$proto" -m "$proto" --dport "$to" \
    -m conntrack --ctstate DNAT -m comment --comment "$tag" -j ACCEPT
}

forward@F@_nft_has() {  # forward@F@_nft_has TABLE CHAIN TAG: a rule of `@NFT@ TABLE` CHAIN has the comment TAG
  local rules
  rules=$(nft list chain @NFT@ "$1" "$2" 2>/dev/null) || return 1
  grep -qF "comment \"$3\"" <<<"$rules"
}

forward@F@_nft_del() {  # forward@F@_nft_del TABLE CHAIN TAG: delete the rules of `@NFT@ TABLE` CHAIN commented TAG
  local handle
  for handle in $(nft -a list chain @NFT@ "$1" "$2" 2>/dev/null | grep -F "comment \"$3\"" \
      | sed -n 's/.* # handle \([0-9][0-9]*\)$/\1/p'); do
    nft delete rule @NFT@ "$1" "$2" handle "$handle"
  done
}

forward@F@_nftables() {  # forward@F@_nftables add|del|check NETWORK BRIDGE PROTO PORT ADDRESS TO-PORT
  local act=$1 bridge=$3 proto=$4 port=$5 addr=$6 to=$7 tag="vnetgen forward@F@ $2 $4/$5" chain
  case "$act" in
    add)
      nft add table @NFT@ vnetgen_forwards
      nft add chain @NFT@ vnetgen_forwards prerouting '{ type nat hook prerouting priority -100; policy accept; }'
      nft add chain @NFT@ vnetgen_forwards output '{ type nat hook output priority -100; policy accept; }'
      for chain in prerouting output; do
        forward@F@_nft_has vnetgen_forwards "$chain" "$tag" || nft add rule @NFT@ vnetgen_forwards "$chain" \
          fib daddr type local "$proto" dport "$port" counter dnat to "@DNAT@" comment "\"$tag\""
      done
      forward@F@_nft_has libvirt_network guest_input "$tag" || nft insert rule @NFT@ libvirt_network guest_input \
        oif "$bridge" @NFT@ daddr "$addr" "$proto" dport "$to" ct status dnat counter accept comment "\"$tag\""
      ;;
    del)
      for chain in prerouting output; do forward@F@_nft_del vnetgen_forwards "$chain" "$tag"; done
      forward@F@_nft_del libvirt_network guest_input "$tag"
      ;;
    *)
      forward@F@_nft_has vnetgen_forwards prerouting "$tag" && forward@F@_nft_has vnetgen_forwards output "$tag" \
        && forward@F@_nft_has libvirt_network guest_input "$tag"
      ;;
  esac
}

forward@F@_gone() {  # forward@F@_gone NETWORK PROTO PORT: no rule of either firewall carries the forward's comment
  local tag="vnetgen forward@F@ $1 $2/$3" rules=""
  # read first, grep after: `grep -q` leaving a pipe early fails the writer, and pipefail the test
  if command -v @IPT@ >/dev/null 2>&1; then rules=$(@IPT@ -w -t nat -S 2>/dev/null; @IPT@ -w -S FORWARD 2>/dev/null) || :; fi
  if command -v nft >/dev/null 2>&1; then rules+=$'\n'$(nft list ruleset 2>/dev/null) || :; fi
  ! grep -qF "comment \"$tag\"" <<<"$rules"
}

vnetgen_forward@F@() {  # vnetgen_forward@F@ add|del|check|gone NETWORK BRIDGE PROTO PORT ADDRESS TO-PORT: @WHAT@
  if [ "$1" = gone ]; then
    forward@F@_gone "$2" "$4" "$5"
  elif [ "$1" = del ]; then
    if command -v @IPT@ >/dev/null 2>&1; then forward@F@_iptables "$@"; fi
    if command -v nft >/dev/null 2>&1; then forward@F@_nftables "$@"; fi
  elif [ "$(forward_backend)" = nftables ]; then
    forward@F@_nftables "$@"
  else
    forward@F@_iptables "$@"
  fi
}
"""


def _family(version: int) -> str:
    """FAMILY for IPv4 or IPv6 (the IPv4 functions carry no suffix: hooks written before IPv6 stay as they were)."""
    words = {4: {"@F@": "", "@IPT@": "iptables", "@NFT@": "ip", "@HOST@": "32", "@DNAT@": "$addr:$to",
                 "@WHAT@": "one port forward"},
             6: {"@F@": "6", "@IPT@": "ip6tables", "@NFT@": "ip6", "@HOST@": "128", "@DNAT@": "[$addr]:$to",
                 "@WHAT@": "one IPv6 port forward"}}[version]
    text = FAMILY   # each @WORD@ replaced (tests/test_forwards.py: as re.sub("@[A-Z]+@", ...) does)
    for token, word in words.items():
        text = text.replace(token, word)
    return text


FUNCTIONS = BACKEND + _family(4)
FUNCTIONS6 = _family(6)


Address = Union[IPv4Address, IPv6Address]


def parse_to(text: str) -> Tuple[Address, int]:
    """"ADDRESS:PORT" (IPv4) or "[ADDRESS]:PORT" (IPv6, as in a URL) → (address, port); ValueError when
    either is unreadable, the port is out of range, or an IPv6 address is not in brackets."""
    address, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(text)
    if address.startswith("[") and address.endswith("]"):
        return IPv6Address(address[1:-1]), int(port)
    return IPv4Address(address), int(port)


def _forwards(plan) -> List[Tuple[object, List[Tuple[str, int, str, int]]]]:
    """(network plan, [(proto, port, address, to-port)]) of the host's nat networks with forwards."""
    found = []
    for net in plan.networks.values():
        if net.mode.name in MODES and net.net.forwards and net.net.state != "absent" and net.bridge:
            items = []
            for fwd in net.net.forwards:
                address, to = parse_to(fwd.to)
                items.append((fwd.proto, int(fwd.port), str(address), to))
            found.append((net, items))
    return found


def _ipv6(address: str) -> bool:
    return ":" in address


def target(address: str, to: int) -> str:
    """ADDRESS:PORT as DNAT writes it: an IPv6 address in brackets."""
    return f"[{address}]:{to}" if _ipv6(address) else f"{address}:{to}"


def describe(proto: str, port: int, address: str, to: int) -> str:
    return f"{proto} {port} -> {target(address, to)}"


# --- validation ------------------------------------------------------------------------------

@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode not in MODES:
        return   # the core's Mode.keys check says 'forwards' is not for this mode
    for index, fwd in enumerate(network.forwards):
        who = f"network {network.name}: forward {fwd.proto} {fwd.port}"
        if not fwd.to:
            continue   # not a string of the schema's shape: the schema's error says so at the key
        try:
            address, _ = parse_to(fwd.to)
        except ValueError:
            report.error(fwd.at("to"), f"{who}: to {fwd.to!r} is not ADDRESS:PORT (an IPv4 address, or an IPv6 "
                                       "address in brackets as in [2001:db8::5]:22; a port 1-65535)")
            continue
        own = network.interface(address.version)
        if address.version == 6 and own is None:
            report.error(fwd.at("to"), f"{who}: {address} is IPv6 and the network has no IPv6 address; give "
                                       "it one in 'ips' (libvirt routes its prefix; the DNAT goes to a guest's "
                                       "address in it)")
            continue
        subnet = own.network if own is not None else None
        edges = (subnet.network_address,) if address.version == 6 or subnet is None else \
            (subnet.network_address, subnet.broadcast_address)
        if subnet is None or address not in subnet or address in edges:
            report.error(fwd.at("to"), f"{who}: {address} is not a guest address of the network's subnet "
                                       f"{subnet if subnet is not None else '(none: the network has no ip)'}")
        elif address == own.ip:
            report.error(fwd.at("to"), f"{who}: {address} is the host's own address on the network, not a guest's")


def _family(fwd) -> int:
    try:
        return parse_to(fwd.to)[0].version
    except ValueError:
        return 0   # said by vnetgen_validate_network


@hookimpl
def vnetgen_validate_host(host, report):
    """A host port is forwarded once per family, whatever the network: two DNATs of one port race each
    other. IPv4 and IPv6 are two sockets: the same port may be forwarded once over each."""
    seen: Dict[Tuple[int, str, int], str] = {}
    for net in host.networks.values():
        if net.mode not in MODES:
            continue
        for fwd in net.forwards:
            family = _family(fwd)
            key = (family, fwd.proto, fwd.port)
            if key in seen:
                over = f" over IPv{family}" if family == 6 or any(k[0] == 6 for k in seen) else ""
                report.error(fwd.at("port"), f"network {net.name}: {fwd.proto} port {fwd.port} of host {host.name} "
                                             f"is forwarded twice{over} (also by network {seen[key]})")
            else:
                seen[key] = net.name


# --- the hook, the runbook, rollback -----------------------------------------------------------

def _calls(act: str, net, items) -> Tuple[str, ...]:
    return tuple(cmd("vnetgen_forward6" if _ipv6(address) else "vnetgen_forward", act, net.name, net.bridge, proto,
                     str(port), address, str(to))
                 for proto, port, address, to in items)


def _any6(found) -> bool:
    return any(_ipv6(address) for _, items in found for _, _, address, _ in items)


@hookimpl
def vnetgen_network_hook(host, plan) -> List[HookCase]:
    cases: List[HookCase] = []
    found = _forwards(plan)
    functions = FUNCTIONS + FUNCTIONS6 if _any6(found) else FUNCTIONS
    for net, items in found:
        add, delete = _calls("add", net, items), _calls("del", net, items)
        check = tuple(line + " || exit 1" for line in _calls("check", net, items))
        gone = tuple(line + " || exit 1" for line in _calls("gone", net, items))
        for operation, lines in (("started", add), ("reconnect", add), ("stopped", delete),
                                 ("vnetgen-forwards-add", add), ("vnetgen-forwards-del", delete),
                                 ("vnetgen-forwards-check", check), ("vnetgen-forwards-gone", gone)):
            cases.append(HookCase(operation, net.name, lines, functions))
    return cases


def _hook(net_name: str, operation: str) -> str:
    return cmd(here(HOOK), net_name, operation)


@hookimpl
def vnetgen_steps(host, plan) -> List[Step]:
    steps = []
    for net, items in _forwards(plan):
        running = cmd("net_info_is", net.name, "Active", "yes")
        listed = "; ".join(describe(*item) for item in items)
        steps.append(Step(
            (PORTS, 10, net.name), f"port forwards of network {net.name}",
            f"{listed}: DNAT rules in the firewall libvirt uses, added now when the network runs (no restart), "
            f"and by the network hook whenever libvirt starts it (from libvirtd's next start on: it reads a new "
            f"hook file then), removed when it stops",
            (Action(commands=(_hook(net.name, "vnetgen-forwards-add"),),
                    check=f"! {running} || {_hook(net.name, 'vnetgen-forwards-check')} >/dev/null 2>&1",
                    done=f"the port forwards of {net.name} are in place (or it is not running)"),),
            (Action(commands=(_hook(net.name, "vnetgen-forwards-del"),),
                    check=f"{_hook(net.name, 'vnetgen-forwards-gone')} >/dev/null 2>&1",
                    done=f"no port forward of {net.name} is left"),)))
    return steps


# --- the audit ---------------------------------------------------------------------------------

@hookimpl
def vnetgen_capture_files(host, plan) -> List[CaptureFile]:
    if plan is None:
        return CAPTURES + [CAPTURE6]
    try:
        return CAPTURES + ([CAPTURE6] if _any6(_forwards(plan)) else []) if _any_forwards(plan) else []
    except AttributeError:   # docgen's stand-in plan: list every file the plugin may add
        return CAPTURES + [CAPTURE6]


def _any_forwards(plan) -> bool:
    return any(net.net.forwards for net in plan.networks.values())


@hookimpl
def vnetgen_checks(host, plan) -> List[Check]:
    checks = []
    for net, items in _forwards(plan):
        if net.net.state != "active":
            continue
        for item in items:
            proto, port, address, to = item
            checks.append(Check(
                "port-forward", f"network/{net.name}", describe(*item),
                test=f"{_hook(net.name, 'vnetgen-forwards-check')} >/dev/null 2>&1",
                fix=cmd("/etc/libvirt/hooks/network", net.name, "vnetgen-forwards-add"),
                network=net.name, words=f"{proto} port {port} of the host is forwarded to {target(address, to)}",
                params=(("proto", proto), ("port", port), ("address", address), ("to", to))))
    return checks


def forwarded(text: str, source: str, proto: str, port: int, address: str, to: int) -> bool:
    """Whether a capture (`iptables -t nat -S`, `ip6tables -t nat -S` or `nft list ruleset`) holds a DNAT
    of the host's PROTO PORT to ADDRESS:TO in a prerouting chain of the address's family (whoever wrote it:
    the meaning counts)."""
    wanted = target(address, to)
    family = "ip6" if _ipv6(address) else "ip"
    if source in (IPTABLES_NAT, IP6TABLES_NAT):
        for line in text.splitlines():
            words = line.split()
            if words[:2] == ["-A", "PREROUTING"] and "DNAT" in words and _after(words, "-p") == proto \
                    and _after(words, "--dport") == str(port) and _same(_after(words, "--to-destination"), wanted):
                return True
        return False
    chain = ""
    table = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("table "):
            table = stripped.split()[1] if len(stripped.split()) > 2 else ""
        if stripped.startswith("chain "):
            chain = ""
        if re.search(r"\bhook prerouting\b", stripped):
            chain = "prerouting"
        # a table of the address's family, or an inet one (whose dnat names the family)
        if chain and table in (family, "inet") and re.search(rf"\b{proto} dport {port}\b", stripped) and re.search(
                rf"\bdnat ({family} )?to {re.escape(wanted)}(\s|$)", stripped):
            return True
    return False


def _same(found: Optional[str], wanted: str) -> bool:
    """DNAT targets compared by meaning ([2001:DB8::0:5]:22 is [2001:db8::5]:22)."""
    if found is None:
        return False
    if not wanted.startswith("["):
        return found == wanted
    address, _, port = found.rpartition(":")
    try:
        return address.startswith("[") and target(str(ip_address(address[1:-1])), int(port)) == wanted
    except ValueError:
        return False


def _after(words: List[str], flag: str) -> Optional[str]:
    return words[words.index(flag) + 1] if flag in words and words.index(flag) + 1 < len(words) else None


class PortForward(CheckKind):
    name = "port-forward"
    summary = ("a port forward of the profile is in the firewall (iptables or, for IPv6, ip6tables nat PREROUTING; "
               "or nftables prerouting of its family)")
    captures = (IPTABLES_NAT, IP6TABLES_NAT, NFT_RULESET)

    def evaluate(self, check: Check, ev) -> None:
        args = [check.param(k) for k in ("proto", "port", "address", "to")]
        tables = IP6TABLES_NAT if _ipv6(args[2]) else IPTABLES_NAT
        seen = [(ev.obs.extra.get(name), name) for name in (tables, NFT_RULESET)]
        seen = [(got[0], name) for got, name in seen if got is not None]
        if not seen:
            ev.skip(f"{check.object}: port forward {check.expected}",
                    f"neither {tables} nor {NFT_RULESET} was captured")
            return
        if not any(forwarded(text, name, *args) for text, name in seen):
            ev.drift(check, None)


@hookimpl
def vnetgen_check_kinds() -> List[CheckKind]:
    return [PortForward()]

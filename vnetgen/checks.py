"""What "in sync" means, defined once: each check kind builds its checks from the plan (with the bash
the runbook's verify step runs and the fix the audit suggests) and evaluates them on observed facts.

Runbook verify, `vnetgen audit`, REVIEW.md and the drift-kind table of docs/audit.md all come from
the registry below (`kinds()`); a plugin adds kinds with `vnetgen_check_kinds` and checks with
`vnetgen_checks`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import field
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from .api import Check, CheckKind
from .dataclassc import dataclass
from .netfields import FIELDS, NetField, set_fields
from .netip6 import named_first
from .shell import cmd

__all__ = ["AUTOMATIC_PORT_PREFIXES", "Check", "CheckKind", "Drift", "Evaluation", "HostAudit", "definition_tokens",
           "find", "host_checks", "kinds", "lease_key", "lease_line"]

# Interfaces a running host adds to libvirt's bridges by itself: guests' taps and libvirt's dummy NIC.
AUTOMATIC_PORT_PREFIXES = ("vnet", "virbr", "tap", "macvtap", "veth")


@dataclass(frozen=True)
class Drift:
    """One difference between the profile and the host (SPEC section 5)."""

    kind: str
    object: str
    expected: Any
    actual: Any
    severity: str
    fix: str

    @property
    def id(self) -> str:
        return f"{self.kind} {self.object}"

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "object": self.object, "expected": self.expected, "actual": self.actual,
                "severity": self.severity, "fix": self.fix}


@dataclass
class HostAudit:
    """The audit of one host: its drift, and what could not be audited."""
    host: str
    drift: List[Drift] = field(default_factory=list)
    not_audited: List[str] = field(default_factory=list)

    def in_sync(self, strict: bool = False) -> bool:
        """No errors; with `strict`, no warnings either."""
        return not any(d.severity == "error" or strict for d in self.drift)


# --- network checks ------------------------------------------------------------------------------


def _redefine_fix(name: str) -> str:
    return cmd("virsh", "net-define", f"networks/{name}.xml")


class NetworkMissing(CheckKind):
    name = "network-missing"
    summary = "a network of the profile is not defined"
    captures = ("virsh-net-list.txt",)

    @staticmethod
    def make(name: str, bash: bool = True) -> Check:
        """The check of network `name`; without `bash` (an audit's plan), no runbook text: the fix is
        made when drift is found (so for the other network-* kinds)."""
        if not bash:
            return Check("network-missing", f"network/{name}", True, network=name)
        return Check("network-missing", f"network/{name}", True, cmd("net_exists", name), _redefine_fix(name),
                     network=name, words=f"network {name} is defined")

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if check.network not in ev.obs.networks:
            ev.drift(check, False, fix=check.fix or _redefine_fix(check.network))
            ev.moot_networks.add(check.network)


class NetworkExtra(CheckKind):
    name = "network-extra"
    summary = "a network the profile marks absent, or does not mention (a warning), is defined"
    captures = ("virsh-net-list.txt",)

    @staticmethod
    def make(name: str, bash: bool = True) -> Check:
        if not bash:   # its drift's fix depends on the network's state: evaluate makes it
            return Check("network-extra", f"network/{name}", None, network=name)
        return Check("network-extra", f"network/{name}", None, "! " + cmd("net_exists", name),
                     cmd("virsh", "net-undefine", name), network=name, words=f"network {name} is not defined")

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        entry = ev.obs.networks.get(check.network)
        if entry is not None:
            ev.drift(check, _state(entry), fix=_removal(entry))


class NetworkInactive(CheckKind):
    name = "network-inactive"
    summary = "a network runs, or not, against its `state`"
    captures = ("virsh-net-list.txt",)

    @staticmethod
    def make(name: str, active: bool, bash: bool = True) -> Check:
        expected = "active" if active else "inactive"
        if not bash:
            return Check("network-inactive", f"network/{name}", expected, network=name)
        return Check("network-inactive", f"network/{name}", expected,
                     ("" if active else "! ") + cmd("net_info_is", name, "Active", "yes"),
                     NetworkInactive.fix(name, expected), network=name,
                     words=f"network {name} is {'running' if active else 'stopped'}")

    @staticmethod
    def fix(name: str, expected: str) -> str:
        return cmd("virsh", "net-start" if expected == "active" else "net-destroy", name)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        actual = _state(ev.obs.networks[check.network])
        if actual != check.expected:
            ev.drift(check, actual, fix=check.fix or self.fix(check.network, check.expected))
            if check.expected == "active":
                # listed after the definition's fixes, so that it starts with the corrected definition
                ev.pending = ev.result.drift.pop()


class NetworkAutostart(CheckKind):
    name = "network-autostart"
    summary = "a network's autostart flag"
    captures = ("virsh-net-list.txt",)

    @staticmethod
    def make(name: str, autostart: bool, bash: bool = True) -> Check:
        if not bash:
            return Check("network-autostart", f"network/{name}", autostart, network=name)
        return Check("network-autostart", f"network/{name}", autostart,
                     cmd("net_info_is", name, "Autostart", "yes" if autostart else "no"),
                     NetworkAutostart.fix(name, autostart), network=name,
                     words=f"autostart of network {name} is {'on' if autostart else 'off'}")

    @staticmethod
    def fix(name: str, autostart: bool) -> str:
        return cmd("virsh", "net-autostart", *(() if autostart else ("--disable",)), name)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        entry = ev.obs.networks[check.network]
        if entry.autostart != check.expected:
            fix = check.fix or self.fix(check.network, check.expected)
            if not entry.persistent:  # a transient network has no autostart until it is defined
                fix = _redefine_fix(check.network) + " && " + fix
            ev.drift(check, entry.autostart, fix=fix)


def definition_check(kind: str, net: str, expected: Any, tokens: Tuple[str, ...], words: str) -> Check:
    """A check of a network's definition: the runbook matches net-dumpxml lines (`tokens`); the audit
    compares the parsed definition; the fix redefines the network from the bundle. (An audit's plan
    makes them bare: see network_checks.)"""
    return Check(kind, f"network/{net}", expected, cmd("net_xml_match", net, *tokens), _redefine_fix(net),
                 tokens=tokens, network=net, words=words)


class _Definition(CheckKind):
    """A part of the network's XML definition; the runbook compares net-dumpxml lines (tokens)."""

    captures = ("net/<network>.xml",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        actual, equal = self.observed(check, ev.obs.definitions[check.network], ev)
        if not equal:
            ev.drift(check, actual, fix=ev.redefine(check))

    def observed(self, check: Check, definition: Any, ev: "Evaluation") -> Tuple[Any, bool]:
        raise NotImplementedError  # pragma: no cover


class ForwardMode(_Definition):
    name = "forward-mode"
    summary = "the network's `<forward mode>` (none: isolated)"

    def observed(self, check, definition, ev):
        return definition.forward_mode, definition.forward_mode == check.expected


class BridgeName(_Definition):
    name = "bridge-name"
    summary = "the bridge a network uses, when the profile pins it (a virbrN libvirt picked is not drift)"

    def observed(self, check, definition, ev):
        if ev.plan.networks[check.network].net.bridge is None:
            return None, True  # unpinned: whatever name libvirt or the planner picked is fine
        return definition.bridge, definition.bridge == check.expected


class Mac(_Definition):
    name = "mac"
    summary = "the MAC of a libvirt bridge, when the profile pins it"

    def observed(self, check, definition, ev):
        return definition.mac, (definition.mac or "").lower() == str(check.expected).lower()


class Uuid(_Definition):
    name = "uuid"
    summary = "the network's UUID, when the profile pins it"

    def observed(self, check, definition, ev):
        return definition.uuid, (definition.uuid or "").lower() == str(check.expected).lower()


class IpAddress(_Definition):
    name = "ip-address"
    summary = "the network's IPv4 address and prefix (an IPv6 `<ip>` only on an unnumbered network)"

    def observed(self, check, definition, ev):
        if check.expected is None:
            found = [str(ip.address.with_prefixlen) for ip in definition.ips]
            return _one(found), not found
        found = [str(ip.address.with_prefixlen) for ip in definition.ips if ip.family == "ipv4"]
        return _one(found), found == [check.expected]


class FieldKind(_Definition):
    """A drift kind of a setting from netfields.FIELDS (mtu, forward-dev, nat-range, bandwidth)."""

    def __init__(self, spec: NetField) -> None:
        self.spec, self.name, self.summary = spec, spec.kind, spec.summary

    def observed(self, check, definition, ev):
        actual = self.spec.observed(definition, check.expected)
        return actual, actual == check.expected

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if not self.spec.live:
            return super().evaluate(check, ev)
        actual, equal = self.observed(check, ev.obs.definitions[check.network], ev)
        if not equal:  # DNS records: `virsh net-update`, no restart
            ev.drift(check, actual, fix=ev.net_update(check.network, self.spec.live,
                                                      self.spec.updates(check.expected, actual)))


class Stp(CheckKind):
    name = "stp"
    summary = "STP on a libvirt bridge (from its definition; libvirt's default is on) or a host bridge"
    captures = ("net/<network>.xml", "the target's bridge files")

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if check.network:
            stp = ev.obs.definitions[check.network].stp
            actual = True if stp is None else stp  # libvirt's default for the bridges it creates
            if actual != check.expected:
                ev.drift(check, actual, fix=ev.redefine(check))
            return
        bridge = ev.obs.networking.bridges[_name(check.object)]
        if bridge.stp is None:
            ev.skip(f"{check.object} stp", f"{ev.obs.networking.tool} could not read it")
        elif bridge.stp != check.expected:
            ev.drift(check, bridge.stp)


class Delay(CheckKind):
    name = "delay"
    summary = "the forward delay of a libvirt bridge (definition) or a host bridge (seconds)"
    captures = ("net/<network>.xml", "the target's bridge files")

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if check.network:
            delay = ev.obs.definitions[check.network].delay
            actual: Any = 0 if delay is None else delay
            if actual != check.expected:
                ev.drift(check, actual, fix=ev.redefine(check))
            return
        seconds = ev.obs.networking.bridges[_name(check.object)].delay
        if seconds is None:
            why = ev.obs.networking.missing.get("delay", "not captured")
            ev.skip(f"{check.object} delay", why)
        elif abs(seconds - check.expected) >= 0.005:  # centiseconds, as the kernel keeps it
            ev.drift(check, int(seconds) if float(seconds).is_integer() else seconds)


class DhcpRange(CheckKind):
    name = "dhcp-range"
    summary = "the IPv4 DHCP range (fixed live with `virsh net-update`, no restart)"
    captures = ("net/<network>.xml",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        ranges = [f"{start}-{end}" for ip in ev.ipv4(check) for start, end in ip.dhcp_ranges]
        wanted = [] if check.expected is None else [check.expected]
        if sorted(ranges) == wanted:
            return
        words = [("delete", _range_xml(r)) for r in ranges if r not in wanted]
        words += [("add", _range_xml(r)) for r in wanted if r not in ranges]
        ev.drift(check, _one(ranges), fix=ev.net_update(check.network, "ip-dhcp-range", words))


class DhcpHost(CheckKind):
    name = "dhcp-host"
    summary = "the static DHCP leases (fixed live with `virsh net-update`, no restart)"
    captures = ("net/<network>.xml",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        hosts = {lease_key(h): h for ip in ev.ipv4(check) for h in ip.dhcp_hosts}
        actual = sorted(hosts)
        if actual == check.expected:
            return
        dhcp = ev.plan.networks[check.network].net.dhcp
        wanted = {lease_key(lease): lease for lease in (dhcp.hosts if dhcp else [])}
        words = [("delete", lease_line(hosts[k])) for k in actual if k not in wanted]
        words += [("add", lease_line(wanted[k])) for k in sorted(wanted) if k not in hosts]
        ev.drift(check, actual, fix=ev.net_update(check.network, "ip-dhcp-host", words))


# --- bridges, ports, addresses, routes --------------------------------------------------------


class BridgeMissing(CheckKind):
    name = "bridge-missing"
    summary = "a host bridge of the profile does not exist"
    captures = ("the target's bridge files",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if check.expected not in ev.obs.networking.bridges:
            ev.drift(check, None)
            ev.moot_objects.add(check.object)


class PortMissing(CheckKind):
    name = "port-missing"
    summary = "a NIC is not a port of its bridge (host bridge, or a libvirt bridge's trunk port)"
    captures = ("the target's bridge files",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        bridge = ev.port_bridge(check)
        ports = None if bridge is None else ev.ports_of(bridge)
        if ports is not None and check.expected not in ports:
            fix = check.fix if bridge == _name(check.object) else ev.plan.target.add_port(bridge, check.expected)
            ev.drift(check, None, obj=f"bridge/{bridge}", fix=fix)


class PortExtra(CheckKind):
    name = "port-extra"
    summary = "a bridge has a physical port the profile does not list (guests' taps are not drift)"
    captures = ("the target's bridge files",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        bridge = ev.port_bridge(check)
        ports = None if bridge is None else ev.ports_of(bridge)
        if ports is None:
            return
        physical = sorted(p for p in ports if not _automatic(p, bridge))
        extra = [p for p in physical if p not in check.expected]
        if extra:
            fix = " && ".join(ev.plan.target.remove_port(bridge, p) for p in extra)
            ev.drift(check, physical, obj=f"bridge/{bridge}", fix=fix)


class BridgeAddress(CheckKind):
    name = "bridge-address"
    summary = "a host bridge holds its address (and the NIC it came from does not)"
    captures = ("the target's address file",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        links = ev.obs.networking.links
        if links is None or any(link.addresses is None for link in links.values()):
            ev.skip("addresses", ev.obs.networking.missing.get("addresses", "not captured"))
            return
        dev = check.param("dev")
        link = links.get(dev)
        held = list(link.addresses or ()) if link else []
        if (check.expected in held) != (check.param("held", True)):
            ev.drift(check, held)


class DefaultRoute(CheckKind):
    name = "default-route"
    summary = "the host's default route goes via the profile's gateway on its bridge"
    captures = ("the target's route file",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        routes = ev.obs.networking.routes
        if routes is None:
            ev.skip("default route", ev.obs.networking.missing.get("routes", "not captured"))
            return
        defaults = [r for r in routes if r.dst == "default" and r.family == "ipv4"]
        if not any(r.gateway == check.param("gateway") and r.dev == check.param("dev") for r in defaults):
            ev.drift(check, [f"via {r.gateway} dev {r.dev}" if r.gateway else f"dev {r.dev}" for r in defaults])


# --- host settings and guests ---------------------------------------------------------------


class IpForward(CheckKind):
    name = "ip-forward"
    summary = "net.ipv4.ip_forward, which nat/route/open networks need"
    captures = ("sysctl.txt",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        value = ev.obs.sysctl.get("net.ipv4.ip_forward")
        if value is None:
            ev.skip("host ip-forward", "net.ipv4.ip_forward is not in the sysctl capture")
            return
        actual: Any = int(value) if value.isdigit() else value
        if actual != check.expected:
            ev.drift(check, actual)


class SysctlSetting(CheckKind):
    name = "sysctl"
    summary = "another kernel setting of the drop-in (bridge-nf-call-*: only while br_netfilter is loaded)"
    captures = ("sysctl.txt",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        key = check.param("key")
        value = ev.obs.sysctl.get(key)
        if value is None:
            if ev.obs.layout < 2:
                ev.skip("sysctl", "a layout-1 capture holds net.ipv4.ip_forward only")
            elif not check.param("optional"):
                ev.drift(check, None)
            return  # optional: the key exists only while its module is loaded, and then it holds
        if value != check.expected:
            ev.drift(check, value)


class VmMissing(CheckKind):
    name = "vm-missing"
    summary = "a VM of the profile is not defined"
    captures = ("virsh-list.txt",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        if ev.obs.domains is None:
            return  # not observed: the observation says so
        if check.expected not in ev.obs.domains:
            ev.drift(check, None)
            ev.moot_objects.add(check.object)


class VmNetwork(CheckKind):
    name = "vm-network"
    summary = "a VM's NIC is on its network (with its pinned MAC); one the profile does not list is a warning"
    captures = ("domiflist/<vm>.txt",)

    def evaluate(self, check: Check, ev: "Evaluation") -> None:
        pass  # evaluated per VM, all its NICs at once: Evaluation._vm_networks


_CORE_KINDS: Tuple[CheckKind, ...] = (
    NetworkMissing(), NetworkExtra(), NetworkInactive(), NetworkAutostart(), ForwardMode(), BridgeName(), Stp(),
    Delay(), Mac(), Uuid(), *(FieldKind(spec) for spec in FIELDS), IpAddress(), DhcpRange(), DhcpHost(),
    BridgeMissing(), PortMissing(), PortExtra(), BridgeAddress(), DefaultRoute(), IpForward(), SysctlSetting(), VmMissing(), VmNetwork())


def kinds(pm: Any = None) -> Dict[str, CheckKind]:
    """Every check kind by name: the core's, then the plugins' (a plugin cannot replace a core kind)."""
    found = {kind.name: kind for kind in _CORE_KINDS}
    if pm is not None:
        for result in pm.hook.vnetgen_check_kinds():
            for kind in result or ():
                found.setdefault(kind.name, kind)
    return found


# --- checks of a host plan --------------------------------------------------------------------------


def lease_line(lease: Any) -> str:
    """How libvirt prints a static lease (attribute order mac, name, ip)."""
    parts = [f"mac='{lease.mac.lower()}'" if lease.mac else "", f"name='{lease.name}'" if lease.name else "",
             f"ip='{lease.ip}'"]
    return "<host " + " ".join(p for p in parts if p) + "/>"


def lease_key(lease: Any) -> str:
    return f"{(lease.mac or '').lower()}|{lease.name or ''}|{lease.ip}"


def network_checks(network: Any, target: Any, bash: bool = True) -> List[Check]:
    """Checks of one libvirt network's definition, state and ports. Without `bash`, an audit's: no
    test, and definition checks with no fix, tokens or words either (the runbook's; the kinds of
    these checks report their own fix: Evaluation.redefine, Evaluation.net_update)."""
    net = network.net
    name = net.name
    if net.state == "absent":
        return [NetworkExtra.make(name, bash)]
    checks = [NetworkMissing.make(name, bash), NetworkInactive.make(name, net.state == "active", bash),
              NetworkAutostart.make(name, net.autostart, bash)]
    mode, mode_forward = network.mode, network.forward   # as the network's XML says it

    def define(kind: str, expected: Any, tokens: Callable[[], Tuple[str, ...]], words: Callable[[], str]) -> None:
        """A definition check; its tokens and words (the runbook's) are made only with `bash`."""
        checks.append(definition_check(kind, name, expected, tokens(), words()) if bash else
                      Check(kind, f"network/{name}", expected, network=name))

    def forward() -> Tuple[str, ...]:
        if mode_forward and network.forward_dev:  # libvirt writes dev= before mode=
            return (f"has:<forward dev='{network.forward_dev}' mode='{mode_forward}'",)
        return (f"has:<forward mode='{mode_forward}'",) if mode_forward else ("lacks:<forward",)

    define("forward-mode", mode_forward or None, forward,
           lambda: f"network {name} forwards in mode {mode_forward}" if mode_forward
           else f"network {name} has no <forward> (isolated)")
    if network.bridge:
        define("bridge-name", network.bridge, lambda: (f"has:<bridge name='{network.bridge}'",),
               lambda: f"network {name} uses bridge {network.bridge}")
    if network.stp is not None:
        stp = "on" if network.stp else "off"
        define("stp", network.stp, lambda: (f"has:stp='{stp}'",),
               lambda: f"stp is {stp} for the bridge of network {name}")
    if network.delay is not None:
        define("delay", network.delay, lambda: (f"has:delay='{network.delay}'",),
               lambda: f"forward delay of network {name} is {network.delay} s")
    if net.mac:  # a generated MAC or UUID the profile did not pin is not drift
        define("mac", network.mac, lambda: (f"has:<mac address='{network.mac}'/>",),
               lambda: f"network {name}'s bridge has MAC {network.mac}")
    if net.uuid:
        define("uuid", network.uuid, lambda: (f"has:<uuid>{network.uuid}</uuid>",),
               lambda: f"network {name} has UUID {network.uuid}")
    for spec, value in set_fields(net):
        define(spec.kind, value, lambda: spec.tokens(network, value), lambda: f"network {name} has {spec.words(value)}")
    if net.ip is not None:
        define("ip-address", str(net.ip.with_prefixlen),
               lambda: (f"has:<ip address='{net.ip.ip}' netmask='{net.ip.netmask}'",),
               lambda: f"network {name} has address {net.ip.with_prefixlen}")
    elif mode.ip != "forbidden" and net.ip6 is None:
        define("ip-address", None, lambda: ("lacks:<ip ",), lambda: f"network {name} has no address")
    dhcp = net.dhcp
    if dhcp is not None:
        define("dhcp-range", f"{dhcp.start}-{dhcp.end}", lambda: (f"has:<range start='{dhcp.start}' end='{dhcp.end}'/>",),
               lambda: f"network {name} leases {dhcp.start}-{dhcp.end}")
    elif net.ip is not None:
        define("dhcp-range", None, lambda: ("lacks:<range ",), lambda: f"network {name} runs no DHCP range")
    leases = dhcp.hosts if dhcp else []
    if net.ip is not None:
        def lease_tokens() -> Tuple[str, ...]:
            # Counted by their first attribute: a lease has mac= or name= (validation), a DNS host ip= only.
            # DHCPv6 hosts without a DUID print as `<host name=` too (netip6.named_first).
            with_mac = sum(1 for lease in leases if lease.mac)
            return tuple(f"has:{lease_line(lease)}" for lease in leases) + (
                f"count:{with_mac}:<host mac=", f"count:{len(leases) - with_mac + named_first(net)}:<host name=")

        define("dhcp-host", sorted(lease_key(lease) for lease in leases), lease_tokens,
               lambda: f"network {name} has {_leases(len(leases))}")
    if network.bridge and mode.libvirt_bridge:
        bridge = network.bridge
        for port in net.ports:
            checks.append(Check("port-missing", f"bridge/{bridge}", port, f"[ -e /sys/class/net/{bridge}/brif/{port} ]",
                                target.add_port(bridge, port), network=name, words=f"{port} is a port of {bridge}"))
        checks.append(Check("port-extra", f"bridge/{bridge}", sorted(net.ports), network=name))
    return checks


def _leases(count: int) -> str:
    return "no static lease" if count == 0 else f"{count} static lease{'s' if count > 1 else ''}"


def bridge_checks(plan: Any, bridge: Any) -> List[Check]:
    """Checks of one host bridge: it exists, its stp, delay, ports, address and default route."""
    target, name = plan.target, bridge.name
    obj = f"bridge/{name}"
    if bridge.external:
        return [Check("bridge-missing", obj, name, f"[ -d /sys/class/net/{name}/bridge ]", target.add_bridge(name),
                      words=f"bridge {name} exists")]
    whole = target.bridge_fix(name)

    def fix(one: str) -> str:
        return whole or one

    checks = [Check("bridge-missing", obj, name, f"[ -d /sys/class/net/{name}/bridge ]", fix(target.add_bridge(name)),
                    words=f"bridge {name} exists")]
    checks.append(Check("stp", obj, bridge.stp,
                        f"[ \"$(cat /sys/class/net/{name}/bridge/stp_state)\" {'!=' if bridge.stp else '='} 0 ]",
                        fix(target.set_stp(name, bridge.stp)), words=f"stp is {'on' if bridge.stp else 'off'} on {name}"))
    delay = plan.bridge_delay[name]
    if bridge.stp or target.delay_without_stp:
        checks.append(Check("delay", obj, delay,
                            f"[ \"$(cat /sys/class/net/{name}/bridge/forward_delay)\" = {delay * 100} ]",
                            fix(target.set_delay(name, delay)), words=f"forward delay of {name} is {delay} s"))
    for port in bridge.ports:
        checks.append(Check("port-missing", obj, port, f"[ -e /sys/class/net/{name}/brif/{port} ]",
                            fix(target.add_port(name, port)), words=f"{port} is a port of {name}"))
    checks.append(Check("port-extra", obj, sorted(bridge.ports)))
    if bridge.ip is not None:
        cidr = bridge.ip.with_prefixlen
        checks.append(Check("bridge-address", obj, cidr, cmd("has_address", name, cidr),
                            fix(target.add_address(name, cidr)), words=f"{name} holds {cidr}",
                            params=(("dev", name),)))
        for port in bridge.ports:
            checks.append(Check("bridge-address", f"nic/{port}", cidr, "! " + cmd("has_address", port, cidr),
                                fix(target.delete_address(port, cidr)), words=f"{port} no longer holds {cidr}",
                                params=(("dev", port), ("held", False))))
        if bridge.gateway is not None:
            checks.append(Check("default-route", "host", f"via {bridge.gateway} dev {name}",
                                cmd("has_default_route", bridge.gateway, name),
                                fix(target.replace_default_route(str(bridge.gateway), name)),
                                words=f"default route via {bridge.gateway} on {name}",
                                params=(("gateway", str(bridge.gateway)), ("dev", name))))
    return checks


def host_checks(plan: Any, pm: Any = None) -> List[Check]:
    """Every check of one host, in a stable order: networks, host bridges, sysctl, VMs, then plugins'."""
    checks: List[Check] = []
    bash = getattr(plan, "runbook", True)   # an audit's plan: no runbook runs the tests
    for network in plan.networks.values():
        checks.extend(network_checks(network, plan.target, bash))
    for bridge in plan.host.bridges.values():
        checks.extend(bridge_checks(plan, bridge))
    for setting in plan.sysctl:
        proc = "/proc/sys/" + setting.key.replace(".", "/")
        test = f"[ \"$(cat {proc})\" = {setting.value} ]"
        fix = cmd("sysctl", "-w", f"{setting.key}={setting.value}")
        if setting.key == "net.ipv4.ip_forward":
            checks.append(Check("ip-forward", "host", int(setting.value), test, fix,
                                words=f"net.ipv4.ip_forward is {setting.value}"))
            continue
        optional = setting.key.startswith("net.bridge.")
        if optional:
            # Exists only while br_netfilter is loaded; without it bridged traffic skips the firewall anyway.
            test = f"[ ! -e {proc} ] || {test}"
        checks.append(Check("sysctl", f"sysctl/{setting.key}", setting.value, test, fix,
                            words=f"{setting.key} is {setting.value}" + (" (or br_netfilter is not loaded)"
                                                                         if optional else ""),
                            params=(("key", setting.key), ("optional", optional))))
    for vm in plan.host.vms.values():
        checks.append(Check("vm-missing", f"vm/{vm.name}", vm.name,
                            cmd("virsh", "dominfo", vm.name) + " >/dev/null 2>&1" if bash else "",
                            "bash runbook.sh  # its VM step installs " + vm.name, skip_flag="NO_VMS",
                            words=f"VM {vm.name} is defined"))
        for nic in vm.networks:
            words = ("vm_has_network", vm.name, nic.network) + ((nic.mac.lower(),) if nic.mac else ())
            checks.append(Check("vm-network", f"vm/{vm.name}", nic.network, cmd(*words) if bash else "",
                                cmd("virsh", "attach-interface", vm.name, "network", nic.network,
                                    *(("--mac", nic.mac.lower()) if nic.mac else ()), "--config"),
                                skip_flag="NO_VMS", words=f"VM {vm.name} has a NIC on network {nic.network}"
                                + (f" with MAC {nic.mac.lower()}" if nic.mac else "")))
    if pm is not None:
        for result in pm.hook.vnetgen_checks(host=plan.host, plan=plan):
            checks.extend(result or ())
    return checks


def definition_tokens(checks: List[Check], network: str) -> Tuple[str, ...]:
    """Every net-dumpxml expectation of `network`: its definition is up to date when all hold."""
    tokens: List[str] = []
    for check in checks:
        if check.network == network:
            tokens.extend(check.tokens)
    return tuple(tokens)


def find(checks: List[Check], kind: str, obj: Optional[str] = None) -> List[Check]:
    return [c for c in checks if c.kind == kind and (obj is None or c.object == obj)]


# --- evaluation on observed facts -----------------------------------------------------------


class Evaluation:
    """The checks of one host plan evaluated on what the host runs (an `Observed`), in plan order.

    Checks that follow from a failed one are not evaluated: nothing more about a network that is
    missing, about a bridge that is missing, or about the NICs of a VM that is missing. Aspects
    whose capture is absent are listed under `not_audited`, never reported in sync or drifted.
    """

    def __init__(self, plan: Any, observed: Any, registry: Dict[str, CheckKind]) -> None:
        self.plan = plan
        self.obs = observed
        self.registry = registry
        self.result = HostAudit(plan.name, not_audited=list(observed.not_audited))
        self.skipped = {line.split(": ", 1)[0] for line in observed.not_audited}
        self.moot_networks: set = set()
        self.moot_objects: set = set()
        self.pending: Optional[Drift] = None

    def run(self) -> HostAudit:
        vm_checks: Dict[str, List[Check]] = {}
        for check in self.plan.checks:
            if check.kind == "vm-network":
                vm_checks.setdefault(check.object, []).append(check)
        for check in self.plan.checks:
            if self.pending and check.object != self.pending.object:
                self._flush()
            if check.network in self.moot_networks or check.object in self.moot_objects:
                continue
            if check.kind == "vm-network":
                if check is vm_checks[check.object][0]:
                    self._vm_networks(check.object, vm_checks[check.object])
                continue
            kind = self.registry.get(check.kind)
            if kind is None:
                self.skip(check.id, "no plugin evaluates this kind of check")
                continue
            kind.evaluate(check, self)
        self._flush()
        self._unknown_networks()
        return self.result

    def _flush(self) -> None:
        if self.pending:
            self.result.drift.append(self.pending)
            self.pending = None

    def drift(self, check: Check, actual: Any, expected: Any = None, fix: Optional[str] = None,
              severity: Optional[str] = None, obj: Optional[str] = None) -> None:
        self.result.drift.append(Drift(check.kind, obj or check.object,
                                       check.expected if expected is None else expected, actual,
                                       severity or check.severity, check.fix if fix is None else fix))

    def skip(self, what: str, why: str) -> None:
        """Say once that `what` was not audited, and why."""
        if what not in self.skipped:
            self.skipped.add(what)
            self.result.not_audited.append(f"{what}: {why}")

    # --- what kinds ask of the host ---------------------------------------------------------

    def ipv4(self, check: Check) -> List[Any]:
        return [ip for ip in self.obs.definitions[check.network].ips if ip.family == "ipv4"]

    def _stays_active(self, network: str) -> bool:
        """Running, and meant to: its fixes change the live network too. A network that is to be
        started gets them in its configuration (net-start, listed after them, applies them); one
        that is to be stopped is stopped by the fix listed before them."""
        return self.obs.networks[network].active and self.plan.networks[network].net.state == "active"

    def redefine(self, check: Check) -> str:
        """The network's definition from the bundle, and a restart if it runs (the live XML changes only then)."""
        name, entry = check.network, self.obs.networks[check.network]
        net = self.plan.networks[name].net
        steps = []
        if check.kind == "uuid":
            # libvirt refuses to redefine a network under another UUID: remove it first.
            steps += [cmd("virsh", "net-destroy", name)] if self._stays_active(name) else []
            steps += [cmd("virsh", "net-undefine", name)] if entry.persistent else []
            steps += [_redefine_fix(name)]
            steps += [cmd("virsh", "net-start", name)] if self._stays_active(name) else []
            steps += [cmd("virsh", "net-autostart", name)] if net.autostart else []
        else:
            steps += [_redefine_fix(name)]
            if self._stays_active(name):
                steps += [cmd("virsh", "net-destroy", name), cmd("virsh", "net-start", name)]
        return " && ".join(steps)

    def net_update(self, network: str, section: str, changes: Sequence[Tuple[str, str]]) -> str:
        """`virsh net-update`: DHCP changes apply to a running network without a restart."""
        if not self._stays_active(network):
            flags: Tuple[str, ...] = ("--config",)
        else:
            # A transient network has no configuration to update.
            flags = ("--live", "--config") if self.obs.networks[network].persistent else ("--live",)
        return " && ".join(cmd("virsh", "net-update", network, verb, section, xml, *flags) for verb, xml in changes)

    def port_bridge(self, check: Check) -> Optional[str]:
        """The bridge a port check is about: the one libvirt made for the network, or the host bridge."""
        if not check.network:
            return _name(check.object)
        if not self.obs.networks[check.network].active:
            return None  # its bridge exists only while it runs; starting it is the fix reported
        # Where libvirt put the ports, even under a name the profile did not ask for (bridge-name says so).
        return self.obs.definitions[check.network].bridge or self.plan.networks[check.network].bridge

    def ports_of(self, bridge: str) -> Optional[Tuple[str, ...]]:
        info = self.obs.networking.bridges.get(bridge)
        if info is None:
            return ()  # a running network without its bridge: none of its ports is there
        if not info.ports_known:
            self.skip(f"bridge/{bridge} ports", f"{self.obs.networking.tool} could not list them")
            return None
        return info.ports

    # --- guests ---------------------------------------------------------------------------

    def _vm_networks(self, obj: str, checks: List[Check]) -> None:
        """A VM's NICs against its profile NICs, matched one to one (pinned MACs first)."""
        vm = _name(obj)
        interfaces = self.obs.interfaces.get(vm)
        if interfaces is None:
            if self.obs.domains is not None and vm in self.obs.domains:
                self.skip(f"{obj} networks", "not captured")
            return
        # Candidates by (network, mac) and by network, each list in the VM's NIC order.
        by_mac: Dict[Tuple[Optional[str], str], Deque[int]] = {}
        by_network: Dict[Optional[str], Deque[int]] = {}
        for position, interface in enumerate(interfaces):
            if interface.type == "network":
                by_mac.setdefault((interface.source, interface.mac), deque()).append(position)
                by_network.setdefault(interface.source, deque()).append(position)
        used = set()

        def claim(candidates: Deque[int]) -> bool:
            while candidates:
                position = candidates.popleft()
                if position not in used:
                    used.add(position)
                    return True
            return False

        nics = self.plan.host.vms[vm].networks
        missing = []
        for index in sorted(range(len(nics)), key=lambda i: nics[i].mac is None):
            nic = nics[index]
            mac = nic.mac.lower() if nic.mac else None
            pool = by_mac.get((nic.network, mac), deque()) if mac else by_network.get(nic.network, deque())
            if not claim(pool):
                missing.append((index, mac))
        shown = [_interface(i) for i in interfaces]
        for index, mac in sorted(missing):
            check = checks[index]
            self.drift(check, shown, expected=f"{check.expected} {mac}" if mac else None)
        for position, interface in enumerate(interfaces):
            if position not in used:
                self.result.drift.append(Drift("vm-network", obj, None, _interface(interface), "warning",
                                               cmd("virsh", "detach-interface", vm, interface.type, "--mac",
                                                   interface.mac, "--config")))

    # --- what the profile does not mention -----------------------------------------------------

    def _unknown_networks(self) -> None:
        for name, entry in sorted(self.obs.networks.items()):
            if name not in self.plan.networks:
                self.result.drift.append(Drift("network-extra", f"network/{name}", None, _state(entry), "warning",
                                               _removal(entry)))


def _name(obj: str) -> str:
    return obj.split("/", 1)[1]


def _state(entry: Any) -> str:
    return "active" if entry.active else "inactive"


def _removal(entry: Any) -> str:
    """Stop and undefine a network: net-destroy only if it runs, net-undefine only if it is persistent."""
    steps = [cmd("virsh", "net-destroy", entry.name)] if entry.active else []
    steps += [cmd("virsh", "net-undefine", entry.name)] if entry.persistent else []
    return "; ".join(steps)


def _one(values: List[str]) -> Any:
    """A list of observed values as the report shows it: None, the one value, or the list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else sorted(values)


def _range_xml(text: str) -> str:
    start, end = text.split("-", 1)
    return f"<range start='{start}' end='{end}'/>"


def _automatic(port: str, bridge: str) -> bool:
    return port.startswith(AUTOMATIC_PORT_PREFIXES) or port == f"{bridge}-nic"


def _interface(interface: Any) -> str:
    where = interface.source or "-"
    if interface.type != "network":
        where = f"{interface.type}:{where}"
    return f"{where} {interface.mac}"


def drift_table(registry: Dict[str, CheckKind]) -> List[Tuple[str, str, str, str]]:
    """(kind, severity, what it compares, capture files) per kind: the table of docs/audit.md."""
    return [(k.name, k.severity, k.summary, ", ".join(f"`{c}`" for c in k.captures)) for k in registry.values()]


def iter_runbook_checks(checks: Iterable[Check]) -> List[Check]:
    """The checks the runbook's verify step runs (those with a bash test)."""
    return [c for c in checks if c.test]

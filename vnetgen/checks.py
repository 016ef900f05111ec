"""The checks that define "in sync": the audit evaluates them on facts, the runbook's verify step in bash."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .shell import cmd

# Interfaces a running host adds to libvirt's bridges by itself: guests' taps and libvirt's dummy NIC.
AUTOMATIC_PORT_PREFIXES = ("vnet", "virbr", "tap", "macvtap", "veth")


@dataclass(frozen=True)
class Check:
    kind: str                  # a drift kind of SPEC section 5
    object: str                # "network/default", "bridge/virbr0", "host", "vm/VM1"
    expected: Any              # JSON-able; None means "absent"
    test: str = ""             # literal bash test, true when in sync ("" = audit only)
    fix: str = ""              # literal command that removes the drift
    severity: str = "error"
    tokens: Tuple[str, ...] = ()   # net-dumpxml line expectations, for net_xml_match
    network: str = ""          # the network (for xml checks), or ""
    skip_flag: str = ""        # runbook option variable that turns this check off (NO_VMS)

    def describe(self) -> str:
        return f"{self.object}: {self.kind} {_show(self.expected)}"

    def holds(self) -> str:
        """What is true when this check passes, in words for the runbook's `ok:` lines."""
        name = self.object.split("/", 1)[-1]
        value = self.expected
        words = {
            "bridge-missing": f"bridge {name} exists",
            "port-missing": f"{value} is a port of {name}",
            "stp": f"stp is {'on' if value else 'off'} on {name}",
            "delay": f"forward delay of {name} is {value} s",
            "ip-forward": f"net.ipv4.ip_forward is {value}",
        }
        return words.get(self.kind, f"{self.describe()} holds")


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "absent" if value is None else str(value)


def _xml(kind: str, net: Any, expected: Any, tokens: Tuple[str, ...], fix: str) -> Check:
    test = cmd("net_xml_match", net.name, *tokens)
    return Check(kind, f"network/{net.name}", expected, test, fix, tokens=tokens, network=net.name)


def lease_line(lease: Any) -> str:
    """How libvirt prints a static lease (attribute order mac, name, ip)."""
    parts = [f"mac='{lease.mac.lower()}'" if lease.mac else "", f"name='{lease.name}'" if lease.name else "",
             f"ip='{lease.ip}'"]
    return "<host " + " ".join(p for p in parts if p) + "/>"


def lease_key(lease: Any) -> str:
    return f"{(lease.mac or '').lower()}|{lease.name or ''}|{lease.ip}"


def network_checks(plan: Any) -> List[Check]:
    """Checks of one libvirt network's definition, state and ports."""
    np_, net = plan, plan.net
    name, redefine = net.name, cmd("virsh", "net-define", f"networks/{net.name}.xml")
    checks = [Check("network-missing", f"network/{name}", True,
                    cmd("virsh", "net-info", name) + " >/dev/null 2>&1", redefine, network=name)]
    if net.state == "absent":
        return [Check("network-extra", f"network/{name}", None, "! " + checks[0].test,
                      cmd("virsh", "net-undefine", name), network=name)]
    active = net.state == "active"
    checks.append(Check("network-inactive", f"network/{name}", "active" if active else "inactive",
                        ("" if active else "! ") + cmd("net_info_is", name, "Active", "yes"),
                        cmd("virsh", "net-start" if active else "net-destroy", name), network=name))
    checks.append(Check("network-autostart", f"network/{name}", net.autostart,
                        cmd("net_info_is", name, "Autostart", "yes" if net.autostart else "no"),
                        cmd("virsh", "net-autostart", *(() if net.autostart else ("--disable",)), name),
                        network=name))
    mode = np_.mode
    forward = (f"has:<forward mode='{mode.forward}'",) if mode.forward else ("lacks:<forward",)
    checks.append(_xml("forward-mode", net, mode.forward or None, forward, redefine))
    if np_.bridge:
        checks.append(_xml("bridge-name", net, np_.bridge, (f"has:<bridge name='{np_.bridge}'",), redefine))
    if np_.stp is not None:
        checks.append(_xml("stp", net, np_.stp, (f"has:stp='{'on' if np_.stp else 'off'}'",), redefine))
    if np_.delay is not None:
        checks.append(_xml("delay", net, np_.delay, (f"has:delay='{np_.delay}'",), redefine))
    if net.mac:  # a generated MAC or UUID the profile did not pin is not drift
        checks.append(_xml("mac", net, np_.mac, (f"has:<mac address='{np_.mac}'/>",), redefine))
    if net.uuid:
        checks.append(_xml("uuid", net, np_.uuid, (f"has:<uuid>{np_.uuid}</uuid>",), redefine))
    if net.ip is not None:
        checks.append(_xml("ip-address", net, str(net.ip.with_prefixlen),
                           (f"has:<ip address='{net.ip.ip}' netmask='{net.ip.netmask}'",), redefine))
    elif mode.ip != "forbidden":
        checks.append(_xml("ip-address", net, None, ("lacks:<ip ",), redefine))
    dhcp = net.dhcp
    if dhcp is not None:
        checks.append(_xml("dhcp-range", net, f"{dhcp.start}-{dhcp.end}",
                           (f"has:<range start='{dhcp.start}' end='{dhcp.end}'/>",), redefine))
    elif net.ip is not None:
        checks.append(_xml("dhcp-range", net, None, ("lacks:<range ",), redefine))
    leases = dhcp.hosts if dhcp else []
    if net.ip is not None:
        tokens = tuple(f"has:{lease_line(l)}" for l in leases) + (f"count:{len(leases)}:<host ",)
        checks.append(_xml("dhcp-host", net, sorted(lease_key(l) for l in leases), tokens, redefine))
    if np_.bridge and mode.libvirt_bridge:
        for port in net.ports:
            checks.append(Check("port-missing", f"bridge/{np_.bridge}", port,
                                f"[ -e /sys/class/net/{np_.bridge}/brif/{port} ]",
                                cmd("brctl", "addif", np_.bridge, port), network=name))
        checks.append(Check("port-extra", f"bridge/{np_.bridge}", sorted(net.ports), "", "", network=name))
    return checks


def host_checks(plan: Any) -> List[Check]:
    """Every check of one host, in a stable order."""
    checks: List[Check] = []
    for net_plan in plan.networks.values():
        checks.extend(network_checks(net_plan))
    for bridge in plan.host.bridges.values():
        obj = f"bridge/{bridge.name}"
        checks.append(Check("bridge-missing", obj, bridge.name, f"[ -d /sys/class/net/{bridge.name}/bridge ]",
                            cmd("brctl", "addbr", bridge.name)))
        if bridge.external:
            continue
        checks.append(Check("stp", obj, bridge.stp,
                            f"[ \"$(cat /sys/class/net/{bridge.name}/bridge/stp_state)\" "
                            f"{'!=' if bridge.stp else '='} 0 ]",
                            cmd("brctl", "stp", bridge.name, "on" if bridge.stp else "off")))
        delay = plan.bridge_delay[bridge.name]
        checks.append(Check("delay", obj, delay,
                            f"[ \"$(cat /sys/class/net/{bridge.name}/bridge/forward_delay)\" = {delay * 100} ]",
                            cmd("brctl", "setfd", bridge.name, delay)))
        for port in bridge.ports:
            checks.append(Check("port-missing", obj, port, f"[ -e /sys/class/net/{bridge.name}/brif/{port} ]",
                                cmd("brctl", "addif", bridge.name, port)))
        checks.append(Check("port-extra", obj, sorted(bridge.ports)))
    forward = next((s for s in plan.sysctl if s.key == "net.ipv4.ip_forward"), None)
    if forward is not None:
        checks.append(Check("ip-forward", "host", int(forward.value),
                            f"[ \"$(cat /proc/sys/net/ipv4/ip_forward)\" = {forward.value} ]",
                            cmd("sysctl", "-w", f"net.ipv4.ip_forward={forward.value}")))
    for vm in plan.host.vms.values():
        checks.append(Check("vm-missing", f"vm/{vm.name}", vm.name,
                            cmd("virsh", "dominfo", vm.name) + " >/dev/null 2>&1",
                            "bash runbook.sh  # its VM step installs " + vm.name, skip_flag="NO_VMS"))
        for nic in vm.networks:
            words = ("vm_has_network", vm.name, nic.network) + ((nic.mac.lower(),) if nic.mac else ())
            checks.append(Check("vm-network", f"vm/{vm.name}", nic.network, cmd(*words),
                                cmd("virsh", "attach-interface", vm.name, "network", nic.network,
                                    *(("--mac", nic.mac.lower()) if nic.mac else ()), "--config"),
                                skip_flag="NO_VMS"))
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

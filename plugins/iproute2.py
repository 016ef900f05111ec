"""What every Linux target shares: iproute2 (`ip`, `bridge`) to change bridges, ports, addresses and
routes live, bash helpers the runbook's checks call, and the iproute2 JSON capture files with their
reading. A library for the target plugins (el7, el9, ubuntu), not a plugin itself."""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Dict, List, Optional, Sequence, Tuple

from vnetgen.api import (HOST_BRIDGES, Action, CaptureFile, CaptureReader, HostNetworking, Step, Target, FactError,
                         bridge_ports_command, cmd, ip_addrs_command, ip_links_command, ip_routes_command)

IP_LINK = "ip-link.json"
BRIDGE_LINK = "bridge-link.json"
IP_ADDR = "ip-addr.json"
IP_ROUTE = "ip-route.json"
# Layout 1 (before addresses and routes were captured): a host without brctl recorded these two.
IP_LINK_BRIDGE_V1 = "ip-link-bridge.json"
# What a capture without the iproute2 address and route files cannot say, and why.
LAYOUT_1_MISSING = {"addresses": f"{IP_ADDR} not captured", "routes": f"{IP_ROUTE} not captured"}

# Bash helpers for the runbook's checks and preflight; generic: no profile value appears in them.
HELPERS = r"""
link_is_up() {  # link_is_up DEV: administratively up
  local link
  link=$(ip -o link show dev "$1" 2>/dev/null) || return 1
  grep -q '[<,]UP[,>]' <<<"$link"
}

has_address() {  # has_address DEV ADDR/PREFIX
  local addrs
  addrs=$(ip -o addr show dev "$1" 2>/dev/null) || return 1
  grep -qF " $2 " <<<"$addrs"
}

has_default_route() {  # has_default_route GATEWAY DEV
  local routes
  routes=$(ip -4 route show default 2>/dev/null) || return 1
  grep -qF "default via $1 dev $2 " <<<"$routes " || grep -qxF "default via $1 dev $2" <<<"$routes"
}

default_routes() {  # default_routes: "GATEWAY DEV" of each IPv4 default route ("- DEV" without a gateway)
  ip -4 route show default 2>/dev/null | awk '{ gw = "-"; dev = ""
    for (i = 1; i < NF; i++) { if ($i == "via") gw = $(i + 1); if ($i == "dev") dev = $(i + 1) }
    if (dev != "") print gw, dev }'
}

routes_overlapping() {  # routes_overlapping PREFIX: "PREFIX DEV" of routes inside or around PREFIX (not default)
  { ip -4 -o route show root "$1"; ip -4 -o route show match "$1"; } 2>/dev/null | awk '$1 != "default" {
    dev = ""; for (i = 1; i < NF; i++) if ($i == "dev") dev = $(i + 1); print $1, dev }' | sort -u
}

dev_addresses() {  # dev_addresses DEV: its global IPv4 addresses, ADDR/PREFIX one per line
  ip -4 -o addr show dev "$1" scope global 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet") print $(i + 1) }'
}

remember_routes() {  # remember_routes BRIDGE: the IPv4 default routes before BRIDGE takes its ports (once)
  local file="$STATE/routes/$1"
  if [ -e "$file" ]; then return 0; fi
  mkdir -p "$STATE/routes"
  ip -4 route show default > "$file.part"
  mv "$file.part" "$file"
}

routes_remembered() { [ -e "$STATE/routes/$1" ]; }  # routes_remembered BRIDGE

restore_routes() {  # restore_routes BRIDGE: the default routes remember_routes kept, back as they were
  local line file="$STATE/routes/$1"
  while IFS= read -r line; do
    line=${line// linkdown/}
    line=${line// dead/}
    [ -n "$line" ] || continue
    # shellcheck disable=SC2086 # the line is `ip route` output: its words are ip's arguments
    ip route replace $line
  done < "$file"
  rm -f "$file"
}
"""


# port_resolvers DEV prints the resolvers the host has from DEV's own configuration, one per line;
# the preflight refuses to make DEV a bridge port that would lose them. Each target knows where they are.
NO_PORT_RESOLVERS = r"""
port_resolvers() {  # port_resolvers DEV: resolvers from DEV's own configuration (none this target knows of)
  :
}
"""


class IpRoute2Target(Target):
    """A target whose host changes bridges, addresses and routes with iproute2."""

    port_resolvers = NO_PORT_RESOLVERS

    def add_bridge(self, bridge: str) -> str:
        return cmd("ip", "link", "add", bridge, "type", "bridge")

    def delete_bridge(self, bridge: str) -> Tuple[str, ...]:
        return (cmd("ip", "link", "set", bridge, "down"), cmd("ip", "link", "delete", bridge, "type", "bridge"))

    def set_stp(self, bridge: str, on: bool) -> str:
        return cmd("ip", "link", "set", "dev", bridge, "type", "bridge", "stp_state", int(on))

    def set_delay(self, bridge: str, seconds: int) -> str:
        # centiseconds, where brctl setfd takes seconds
        return cmd("ip", "link", "set", "dev", bridge, "type", "bridge", "forward_delay", int(seconds * 100))

    def add_port(self, bridge: str, port: str) -> str:
        return cmd("ip", "link", "set", "dev", port, "master", bridge)

    def remove_port(self, bridge: str, port: str) -> str:
        return cmd("ip", "link", "set", "dev", port, "nomaster")

    def link_up(self, dev: str) -> str:
        return cmd("ip", "link", "set", dev, "up")

    def add_address(self, dev: str, cidr: str) -> str:
        return cmd("ip", "addr", "add", cidr, "dev", dev)

    def delete_address(self, dev: str, cidr: str) -> str:
        return cmd("ip", "addr", "del", cidr, "dev", dev)

    def replace_default_route(self, gateway: str, dev: str) -> str:
        return cmd("ip", "route", "replace", "default", "via", gateway, "dev", dev)

    def shell_helpers(self) -> str:
        return HELPERS + self.port_resolvers

    # --- runbook steps --------------------------------------------------------------------------

    def bridge_step(self, plan, bridge, rank: int) -> Step:
        """The runbook step that makes host bridge `bridge` live: each action is the fix of its audit
        check, guarded by the check's test; the undo gives the address (and default route) back to the
        first port before the bridge is deleted. Shared by every target that changes bridges live."""
        name = bridge.name
        checks = {(c.kind, c.object, str(c.expected)): c for c in plan.checks}

        def fixed(kind: str, obj: str, expected: object, record: str = "") -> Action:
            """The live change of a host bridge is the fix of its audit check, guarded by its test."""
            check = checks[(kind, obj, str(expected))]
            return Action(commands=(check.fix,), check=check.test, done=check.holds(), record=record)

        obj = f"bridge/{name}"
        actions = [fixed("bridge-missing", obj, name, record=f"bridge-{name}"), fixed("stp", obj, bridge.stp),
                   fixed("delay", obj, plan.bridge_delay[name]),
                   Action(commands=(self.link_up(name),), check=cmd("link_is_up", name), done=f"{name} is up")]
        ports = [fixed("port-missing", obj, port) for port in bridge.ports]
        if ports:
            # The default routes as they are before a port leaves the host's own routing: rollback.sh
            # restores them, whatever the profile says of the gateway.
            first = ports[0]
            ports[0] = Action(commands=(cmd("remember_routes", name), *first.commands), check=first.check,
                              done=first.done, record=first.record)
        actions += ports
        undo: List[Action] = []
        created = cmd("created", f"bridge-{name}")
        if bridge.ip is not None:
            addr = bridge.ip.with_prefixlen
            actions += [fixed("bridge-address", f"nic/{port}", addr) for port in bridge.ports]
            actions.append(fixed("bridge-address", obj, addr))
            if bridge.gateway is not None:
                actions.append(fixed("default-route", "host", f"via {bridge.gateway} dev {name}"))
            if bridge.ports:
                # Each part of the move is undone on its own: a run that stopped between taking the
                # address off the port and putting it on the bridge must still get it back on the port.
                port = bridge.ports[0]
                undo.append(Action(commands=(self.delete_address(name, addr),),
                                   check=f"! {created} || ! " + cmd("has_address", name, addr)))
                undo.append(Action(commands=(self.add_address(port, addr),),
                                   check=f"! {created} || " + cmd("has_address", port, addr)))
                if bridge.gateway is not None:
                    undo.append(Action(commands=(self.replace_default_route(str(bridge.gateway), port),),
                                       check=f"! {created} || " + cmd("has_default_route", bridge.gateway, port)))
        if bridge.ports:
            undo.append(Action(commands=(cmd("restore_routes", name),), check="! " + cmd("routes_remembered", name)))
        for port in bridge.ports:
            undo.append(Action(commands=(self.remove_port(name, port),),
                               check=f"! {created} || [ ! -e /sys/class/net/{name}/brif/{port} ]"))
        undo.append(Action(commands=(*self.delete_bridge(name), cmd("forget", f"bridge-{name}")), check=f"! {created}"))
        why = (f"guests of bridge-mode networks join {name} and, through "
               f"{', '.join(bridge.ports) or 'its ports'}, the host's LAN")
        if bridge.ip is not None and bridge.ports:
            why += f"; the host's address {bridge.ip} moves from {bridge.ports[0]} to the bridge in this one step"
        return Step((HOST_BRIDGES, rank, name), f"host bridge {name}", why, tuple(actions), tuple(undo))

    # --- observation --------------------------------------------------------------------------

    ip_required = True   # whether the iproute2 JSON files must be in a capture

    def capture_files(self) -> Sequence[CaptureFile]:
        required = self.ip_required
        resolvers = self.resolver_capture()
        return (
            CaptureFile(IP_LINK, tuple(ip_links_command()), "every link: bridges with stp and delay, ports "
                        "with their master, admin state", required=required, since=2, owner="iproute2"),
            CaptureFile(BRIDGE_LINK, tuple(bridge_ports_command()), "bridge ports", required=False,
                        owner="iproute2"),
            CaptureFile(IP_ADDR, tuple(ip_addrs_command()), "every address", required=required, since=2,
                        owner="iproute2"),
            CaptureFile(IP_ROUTE, tuple(ip_routes_command()), "the IPv4 routes (the default route)",
                        required=required, since=2, owner="iproute2"),
            *((resolvers,) if resolvers is not None else ()),
        )

    def resolver_capture(self) -> Optional[CaptureFile]:
        """The capture file (optional, layout 5) that holds the resolvers the host's own network
        configuration gives each interface, as this target's files or tool hold them; None: none."""
        return None

    def parse_resolvers(self, text: str, where: str) -> Tuple[Dict[str, Tuple[str, ...]], Dict[str, str]]:
        """(interface → its resolvers, interface → why its resolvers could not be read) from the
        resolver capture; an interface the configuration gives none is absent or maps to (). Raises
        FactError when the file as a whole cannot be read."""
        raise NotImplementedError

    def observe(self, reader: CaptureReader) -> HostNetworking:
        found = self.observe_links(reader)
        entry = self.resolver_capture()
        got = reader.read(entry.name) if entry is not None else None
        if got is None:
            found.missing["resolvers"] = reader.why(entry.name) if entry is not None else \
                f"target {self.name} records no resolvers"
            return found
        try:
            found.resolvers, unreadable = self.parse_resolvers(*got)
        except FactError as error:
            found.missing["resolvers"] = str(error)
            return found
        for dev, why in unreadable.items():
            found.resolvers.pop(dev, None)
            found.missing[f"resolvers {dev}"] = why
        return found

    def observe_links(self, reader: CaptureReader) -> HostNetworking:
        """Bridges, links, addresses and routes (without the resolvers)."""
        return observe_iproute2(reader) or observe_iproute2_v1(reader, required=True)


def resolver_list(values: Sequence[str], where: str) -> Tuple[Tuple[str, ...], str]:
    """(the resolvers, "") of addresses a configuration names, or ((), why) when one is no IP address."""
    found = []
    for value in values:
        try:
            found.append(str(ipaddress.ip_address(value.strip())))
        except ValueError:
            return (), f"{where}: resolver {value[:60]!r} is not an IP address"
    # once each, in order (netplan 0.106's `netplan get` prints a bridge's nameservers twice)
    return tuple(dict.fromkeys(found)), ""


def observe_iproute2(reader: CaptureReader) -> Optional[HostNetworking]:
    """Layout 2: bridges, ports, links from ip-link.json (ports from bridge-link.json too when captured),
    addresses from ip-addr.json, routes from ip-route.json. None when ip-link.json is absent."""
    from vnetgen.api import BridgeInfo, BridgePort, BridgePorts, IpAddrs, IpLinkBridges, IpLinks, IpRoutes, combine

    got = reader.read(IP_LINK)
    if got is None:
        return None
    links = {link.name: link for link in IpLinks().process(*got)}
    bridges = IpLinkBridges().process(*got)
    masters = [link for link in links.values() if link.master]
    ports_got = reader.read(BRIDGE_LINK)
    if ports_got is not None:
        ports = BridgePorts().process(*ports_got)
        found = combine(bridges, ports)
        # a port bridge -j link missed (it lists only bridge ports) but ip-link.json knows is still a port
        by_name = {b.name: set(b.ports) for b in found}
        for link in masters:
            by_name.setdefault(link.master, set()).add(link.name)
        found = tuple(BridgeInfo(name=b.name, bridge_id=b.bridge_id, stp=b.stp, delay=b.delay,
                                 ports=tuple(sorted(by_name[b.name])), ports_known=True) for b in found)
    else:
        found = combine(bridges, [BridgePort(name=link.name, master=link.master) for link in masters])
    result = HostNetworking(bridges={b.name: b for b in found}, tool="ip")
    addrs_got = reader.read(IP_ADDR)
    if addrs_got is not None:
        addresses: Dict[str, Tuple[str, ...]] = IpAddrs().process(*addrs_got)
        result.links = {name: dataclasses.replace(link, addresses=addresses.get(name, ()))
                        for name, link in links.items()}
    else:
        result.links = links
        result.missing["addresses"] = reader.why(IP_ADDR)
    routes_got = reader.read(IP_ROUTE)
    if routes_got is not None:
        result.routes = IpRoutes().process(*routes_got)
    else:
        result.missing["routes"] = reader.why(IP_ROUTE)
    return result


def observe_iproute2_v1(reader: CaptureReader, required: bool) -> Optional[HostNetworking]:
    """Layout 1 on a host without brctl: ip-link-bridge.json and bridge-link.json (bridges and ports only)."""
    from vnetgen.api import bridges_from_iproute

    got = reader.read(IP_LINK_BRIDGE_V1)
    if got is None:
        if not required:
            return None
        reader.require(IP_LINK)  # names the file a current capture.sh writes
    ports = reader.require(BRIDGE_LINK)
    found = bridges_from_iproute(got[0], got[1], ports[0], ports[1])
    return HostNetworking(bridges={b.name: b for b in found}, tool="ip", missing=dict(LAYOUT_1_MISSING))

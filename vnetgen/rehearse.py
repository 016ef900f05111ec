"""`vnetgen rehearse`: replay a profile's runbooks in a throw-away lab and report what happened.

The lab (vnetgen.lab) runs a real libvirtd and dnsmasq per host inside private namespaces; this
module maps a profile onto it — the profile's NICs become veths into lab LANs or cables between
lab hosts, its VMs become lab VMs on their networks' bridges — runs each host's runbook.sh, and
checks leases, reachability, idempotency, the audit and rollback. Nothing here touches the
machine's own networking: every command runs inside a lab namespace.

The helpers at the top (host_state, state_changes, run_script, capture_and_audit) are shared with
the lab tests.
"""
from __future__ import annotations

import concurrent.futures
import difflib
import hashlib
import importlib.util
import ipaddress
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from . import lab as labmod
from .validate import UnionFind

Echo = Callable[[str], None]

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2

# Lab subnets the profile cannot know: RFC 2544's benchmark range, never routed anywhere real.
_POOL = ipaddress.ip_network("198.18.0.0/15")
_WAN = ipaddress.ip_network("203.0.113.0/24")  # the lab router's "internet" side (RFC 5737)

_STATE_SCRIPT = r"""
echo '### virsh net-list --all'; virsh net-list --all
echo '### addresses'; ip -j addr show
echo '### links'; ip -j link show
echo '### ip route'; ip route
echo '### bridges'; ip -j -d link show type bridge
echo '### sysctl'
for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-*; do
  if [ -e "$f" ]; then echo "$f = $(cat "$f")"; fi
done
"""


# ---------------------------------------------------------------------------------------------
# Helpers shared with the tests
# ---------------------------------------------------------------------------------------------


def host_state(host: labmod.LabHost, ignore: Sequence[str] = ()) -> Dict[str, str]:
    """What rollback.sh must restore on a lab host: libvirt's networks, addresses, links (admin
    state, master), routes, bridges, forwarding sysctls, and the /etc files that differ from the
    machine's own.

    What the kernel changes by itself is left out, or a snapshot would depend on its timing:
    operational state (carrier comes a moment after a cable), IPv6 link-local addresses and the
    routes' `linkdown` flag. `ignore`: interfaces to leave out — lab VMs' taps, which (like real
    guests) outlive a rollback.
    """
    out = host.run(["bash", "-c", _STATE_SCRIPT], timeout=60).stdout
    raw: Dict[str, List[str]] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith("### "):
            key = line[4:]
            raw[key] = []
        elif key:
            raw[key].append(line.rstrip())
    skip = set(ignore)
    state = {"virsh net-list --all": _lines(raw.get("virsh net-list --all", [])),
             "ip route": _lines(line.replace(" linkdown", "") for line in raw.get("ip route", [])),
             "sysctl": _lines(raw.get("sysctl", []))}
    # iproute2's JSON, not its tables: each field by name.
    addrs = []
    for link in json.loads("\n".join(raw.get("addresses", [])) or "[]"):
        name = link.get("ifname", "")
        if name and name not in skip:
            kept = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info", ())
                    if not str(a.get("local", "")).lower().startswith("fe80:")]
            addrs.append(" ".join([name] + kept))
    state["ip -br addr"] = _lines(addrs)
    links = []
    for link in json.loads("\n".join(raw.get("links", [])) or "[]"):
        name = link.get("ifname", "")
        if name and name not in skip:
            up = "UP" in link.get("flags", ())
            master = link.get("master")
            links.append(f"{name} {'up' if up else 'down'}" + (f" master {master}" if master else ""))
    state["links"] = _lines(links)
    state["bridges"] = _lines(_bridges("\n".join(raw.get("bridges", []))))  # their ports: "links" (master)
    state["/etc"] = _lines(f"{path} {digest}" for path, digest in _etc_changes(host).items())
    return state


def _bridges(text: str) -> Iterator[str]:
    """`ip -j -d link show type bridge` as "NAME stp S delay D" lines (JSON, not a table's layout)."""
    for link in json.loads(text or "[]"):
        info = link.get("linkinfo", {}).get("info_data", {})
        yield f"{link.get('ifname')} stp {info.get('stp_state')} delay {info.get('forward_delay')}"


def _lines(lines: Iterable[str]) -> str:
    return "".join(line.rstrip("\n") + "\n" for line in lines)


def _digest(path: str) -> str:
    try:
        info = os.lstat(path)
    except OSError:
        return "absent"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    if stat.S_ISLNK(info.st_mode):
        return "symlink:" + os.readlink(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return "unreadable"
    return f"{hashlib.sha256(data).hexdigest()[:16]} mode {stat.S_IMODE(info.st_mode):o}"


def _etc_changes(host: labmod.LabHost) -> Dict[str, str]:
    """/etc paths whose content (as the host sees it) differs from this machine's: a file the
    runbook wrote and rollback.sh restored byte for byte stays in the overlay, yet is no change."""
    changes = {}
    for path in host.changed_files():
        if not path.startswith("/etc/"):
            continue
        seen = _digest(host.root_path(path))
        if seen != _digest(path):
            changes[path] = seen
    return changes


def state_changes(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    """Human-readable differences between two host_state() snapshots ([] when equal)."""
    lines: List[str] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, ""), after.get(key, "")
        if old == new:
            continue
        lines.append(f"{key}:")
        for line in difflib.ndiff(old.splitlines(), new.splitlines()):
            if line[:1] in "+-":
                lines.append("  " + line)
    return lines


def run_script(host: labmod.LabHost, host_dir: str, script: str, *args: str,
               env: Optional[Dict[str, str]] = None, timeout: float = 300):
    """Run a bundle script (runbook.sh, rollback.sh, capture.sh) of `host_dir` inside the lab host."""
    host.assert_private()
    return host.run(["bash", os.path.join(host_dir, script), *args], env=env, check=False, timeout=timeout)


def audit_available() -> bool:
    """Whether this vnetgen has `vnetgen audit` (vnetgen.audit)."""
    return importlib.util.find_spec("vnetgen.audit") is not None


def capture_and_audit(host: labmod.LabHost, host_dir: str, profile: Any, captures: str, pm: Any = None
                      ) -> Tuple[bool, str]:
    """Run the bundle's capture.sh inside the lab host, then audit the capture: (in_sync, report text)."""
    from .audit import audit_captures, format_text

    result = run_script(host, host_dir, "capture.sh", captures, timeout=120)
    if result.returncode != 0:
        return False, f"capture.sh failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    report = audit_captures(profile, captures, [host.name], pm=pm)
    return bool(report["in_sync"]), format_text(report)


def failed_step(output: str) -> Optional[str]:
    """The step a runbook's failure message names ("FAILED in step N"), or None."""
    for line in output.splitlines():
        if line.startswith("FAILED in step "):
            return line[len("FAILED in step "):].strip()
    return None


# ---------------------------------------------------------------------------------------------
# Mapping a profile onto a lab
# ---------------------------------------------------------------------------------------------


@dataclass
class Port:
    """One network interface of one profile VM, simulated by a lab VM."""

    host: str
    vm: str
    network: str
    mode: str
    bridge: str
    mac: Optional[str]
    segment: Any = None
    node: Optional[labmod.LabVm] = None
    how: str = ""                 # "dhcp" | "static" | "" (not attached)
    address: Optional[str] = None  # CIDR once configured
    gateway: Optional[str] = None
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.host}/{self.vm}"

    @property
    def ip(self) -> Optional[str]:
        return self.address.split("/")[0] if self.address else None


@dataclass
class Probe:
    """A reachability check with the outcome the profile implies."""

    what: str
    expected: bool
    actual: Optional[bool] = None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


@dataclass
class _Wiring:
    """How the lab stands in for the hosts' surroundings."""

    lans: Dict[str, labmod.LabLan] = field(default_factory=dict)       # by subnet
    upstream_ip: Dict[str, str] = field(default_factory=dict)          # host → address the router reaches
    dhcp_nodes: Set[Any] = field(default_factory=set)                  # L2 nodes with a DHCP server
    lines: List[str] = field(default_factory=list)                     # what was wired, for the report


class Rehearsal:
    """One lab, the bundle, and everything observed; `run()` drives it and returns the exit code."""

    def __init__(self, profile: Any, pm: Any, hosts: Optional[Sequence[str]] = None,
                 echo: Echo = print, workdir_parent: Optional[str] = None) -> None:
        from .plan import plan_profile
        from .review import run_order

        self.profile = profile
        self.pm = pm
        self.echo = echo
        everything = plan_profile(profile, pm)
        wanted = list(hosts) if hosts else list(profile.hosts)
        chosen = [p for p in everything if p.name in wanted]
        order = [name for name, _ in run_order(profile, chosen)]
        self.plans = sorted(chosen, key=lambda p: order.index(p.name))
        self.names = [p.name for p in self.plans]
        self.workdir_parent = workdir_parent
        self.segments = UnionFind()
        self.wiring = _Wiring()
        self.ports: List[Port] = []
        self.probes: List[Probe] = []
        self.problems: List[str] = []
        self._used = self._profile_subnets()
        self._pool = (net for net in _POOL.subnets(new_prefix=24) if not any(net.overlaps(u) for u in self._used))

    # -- small tools ---------------------------------------------------------------------

    def _profile_subnets(self) -> List[Any]:
        nets = [_WAN]
        for host in self.profile.hosts.values():
            nets += [n.ip.network for n in host.networks.values() if n.ip is not None]
            nets += [b.ip.network for b in host.bridges.values() if b.ip is not None]
            nets += [n.ip.network for n in host.nics.values() if n.ip is not None]
        return nets

    def _lan(self, lab: labmod.Lab, subnet: Any = None, dhcp: bool = True, gateway: Optional[str] = None,
             used: Sequence[Any] = ()) -> labmod.LabLan:
        """The lab LAN of `subnet` (shared by every host on it), or a fresh one from the pool."""
        subnet = ipaddress.ip_network(subnet) if subnet is not None else next(self._pool)
        key = str(subnet)
        if key in self.wiring.lans:
            return self.wiring.lans[key]
        taken = {ipaddress.ip_address(u) for u in used}
        if gateway is None:
            gateway = str(next(a for a in subnet.hosts() if a not in taken))
        taken.add(ipaddress.ip_address(gateway))
        rng = _free_range(subnet, taken) if dhcp else None
        lan = lab.lan(f"lan{len(self.wiring.lans)}", str(subnet), dhcp=rng is not None, gateway_ip=gateway,
                      dhcp_range=rng)
        self.wiring.lans[key] = lan
        if rng:
            self.wiring.dhcp_nodes.add(("lan", lan.name))
        self.wiring.lines.append(f"LAN {subnet} on the lab router (gateway {gateway}"
                                 + (f", DHCP {rng[0]}-{rng[1]})" if rng else ", no DHCP)"))
        return lan

    def _addresses_in(self, subnet: Any) -> List[str]:
        found = []
        for host in self.profile.hosts.values():
            for item in list(host.bridges.values()) + list(host.nics.values()):
                if item.ip is not None and item.ip.ip in subnet:
                    found.append(str(item.ip.ip))
        return found

    # -- wiring --------------------------------------------------------------------------

    def wire(self, lab: labmod.Lab) -> Dict[str, labmod.LabHost]:
        """Lab hosts for the chosen hosts, with their NICs, cables, LANs and an upstream route."""
        router = lab.router()
        hosts = {plan.name: lab.host(plan.name) for plan in self.plans}
        port_bridge: Dict[Tuple[str, str], str] = {}
        for plan in self.plans:
            for bridge in plan.host.bridges.values():
                for port in bridge.ports:
                    port_bridge[(plan.name, port)] = bridge.name
            for np_ in plan.networks.values():
                if np_.bridge and np_.mode.libvirt_bridge and np_.net.state != "absent":
                    for port in np_.net.ports:
                        port_bridge[(plan.name, port)] = np_.bridge
        cables = {}
        for link in self.profile.links:
            a, b = link.ends
            if a.host in hosts and b.host in hosts:
                cables[(a.host, a.nic)] = (b.host, b.nic)
                cables[(b.host, b.nic)] = (a.host, a.nic)
        cabled: Set[Tuple[str, str]] = set()
        for plan in self.plans:
            self._wire_host(lab, plan, hosts, port_bridge, cables, cabled)
            release = labmod.lab_os_release(plan.target)
            if release:   # the host says which OS it stands for (`vnetgen import` reads it)
                hosts[plan.name].set_os_release(release)
        self._uplinks(lab, hosts)
        for plan in self.plans:
            if "NetworkManager" in plan.target.lab_services:
                self._networkmanager(hosts[plan.name])
        for plan in self.plans:
            for np_ in plan.networks.values():
                # Routed networks need upstream to know them (the seed: "put static routes").
                if np_.mode.forward in ("route", "open") and np_.net.ip is not None and np_.net.state == "active":
                    via = self.wiring.upstream_ip[plan.name]
                    router.add_route(str(np_.net.ip.network), via)
                    self.wiring.lines.append(f"upstream route {np_.net.ip.network} via {plan.name} ({via}), "
                                             f"as routed mode requires")
        return hosts

    def _networkmanager(self, host: labmod.LabHost) -> None:
        """NetworkManager runs the host, each wired NIC with a profile of its own, as on an installed host."""
        host.start_networkmanager()
        for ifname in host.interfaces():
            if ifname != "lo":
                host.nm_adopt(ifname)
        self.wiring.lines.append(f"{host.name}: NetworkManager runs; each NIC has its own profile (System NIC)")

    def _hwaddr(self, plan: Any, nic: str) -> Optional[str]:
        found = plan.host.nics.get(nic)
        return found.hwaddr.lower() if found is not None and found.hwaddr else None

    def _wire_host(self, lab: labmod.Lab, plan: Any, hosts: Dict[str, labmod.LabHost],
                   port_bridge: Dict[Tuple[str, str], str], cables: Dict, cabled: Set) -> None:
        name, host = plan.name, hosts[plan.name]
        done: Set[str] = set()
        for index, bridge in enumerate(plan.host.bridges.values()):
            node = ("br", name, bridge.name)
            self.segments.find(node)
            if bridge.external:
                # The profile says it exists already: make it, joined to a LAN of its own.
                host.run(["ip", "link", "add", bridge.name, "type", "bridge"])
                host.run(["ip", "link", "set", bridge.name, "up"])
                lan = self._lan(lab)
                uplink = self._free_ifname(plan, f"rhx{index}")
                lab.nic(host, uplink, lan)
                host.run(["ip", "link", "set", uplink, "master", bridge.name])
                self.segments.join(node, ("lan", lan.name))
                self.wiring.lines.append(f"{name}: external bridge {bridge.name} made by the lab, "
                                         f"joined to LAN {lan.subnet}")
                continue
            for number, port in enumerate(bridge.ports):
                done.add(port)
                if number == 0 and bridge.ip is not None:
                    subnet = bridge.ip.network
                    gateway = str(bridge.gateway) if bridge.gateway is not None else None
                    lan = self._lan(lab, subnet, gateway=gateway, used=self._addresses_in(subnet))
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port), ip=str(bridge.ip), gateway=gateway)
                    self.wiring.upstream_ip.setdefault(name, str(bridge.ip.ip))
                    self.wiring.lines.append(f"{name}: NIC {port} on LAN {subnet} holding {bridge.ip}"
                                             + (f", default via {gateway}" if gateway else "")
                                             + f" (the runbook moves it to {bridge.name})")
                elif number == 0:
                    lan = self._lan(lab)
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
                    self.wiring.lines.append(f"{name}: NIC {port} on LAN {lan.subnet}")
                else:
                    # A second cable into the same LAN would be a loop: a dead-end segment instead.
                    lan = self._lan(lab, dhcp=False)
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
                    self.wiring.lines.append(f"{name}: NIC {port} on a LAN of its own ({lan.subnet})")
                self.segments.join(node, ("lan", lan.name))
        for port, bridge in ((p, b) for (h, p), b in port_bridge.items() if h == name):
            if port in done:
                continue
            done.add(port)
            node = ("br", name, bridge)
            far = cables.get((name, port))
            if far is not None:
                self.segments.join(node, ("br", far[0], port_bridge.get(far, "?")))
                if (name, port) not in cabled:
                    far_plan = next(p for p in self.plans if p.name == far[0])
                    lab.link(host, port, hosts[far[0]], far[1], mac_a=self._hwaddr(plan, port),
                             mac_b=self._hwaddr(far_plan, far[1]))
                    cabled.update({(name, port), far})
                    self.wiring.lines.append(f"cable {name}:{port} — {far[0]}:{far[1]}")
                continue
            lan = self._lan(lab, dhcp=False)
            lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
            self.segments.join(node, ("lan", lan.name))
            self.wiring.lines.append(f"{name}: NIC {port} on a LAN of its own ({lan.subnet}); "
                                     "the far end of its link is not rehearsed")
        for nic in plan.host.nics.values():
            if nic.name in done:
                continue
            if nic.ip is not None:
                lan = self._lan(lab, nic.ip.network, used=self._addresses_in(nic.ip.network))
                lab.nic(host, nic.name, lan, mac=self._hwaddr(plan, nic.name), ip=str(nic.ip))
                self.wiring.upstream_ip.setdefault(name, str(nic.ip.ip))
                self.wiring.lines.append(f"{name}: NIC {nic.name} on LAN {nic.ip.network} holding {nic.ip}")
            else:
                lan = self._lan(lab, dhcp=False)
                lab.nic(host, nic.name, lan, mac=self._hwaddr(plan, nic.name))
                self.wiring.lines.append(f"{name}: NIC {nic.name} on a LAN of its own ({lan.subnet})")

    def _free_ifname(self, plan: Any, wanted: str) -> str:
        taken = set(plan.host.nics) | set(plan.host.bridges) | {n.bridge for n in plan.networks.values() if n.bridge}
        for p in plan.host.networks.values():
            taken.update(p.ports)
        candidate, number = wanted, 0
        while candidate in taken:
            number += 1
            candidate = f"{wanted}{number}"
        return candidate

    def _uplinks(self, lab: labmod.Lab, hosts: Dict[str, labmod.LabHost]) -> None:
        """A host whose profile gives it no way out gets one (every real host has one): an uplink
        NIC on a lab LAN, its default route, so NAT to the "internet" host can be shown."""
        lan = None
        for plan in self.plans:
            has_default = any(b.gateway is not None and b.ports and not b.external for b in plan.host.bridges.values())
            if has_default:
                continue
            if lan is None:
                lan = self._lan(lab, dhcp=False)
            address = lan.subnet.network_address + 10 + len(self.wiring.upstream_ip)
            ifname = self._free_ifname(plan, "uplink0")
            lab.nic(hosts[plan.name], ifname, lan, ip=f"{address}/{lan.subnet.prefixlen}", gateway=lan.gateway_ip)
            self.wiring.upstream_ip[plan.name] = str(address)
            self.wiring.lines.append(f"{plan.name}: uplink {ifname} {address}/{lan.subnet.prefixlen} on LAN "
                                     f"{lan.subnet}, default via {lan.gateway_ip} (stands in for its way out)")

    # -- guests --------------------------------------------------------------------------

    def attach_vms(self, lab: labmod.Lab, hosts: Dict[str, labmod.LabHost]) -> None:
        """A lab VM per VM interface, on its network's bridge; DHCP where the segment has a server."""
        for plan in self.plans:
            for np_ in plan.networks.values():
                if np_.bridge and np_.net.dhcp is not None and np_.net.state == "active":
                    self.wiring.dhcp_nodes.add(("br", plan.name, np_.bridge))
        dhcp_roots = {self.segments.find(node) for node in self.wiring.dhcp_nodes}
        statics: Dict[Any, Iterator[Any]] = {}
        names: Set[str] = set()
        for plan in self.plans:
            wanted = [(vm.name if len(vm.networks) == 1 else f"{vm.name}#{index}", nic.network,
                       nic.mac.lower() if nic.mac else None)
                      for vm in plan.host.vms.values() for index, nic in enumerate(vm.networks)]
            # A network no VM of the profile uses still gets one guest, so it is shown working too.
            used = {network for _, network, _ in wanted}
            wanted += [(f"probe-{name}", name, None) for name, np_ in plan.networks.items()
                       if name not in used and np_.net.state == "active" and np_.bridge]
            for vm_name, network, mac in wanted:
                np_ = plan.networks[network]
                port = Port(plan.name, vm_name, network, np_.net.mode, np_.bridge or "", mac)
                self.ports.append(port)
                if np_.net.state != "active" or not np_.bridge:
                    port.note = f"not attached: network {network} is {np_.net.state}"
                    continue
                port.segment = self.segments.find(("br", plan.name, np_.bridge))
                port.node = lab.vm(hosts[plan.name], _vm_name(plan.name, vm_name, names), np_.bridge, mac=mac)
                if port.segment in dhcp_roots:
                    port.how = "dhcp"
                    continue
                port.how = "static"
                net = np_.net
                if net.ip is not None:
                    # Routed/open networks without DHCP: guests are set statically (the seed's routed mode).
                    pool = statics.setdefault(port.segment, _top_down(net.ip.network, {net.ip.ip}))
                    port.address = f"{next(pool)}/{net.ip.network.prefixlen}"
                    port.gateway = str(net.ip.ip)
                else:
                    if port.segment not in statics:
                        statics[port.segment] = _top_down(next(self._pool), set())
                    port.address = f"{next(statics[port.segment])}/24"
                port.node.set_static(port.address, port.gateway)
                if port.gateway is None:
                    # An on-link default route: any address is then tried on the segment itself,
                    # so "unreachable" proves the segment is closed, not just a missing route.
                    port.node.ip("route", "replace", "default", "dev", "eth0")

    def leases(self) -> None:
        """DHCP for every port that takes it, concurrently (the STP and ping-check waits overlap)."""
        wanting = [p for p in self.ports if p.how == "dhcp"]
        if not wanting:
            return
        timeout = max(20.0, 8.0 + 4.0 * len(wanting))

        def one(port: Port) -> None:
            try:
                lease = port.node.dhcp(timeout)
            except labmod.LabError as exc:
                port.note = "no DHCP lease: " + str(exc).splitlines()[0]
                return
            port.address, port.gateway = lease.cidr, lease.router

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(wanting)) as pool:
            list(pool.map(one, wanting))

    # -- checks --------------------------------------------------------------------------

    def plan_probes(self, lab: labmod.Lab) -> List[Tuple[Probe, Callable[[], bool]]]:
        router = lab.router()
        internet = router.internet_ip
        probes: List[Tuple[Probe, Callable[[], bool]]] = []

        def add(what: str, expected: bool, why: str, action: Callable[[], bool]) -> None:
            probes.append((Probe(what, expected, why=why), action))

        live = [p for p in self.ports if p.address and p.node is not None]
        first_on: Dict[Any, Port] = {}
        for port in live:
            node = port.node
            if port.gateway:
                add(f"{port.label} → its gateway {port.gateway}", True, "",
                    lambda n=node, g=port.gateway: n.ping(g, timeout=8))
            if port.segment in first_on:
                head = first_on[port.segment]
                add(f"{head.label} → {port.label} {port.ip}", True, "same L2 segment",
                    lambda n=head.node, a=port.ip: n.ping(a, timeout=8))
            else:
                first_on[port.segment] = port
            closed = port.gateway is None
            why = "a closed segment: no gateway, nothing beyond the guests" if closed else \
                f"{port.mode} network" + (" (via another host)" if port.how == "dhcp" and port.mode == "isolated" else "")
            add(f"{port.label} → internet host {internet}", not closed, why,
                lambda n=node, c=closed: n.ping(internet, timeout=2 if c else 8))
            if closed:
                for host_name, address in sorted(self.wiring.upstream_ip.items()):
                    add(f"{port.label} → host {host_name} {address}", False, "isolated from the host's LAN",
                        lambda n=node, a=address: n.ping(a, timeout=2))
            if port.mode == "route" and port.how == "static":
                add(f"internet host → {port.label} {port.ip} (its own address, no NAT)", True,
                    "upstream has the static route",
                    lambda a=port.ip: router.internet.ping(a, timeout=8))
        for plan in self.plans:
            for bridge in plan.host.bridges.values():
                if bridge.ip is not None and bridge.ports and not bridge.external:
                    add(f"LAN router → host {plan.name} {bridge.ip.ip} (now on {bridge.name})", True,
                        "the host keeps its address",
                        lambda a=str(bridge.ip.ip): router.ping(a, timeout=8))
        return probes

    def probe(self, lab: labmod.Lab) -> None:
        """Every reachability check, concurrently (an expected miss waits out its timeout)."""
        planned = self.plan_probes(lab)
        if not planned:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(planned))) as pool:
            results = list(pool.map(lambda item: _safe(item[1]), planned))
        for (probe, _), actual in zip(planned, results):
            probe.actual = actual
            self.probes.append(probe)

    # -- the whole rehearsal -------------------------------------------------------------

    def run(self) -> int:
        from .bundle import build, write

        echo = self.echo
        t0 = time.monotonic()
        profile_file = os.path.basename(self.profile.path or "profile.yaml")
        echo(f"rehearsal of {profile_file}: host{'s' if len(self.names) > 1 else ''} {', '.join(self.names)} "
             "in a throw-away lab (private namespaces; this machine's networking is not touched)")
        with labmod.Lab(workdir_parent=self.workdir_parent) as lab:
            bundle_dir = os.path.join(lab.workdir, "bundle")
            write(build(self.profile, self.pm, profile_file=profile_file, hosts=self.names), bundle_dir)
            hosts = self.wire(lab)
            echo("\n== lab")
            echo(f"   router {lab.router().name}, internet host {lab.router().internet_ip}")
            for line in self.wiring.lines:
                echo("   " + line)
            before = {name: host_state(host) for name, host in hosts.items()}
            applied: List[str] = []
            ok = True
            for name in self.names:
                ok = self._apply(hosts[name], os.path.join(bundle_dir, name))
                applied.append(name)
                if not ok:
                    break
            if ok:
                echo("\n== virtual machines (simulated: a namespace per guest interface)")
                self.attach_vms(lab, hosts)
                self.leases()
                for port in self.ports:
                    echo("   " + _port_line(port))
                    if port.note and port.how:
                        self.problems.append(f"{port.label}: {port.note}")
                echo("\n== reachability")
                self.probe(lab)
                for probe in self.probes:
                    verdict = "ok  " if probe.ok else "FAIL"
                    seen = "reached" if probe.actual else "not reached"
                    expect = "" if probe.ok else f" (expected {'reached' if probe.expected else 'not reached'})"
                    echo(f"   {verdict} {probe.what}: {seen}{expect}" + (f" — {probe.why}" if probe.why else ""))
                    if not probe.ok:
                        self.problems.append(f"reachability: {probe.what}")
                echo("\n== second run (idempotency)")
                for name in self.names:
                    self._second_run(hosts[name], os.path.join(bundle_dir, name))
                echo("\n== audit")
                for name in self.names:
                    self._audit(hosts[name], os.path.join(bundle_dir, name), os.path.join(lab.workdir, "captures"))
            echo("\n== rollback")
            for name in reversed(applied):
                self._rollback(hosts[name], os.path.join(bundle_dir, name), before[name])
        seconds = time.monotonic() - t0
        if self.problems:
            echo(f"\nverdict: FAILED ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}, "
                 f"{seconds:.0f} s)")
            for problem in self.problems:
                echo(f"  - {problem}")
            return EXIT_FAILED
        echo(f"\nverdict: PASSED — runbooks applied, guests and reachability as the profile implies, second "
             f"runs changed nothing, rollback restored every host ({seconds:.0f} s)")
        return EXIT_OK

    def _apply(self, host: labmod.LabHost, host_dir: str) -> bool:
        echo = self.echo
        echo(f"\n== {host.name}: runbook.sh --no-vms (VMs are simulated by the lab instead)")
        t0 = time.monotonic()
        result = run_script(host, host_dir, "runbook.sh", "--no-vms")
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            echo("   " + line)
        echo(f"   (exit {result.returncode}, {time.monotonic() - t0:.1f} s)")
        if result.returncode != 0:
            step = failed_step(result.stderr)
            self.problems.append(f"{host.name}: runbook.sh failed" + (f" in step {step}" if step else "")
                                 + f" (exit {result.returncode})")
            return False
        return True

    def _second_run(self, host: labmod.LabHost, host_dir: str) -> None:
        result = run_script(host, host_dir, "runbook.sh", "--no-vms")
        last = (result.stdout.strip().splitlines() or [""])[-1]
        if result.returncode == 0 and last.startswith("nothing to change"):
            self.echo(f"   ok   {host.name}: {last}")
            return
        self.echo(f"   FAIL {host.name}: exit {result.returncode}: {last}")
        for line in result.stdout.splitlines():
            if line.startswith("   + "):
                self.echo(f"        changed again: {line[5:]}")
        self.problems.append(f"{host.name}: the second run was not a no-op")

    def _audit(self, host: labmod.LabHost, host_dir: str, captures: str) -> None:
        if not audit_available():
            self.echo(f"   --   {host.name}: not audited (this vnetgen has no audit command)")
            return
        try:
            in_sync, text = capture_and_audit(host, host_dir, self.profile, captures, pm=self.pm)
        except Exception as exc:  # an unreadable capture is a finding, not a crash of the rehearsal
            in_sync, text = False, f"{type(exc).__name__}: {exc}"
        self.echo(f"   {'ok  ' if in_sync else 'FAIL'} {host.name}: capture.sh + vnetgen audit --captures")
        for line in text.rstrip().splitlines():
            self.echo("        " + line)
        if not in_sync:
            self.problems.append(f"{host.name}: the audit found drift right after the runbook")

    def _rollback(self, host: labmod.LabHost, host_dir: str, before: Dict[str, str]) -> None:
        echo = self.echo
        result = run_script(host, host_dir, "rollback.sh")
        if result.returncode != 0:
            echo(f"   FAIL {host.name}: rollback.sh exit {result.returncode}")
            for line in (result.stdout + result.stderr).rstrip().splitlines():
                echo("        " + line)
            self.problems.append(f"{host.name}: rollback.sh failed")
            return
        taps = [vm.host_ifname for vm in host.vms]
        changes = state_changes(host_state_ignoring(before, taps), host_state(host, ignore=taps))
        again = run_script(host, host_dir, "rollback.sh")
        last = (again.stdout.strip().splitlines() or [""])[-1]
        if changes:
            echo(f"   FAIL {host.name}: rollback.sh left the host different from before the runbook:")
            for line in changes:
                echo("        " + line)
            self.problems.append(f"{host.name}: rollback did not restore the state before the runbook")
        else:
            echo(f"   ok   {host.name}: rollback.sh restored the state before the runbook "
                 "(networks, addresses, routes, bridges, sysctl, /etc)")
        if again.returncode == 0 and last == "nothing to undo":
            echo(f"   ok   {host.name}: a second rollback.sh: nothing to undo")
        else:
            echo(f"   FAIL {host.name}: a second rollback.sh: exit {again.returncode}: {last}")
            self.problems.append(f"{host.name}: the second rollback was not a no-op")


def host_state_ignoring(state: Dict[str, str], ignore: Sequence[str]) -> Dict[str, str]:
    """A host_state() snapshot as if taken with `ignore` (for a snapshot taken before the taps existed)."""
    skip = set(ignore)
    copy = dict(state)
    for key in ("ip -br addr", "links"):
        copy[key] = _lines(line for line in state.get(key, "").splitlines() if line.split()[0] not in skip)
    return copy


def _safe(action: Callable[[], bool]) -> bool:
    try:
        return bool(action())
    except labmod.LabError:
        return False


def _vm_name(host: str, vm: str, taken: Set[str]) -> str:
    """A lab node name for a guest interface: unique across hosts, safe for the lab."""
    base = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in f"{host}.{vm}")[:60]
    name, number = base, 0
    while name in taken:
        number += 1
        name = f"{base[:56]}-{number}"
    taken.add(name)
    return name


def _top_down(subnet: Any, taken: Set[Any]) -> Iterator[Any]:
    """Addresses from the top of `subnet` down, skipping `taken` (DHCP ranges sit low by habit)."""
    for address in reversed(list(subnet.hosts())):
        if address not in taken:
            yield address


def _free_range(subnet: Any, taken: Set[Any]) -> Optional[Tuple[str, str]]:
    """The longest run of free host addresses (at most 100) for a lab LAN's DHCP range."""
    best: Tuple[int, Any, Any] = (0, None, None)
    start = prev = None
    length = 0
    for address in list(subnet.hosts()) + [None]:
        if address is not None and address not in taken:
            if start is None:
                start, length = address, 0
            length += 1
            prev = address
            if length > best[0]:
                best = (length, start, prev)
        else:
            start = None
    if best[0] == 0:
        return None
    first = best[1]
    last = min(best[2], first + 99)
    return str(first), str(last)


def _port_line(port: Port) -> str:
    where = f"{port.label} on {port.network} ({port.mode}, bridge {port.bridge or '-'})"
    if not port.how:
        return f"--   {where}: {port.note}"
    if port.how == "dhcp":
        if not port.address:
            return f"FAIL {where}: {port.note}"
        return f"ok   {where}: DHCP lease {port.address}, router {port.gateway or 'none'}"
    return f"ok   {where}: static {port.address}" + (f", gateway {port.gateway}" if port.gateway else
                                                      " (no gateway on this segment)")


def rehearse(profile: Any, pm: Any, hosts: Optional[Sequence[str]] = None, echo: Echo = print,
             workdir_parent: Optional[str] = None) -> int:
    """Rehearse `hosts` of a loaded profile (default: all, in REVIEW.md's run order): the exit code.

    0 everything behaved as the profile implies; 1 something did not (the report says what);
    2 this machine cannot run a lab (no root, no libvirt, no namespaces) — with the reason.
    """
    ok, reason = labmod.lab_available()
    if not ok:
        echo(unavailable_message(reason))
        return EXIT_UNAVAILABLE
    return Rehearsal(profile, pm, hosts, echo, workdir_parent).run()


def unavailable_message(reason: str) -> str:
    return (f"vnetgen rehearse: cannot run a lab here: {reason}. It needs root and libvirt's daemon, "
            "dnsmasq, iproute2, bridge-utils and busybox (Debian: apt-get install --no-install-recommends "
            "libvirt-daemon libvirt-clients dnsmasq-base iptables bridge-utils busybox iputils-ping iproute2).")

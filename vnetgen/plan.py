"""Per-host plans: networks with every libvirt default resolved, sysctl, checks, steps, artifacts."""
from __future__ import annotations

import hashlib
import uuid as uuidlib
from dataclasses import field
from typing import Any, Dict, Iterator, List, Optional

from . import model as m
from .api import Artifact, CaptureFile, Check, Mode, Step, Sysctl, Target
from .dataclassc import dataclass
from .plugins import modes as plugin_modes
from .plugins import targets as plugin_targets

# A fixed namespace, so derived UUIDs are the same on any machine, any day.
_UUID_NAMESPACE = uuidlib.UUID("5b6f7a8e-2c1d-4e3f-9a0b-76e6e7a17a11")


_IP_FORWARD = Sysctl("net.ipv4.ip_forward", "1",
                     "a network here forwards guests' traffic; libvirt sets ip_forward when the network "
                     "starts, but not persistently, and other tools may clear it")


# libvirt sets it when it starts a nat/route network with an IPv6 <ip>, not persistently.
_IP6_FORWARD = Sysctl("net.ipv6.conf.all.forwarding", "1",
                      "a network here routes guests' IPv6 traffic; libvirt sets it when the network starts, but "
                      "not persistently (a host that learns its own address by router advertisement needs "
                      "accept_ra=2 on its uplink: see the warnings)")


@dataclass
class NetworkPlan:
    """A network of a host with every libvirt default resolved (bridge, MAC, UUID, STP), and its XML."""
    net: m.Network
    mode: Mode
    bridge: Optional[str]
    mac: Optional[str]
    uuid: str
    stp: Optional[bool]
    delay: Optional[int]
    xml: str = ""
    forward: str = ""   # the <forward mode> of its XML ("": none); a plugin may pick it, e.g. direct's vepa
    forward_dev: Optional[str] = None   # the dev= net-dumpxml shows on <forward>

    @property
    def name(self) -> str:
        return self.net.name

    @property
    def details(self) -> List[str]:
        """Settings beyond the seed's that the profile sets (mtu, NAT ranges, …), in words for REVIEW.md."""
        from .netfields import details

        return details(self.net)


@dataclass
class HostPlan:
    """Everything a host's bundle is made from: its network plans, sysctl, checks, steps and files."""
    host: m.Host
    target: Target
    profile: m.Profile
    networks: Dict[str, NetworkPlan] = field(default_factory=dict)
    bridge_delay: Dict[str, int] = field(default_factory=dict)
    sysctl: List[Sysctl] = field(default_factory=list)
    checks: List[Check] = field(default_factory=list)
    steps: List[Step] = field(default_factory=list)
    artifacts: List[Artifact] = field(default_factory=list)
    plugin_captures: List[CaptureFile] = field(default_factory=list)   # plugins' files of the capture layout
    hook_cases: List[Any] = field(default_factory=list)   # plugins' parts of hooks/network (api.HookCase)
    helpers: str = ""                                  # bash functions of the target and plugins
    previous: Optional["HostPlan"] = None   # the plan of `build --against OLD`, when given
    # False in an audit's plans: no runbook is made, so checks need no bash `test` (a plugin's
    # vnetgen_checks may leave it "" then); their `fix` is still what the audit reports.
    runbook: bool = True

    @property
    def name(self) -> str:
        return self.host.name

    def links_of(self, nic: str) -> List[str]:
        """The far ends ('host:nic') cabled to this host's `nic`."""
        far = []
        for link in self.profile.links:
            for near, other in (link.ends, link.ends[::-1]):
                if (near.host, near.nic) == (self.host.name, nic):
                    far.append(f"{other.host}:{other.nic}")
        return far


def derived_mac(host: str, network: str) -> str:
    """A stable MAC in libvirt's 52:54:00 range, from the host and network names."""
    digest = hashlib.sha256(f"vnetgen-mac\0{host}\0{network}".encode()).digest()
    return "52:54:00:" + digest[:3].hex(":")


_NAMESPACE_BYTES = _UUID_NAMESPACE.bytes


def derived_uuid(host: str, network: str) -> str:
    """str(uuid.uuid5(_UUID_NAMESPACE, "HOST/NETWORK")), spelled out: RFC 4122's SHA-1 name-based UUID
    without building UUID objects (a fleet derives one for every network of every host)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{host}/{network}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50   # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80   # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def normal_uuid(text: str) -> str:
    return str(uuidlib.UUID(text))


# Bridge names libvirt's stock networks use (the `default` network's virbr0, on nearly every libvirt
# host): an unpinned bridge never takes one, or its network could not start beside the stock one.
STOCK_BRIDGES = ("virbr0",)


def resolve_bridges(host: m.Host, modes: Dict[str, Mode]) -> Dict[str, Optional[str]]:
    """Pinned bridge names stay; libvirt-created bridges without one get the lowest free virbrN that
    no stock libvirt network uses."""
    taken = ({n.bridge for n in host.networks.values() if n.bridge} | set(host.bridges) | set(host.nics)
             | set(STOCK_BRIDGES))
    names: Dict[str, Optional[str]] = {}
    counter = 0
    for net in host.networks.values():
        if net.bridge or net.mode not in modes or not modes[net.mode].libvirt_bridge:
            names[net.name] = net.bridge
            continue
        while f"virbr{counter}" in taken:
            counter += 1
        names[net.name] = f"virbr{counter}"
        taken.add(names[net.name])
    return names


def plan_host(profile: m.Profile, host: m.Host, pm: Any, previous: Optional[HostPlan] = None,
              runbook: bool = True) -> HostPlan:
    """Everything the bundle of `host` needs, computed once; renderers only format it. With
    `runbook=False`, what an audit needs (networks, sysctl, checks, capture files) and not the
    runbook's steps, bash helpers and host files: `steps`, `helpers`, `artifacts` and each network's
    `xml` stay empty, and checks carry no bash (see HostPlan.runbook)."""
    from .checks import host_checks
    from .steps import core_steps
    from .xml import generic_forward, network_element, network_xml

    modes = plugin_modes(pm)
    plan = HostPlan(host=host, target=plugin_targets(pm)[host.target], profile=profile, previous=previous,
                    runbook=runbook)
    bridges = resolve_bridges(host, modes)
    for net in host.networks.values():
        mode = modes[net.mode]
        own = mode.libvirt_bridge
        plan.networks[net.name] = NetworkPlan(
            net=net, mode=mode, bridge=bridges[net.name],
            mac=(net.mac or derived_mac(host.name, net.name)).lower() if own else None,
            uuid=normal_uuid(net.uuid) if net.uuid else derived_uuid(host.name, net.name),
            stp=(True if net.stp is None else net.stp) if own else None,
            delay=(net.delay or 0) if own else None)
    for bridge in host.bridges.values():
        plan.bridge_delay[bridge.name] = bridge.delay if bridge.delay is not None else (2 if bridge.stp else 0)
    for net_plan in plan.networks.values():
        element = pm.hook.vnetgen_network_xml(host=host, network=net_plan, plan=plan)
        if element is None and not runbook:
            # An audit needs only the <forward> of the core's element: read off the plan without building it.
            net_plan.forward, net_plan.forward_dev = generic_forward(net_plan)
        else:
            if element is None:
                element = network_element(net_plan)
            forward = element.find("forward")
            if forward is not None:   # what net-dumpxml will say: libvirt writes the pool's first device as dev=
                first = forward.find("interface")
                net_plan.forward = forward.get("mode", "nat")
                net_plan.forward_dev = forward.get("dev") or (first.get("dev") if first is not None else None)
            if runbook:   # the bundle's file; an audit reads only what the element says
                net_plan.xml = network_xml(net_plan, element)
        wanted = [[_IP_FORWARD]] if net_plan.mode.forwards_ipv4 and net_plan.net.state == "active" else []
        if wanted and net_plan.net.ip6 is not None:
            wanted.append([_IP6_FORWARD])
        for setting in wanted + pm.hook.vnetgen_sysctl(host=host, network=net_plan):
            for item in setting:
                if item.key not in {s.key for s in plan.sysctl}:
                    plan.sysctl.append(item)
    plan.sysctl.sort(key=lambda s: s.key)
    plan.checks = host_checks(plan, pm)
    for files in pm.hook.vnetgen_capture_files(host=host, plan=plan):
        plan.plugin_captures.extend(files)
    if not runbook:
        return plan
    plan.helpers = plan.target.shell_helpers() + "".join(pm.hook.vnetgen_shell_helpers(host=host, plan=plan))
    plan.artifacts.extend(plan.target.host_files(plan))
    for result in pm.hook.vnetgen_host_artifacts(host=host, plan=plan):
        plan.artifacts.extend(result)
    for cases in pm.hook.vnetgen_network_hook(host=host, plan=plan):
        plan.hook_cases.extend(cases)
    steps = list(core_steps(plan, pm)) + list(plan.target.host_steps(plan))
    for result in pm.hook.vnetgen_steps(host=host, plan=plan):
        steps.extend(result)
    plan.steps = sorted(steps, key=lambda s: s.order)
    return plan


def plan_profile(profile: m.Profile, pm: Any, only: Optional[List[str]] = None,
                 previous: Optional[List[HostPlan]] = None, runbook: bool = True) -> List[HostPlan]:
    """Plans of every (selected) host; `previous` (plans of an older profile) lets steps apply
    changes live where libvirt allows it; `runbook=False`: an audit's plans (see plan_host)."""
    return list(plan_hosts(profile, pm, only, previous, runbook))


def plan_hosts(profile: m.Profile, pm: Any, only: Optional[List[str]] = None,
               previous: Optional[List[HostPlan]] = None, runbook: bool = True) -> Iterator[HostPlan]:
    """plan_profile one host at a time, so a caller that is done with a plan can let it go."""
    before = {p.name: p for p in previous or ()}
    for name, host in profile.hosts.items():
        if not only or name in only:
            yield plan_host(profile, host, pm, before.get(name), runbook)

"""Mode `direct`: libvirt's macvtap networks — guests sit on host NICs through macvtap devices.

    networks:
      lan:
        mode: direct
        dev: eno1              # or devs: [eno1, eno2], a pool libvirt spreads guests over
        macvtap_mode: bridge   # bridge (default) | vepa | private | passthrough

`<forward mode='bridge'><interface dev='eno1'/></forward>`. Guests reach the LAN directly, but the host
cannot reach its guests over macvtap (nor they the host): REVIEW.md says so.
"""
from __future__ import annotations

from vnetgen.api import ImportedNetwork, Mode, cmd, hookimpl, is_ifname, network_element

from ._pool import DefinitionKind, definition, networks_of, requires

MODE = Mode(name="direct", description="guests sit on host NICs (macvtap, libvirt's direct); the host cannot reach "
            "them over it", forward="bridge", libvirt_bridge=False, ip="forbidden",
            keys=("dev", "devs", "macvtap_mode", "vlan"), importable=False)
LOOPBACK = "lo"
MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")


def devices(net):
    """The NICs of the pool, as the profile gives them."""
    return list(net.devs) or ([net.dev] if net.dev else [])


@hookimpl
def vnetgen_modes():
    return [MODE]


@hookimpl
def vnetgen_check_kinds():
    return [DefinitionKind("forward-interfaces", "the NICs of a direct network's macvtap pool "
                           "(`<forward><interface>`), when the profile lists `devs`", lambda d: list(d.interfaces))]


@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode != MODE.name:
        return
    who = f"network {network.name}"
    if network.dev and network.devs:
        report.error(network.at("devs"), f"{who}: give 'dev' or 'devs', not both")
    elif not devices(network):
        report.error(network.mark, f"{who}: mode direct needs 'dev:' (or 'devs:') naming the host NIC(s) "
                                   "the guests' macvtap devices sit on")
    if "bridge" in network.marks:
        report.error(network.at("bridge"), f"{who}: mode direct uses no bridge; name the NIC with 'dev:' "
                                           "(mode bridge puts guests on a host bridge)")
    for index, dev in enumerate(network.devs):
        mark = network.at(f"devs[{index}]")
        if dev == LOOPBACK:
            report.error(mark, f"{who}: dev lo is the host's loopback interface")
    for index, dev in enumerate(devices(network)):
        mark = network.at(f"devs[{index}]") if network.devs else network.at("dev")
        if dev in host.bridges:
            report.error(mark, f"{who}: {dev} is a host bridge; macvtap sits on a NIC (use mode bridge "
                               "for a bridge)")
        elif network.devs:   # the core checks `dev` against bridge ports itself
            for bridge in host.bridges.values():
                if dev in bridge.ports:
                    report.error(mark, f"{who}: {dev} is a port of host bridge {bridge.name}; a bridge port "
                                       "cannot carry macvtap devices")
    passthrough = network.macvtap_mode == "passthrough"
    if network.vlan is not None and not passthrough:
        report.error(network.at("vlan"), f"{who}: a VLAN applies to mode direct only with 'macvtap_mode: "
                                         "passthrough' (libvirt tags only what it hands a guest whole)")
    if devices(network) and network.state != "absent":
        report.warning(network.mark, f"{who}: over macvtap the host cannot reach its guests on "
                                     f"{', '.join(devices(network))} (nor they the host); give the host an "
                                     "address on another NIC or use mode bridge if they must talk"
                       + ("; in passthrough each NIC serves one guest at a time" if passthrough else ""))


@hookimpl
def vnetgen_network_xml(host, network, plan):
    if network.mode.name != MODE.name:
        return None
    from lxml import etree

    root = network_element(network)
    forward = root.find("forward")
    forward.attrib.pop("dev", None)   # written as the pool's first <interface>
    forward.set("mode", network.net.macvtap_mode or "bridge")
    for dev in devices(network.net):
        etree.SubElement(forward, "interface", dev=dev)
    return root


@hookimpl
def vnetgen_import_network(definition):
    """A macvtap network: one of the macvtap modes on host NICs, no bridge, no virtualport."""
    devs = list(definition.interfaces) or ([definition.forward_dev] if definition.forward_dev else [])
    if definition.forward_mode not in MACVTAP_MODES or definition.bridge or definition.virtualport or not devs \
            or not all(is_ifname(d) and d != LOOPBACK for d in devs) or len(set(devs)) != len(devs):
        return None
    keys = [("dev", devs[0])] if len(devs) == 1 else [("devs", devs)]
    if definition.forward_mode != "bridge":
        keys.append(("macvtap_mode", definition.forward_mode))
    return ImportedNetwork(MODE.name, tuple(keys), covers=("<forward>", "dev"))


@hookimpl
def vnetgen_steps(host, plan):
    return [requires(n, "its macvtap NICs exist", (cmd("require_nics", *devices(n.net)),)) for n in networks_of(plan, MODE)]


@hookimpl
def vnetgen_checks(host, plan):
    checks = []
    for network in networks_of(plan, MODE):
        devs = network.net.devs
        if devs:
            tokens = tuple(f"has:<interface dev='{d}'" for d in devs) + (f"count:{len(devs)}:<interface ",)
            checks.append(definition("forward-interfaces", network.name, list(devs), tokens,
                                     f"network {network.name} puts guests on {', '.join(devs)}"))
    return checks

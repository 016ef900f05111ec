"""Mode `ovs`: guests join an existing Open vSwitch bridge, optionally on VLANs and portgroups.

    networks:
      ovs-lan:
        mode: ovs
        bridge: ovsbr0         # made and kept by Open vSwitch (ovs-vsctl add-br), not by vnetgen
        vlan: 42               # or [10, 20]: a trunk
        portgroups:
          web: {vlan: 10, default: true}
          db: {vlan: 20}

`<forward mode='bridge'/><bridge name='ovsbr0'/><virtualport type='openvswitch'/>`: libvirt adds each
guest's tap as an OVS port (with its tag), so the bridge must exist before the network starts.
"""
from __future__ import annotations

from vnetgen.api import ImportedNetwork, Mode, cmd, hookimpl, is_ifname, network_element

from ._pool import DefinitionKind, definition, networks_of, requires

MODE = Mode(name="ovs", description="guests join an existing Open vSwitch bridge (virtualport openvswitch)",
            forward="bridge", libvirt_bridge=False, ip="forbidden", keys=("vlan", "portgroups"), importable=False)

HELPERS = """
ovs_bridge_exists() {  # ovs_bridge_exists BRIDGE: Open vSwitch has BRIDGE
  if ! command -v ovs-vsctl >/dev/null 2>&1; then printf '   ovs-vsctl not found: is Open vSwitch installed?\\n'; return 1; fi
  if ovs-vsctl br-exists "$1"; then return 0; fi
  printf '   Open vSwitch has no bridge %s (ovs-vsctl add-br %s makes one)\\n' "$1" "$1"
  return 1
}
"""


@hookimpl
def vnetgen_modes():
    return [MODE]


@hookimpl
def vnetgen_check_kinds():
    return [DefinitionKind("virtualport", "the `<virtualport type>` of an ovs network (openvswitch)",
                           lambda d: d.virtualport)]


@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode != MODE.name:
        return
    who = f"network {network.name}"
    if not network.bridge:
        report.error(network.mark, f"{who}: mode ovs needs 'bridge:' naming the Open vSwitch bridge")
    elif network.bridge in host.bridges:
        report.error(network.at("bridge"), f"{who}: {network.bridge} is a Linux host bridge of the profile; mode "
                                           "ovs needs an Open vSwitch bridge (use mode bridge for a Linux one)")
    defaults = [g for g in network.portgroups.values() if g.default]
    for group in defaults[1:]:
        report.error(group.at("default"), f"{who}: portgroup {group.name} is a second default (portgroup "
                                          f"{defaults[0].name} is already; libvirt allows one)")


@hookimpl
def vnetgen_network_xml(host, network, plan):
    if network.mode.name != MODE.name:
        return None
    from lxml import etree

    root = network_element(network)
    etree.SubElement(root, "virtualport", type="openvswitch")
    return root


@hookimpl
def vnetgen_import_network(definition):
    """An Open vSwitch network: `<forward mode='bridge'>` on a named bridge with `<virtualport type='openvswitch'>`."""
    if definition.forward_mode != MODE.forward or definition.virtualport != "openvswitch" or \
            not definition.bridge or not is_ifname(definition.bridge):
        return None
    return ImportedNetwork(MODE.name, (("bridge", definition.bridge),), ("<virtualport>",))


@hookimpl
def vnetgen_shell_helpers(host, plan):
    return HELPERS if networks_of(plan, MODE) else ""


@hookimpl
def vnetgen_steps(host, plan):
    return [requires(n, f"Open vSwitch bridge {n.bridge} exists", (cmd("ovs_bridge_exists", n.bridge),))
            for n in networks_of(plan, MODE)]


@hookimpl
def vnetgen_checks(host, plan):
    return [definition("virtualport", n.name, "openvswitch", ("has:<virtualport type='openvswitch'",),
                       f"network {n.name} adds its guests to Open vSwitch")
            for n in networks_of(plan, MODE)]

"""Mode `macvtap` for vnetgen, written as a third party writes one: only `vnetgen.api` is imported.

    networks:
      lan-direct:
        mode: macvtap
        bridge: enp3s0       # here: the host NIC the guests' macvtap devices sit on

libvirt's `<forward mode='bridge'><interface dev='enp3s0'/></forward>`: guests reach the LAN directly,
but not the host itself through that NIC (a macvtap limitation REVIEW.md readers should know).
"""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

MODE = Mode(name="macvtap", description="guests attach to a host NIC through macvtap (they cannot reach "
            "the host through it)", forward="bridge", libvirt_bridge=False, ip="forbidden")


@hookimpl
def vnetgen_modes():
    return [MODE]


@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode != MODE.name:
        return
    if not network.bridge:
        report.error(network.mark, f"network {network.name}: macvtap needs 'bridge:' naming the host NIC")
    elif network.bridge in host.bridges:
        report.error(network.at("bridge"), f"network {network.name}: {network.bridge} is a host bridge; "
                                           "macvtap sits on a NIC (use mode bridge for a bridge)")
    if network.dhcp is not None:
        report.error(network.at("dhcp"), f"network {network.name}: macvtap has no DHCP of libvirt's")


@hookimpl
def vnetgen_network_xml(host, network, plan):
    if network.mode.name != MODE.name:
        return None
    from lxml import etree

    root = etree.Element("network")
    etree.SubElement(root, "name").text = network.name
    etree.SubElement(root, "uuid").text = network.uuid
    forward = etree.SubElement(root, "forward", mode="bridge")
    etree.SubElement(forward, "interface", dev=network.bridge)
    return root

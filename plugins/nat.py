"""Mode `nat`: libvirt's default — a private bridge whose guests reach out through masquerade."""
from __future__ import annotations

from ipaddress import IPv4Address

from vnetgen.api import Mode, hookimpl, network_element, span

MODE = Mode(name="nat", description="guests share the host's address through NAT (masquerade)",
            forward="nat", ip="required", forwards_ipv4=True, keys=("nat", "dev", "forwards"))


@hookimpl
def vnetgen_modes():
    return [MODE]


def _port(text):
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


@hookimpl
def vnetgen_validate_network(host, network, report):
    nat = network.nat
    if network.mode != MODE.name or nat is None:
        return
    who = f"network {network.name}: nat"
    for key, parse, what in (("addresses", IPv4Address, "IPv4 address"), ("ports", _port, "port 1-65535")):
        try:
            value = span(getattr(nat, key), parse)
        except ValueError:
            report.error(nat.at(key), f"{who} {key} {getattr(nat, key)!r}: START-END (or one value), each an {what}")
            continue
        if value is None:
            continue
        if value[0] > value[1]:
            report.error(nat.at(key), f"{who} {key}: start {value[0]} is after end {value[1]}")
        elif key == "addresses" and network.ip is not None and any(a in network.ip.network for a in value):
            report.error(nat.at(key), f"{who} addresses {nat.addresses}: inside the guests' own subnet "
                                      f"{network.ip.network}; NAT addresses are the host's outside addresses")
    if nat.addresses is None and nat.ports is None:
        report.error(nat.mark, f"{who}: give 'addresses' or 'ports' (or leave 'nat' out)")


@hookimpl
def vnetgen_network_xml(host, network, plan):
    """The core's element with <nat> in <forward>, when the profile sets NAT ranges."""
    nat = network.net.nat
    if network.mode.name != MODE.name or nat is None:
        return None
    from lxml import etree

    root = network_element(network)
    element = etree.SubElement(root.find("forward"), "nat")
    addresses, ports = span(nat.addresses, IPv4Address), span(nat.ports, int)
    if addresses:
        etree.SubElement(element, "address", start=str(addresses[0]), end=str(addresses[1]))
    if ports:
        etree.SubElement(element, "port", start=str(ports[0]), end=str(ports[1]))
    return root

"""Mode `bridge`: libvirt only uses a host bridge (made by the target's steps, or external)."""
from __future__ import annotations

from vnetgen.api import Mode, Sysctl, hookimpl

MODE = Mode(name="bridge", description="guests join a host bridge and the host's LAN directly",
            forward="bridge", libvirt_bridge=False, ip="forbidden")


@hookimpl
def vnetgen_modes():
    return [MODE]


@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode != MODE.name:
        return
    if not network.bridge:
        report.error(network.mark, f"network {network.name}: mode bridge needs 'bridge:' naming a host bridge")
    elif network.bridge not in host.bridges:
        known = ", ".join(sorted(host.bridges)) or "none"
        report.error(network.at("bridge"), f"network {network.name}: {network.bridge} is not a host bridge of "
                                           f"{host.name} (known: {known}); declare it under 'bridges:', with "
                                           "'external: true' if it exists already")
    if network.dhcp is not None:
        report.error(network.at("dhcp"), f"network {network.name}: mode bridge has no DHCP of libvirt's; the "
                                         "LAN's own DHCP server serves the guests")


@hookimpl
def vnetgen_sysctl(host, network):
    if network.net.mode != MODE.name:
        return []
    why = ("bridged guests' frames skip the host firewall (libvirt's recommendation); it applies only "
           "while br_netfilter is loaded")
    return [Sysctl(f"net.bridge.bridge-nf-call-{table}", "0", why) for table in ("arptables", "ip6tables",
                                                                               "iptables")]

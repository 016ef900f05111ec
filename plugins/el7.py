"""Target `el7` (RHEL/CentOS 7, the seed's world): host bridges live with brctl, persisted as ifcfg files."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from vnetgen.api import (HOST_BRIDGES, Artifact, CaptureFile, CaptureReader, HostNetworking, Step, cmd,
                         hookimpl, install_file, q, restore_file, virt_install)

from ._vlan import Vlan, host_vlans
from .brctl_show import BrctlShow
from .iproute2 import (IP_LINK_BRIDGE_V1, LAYOUT_1_MISSING, IpRoute2Target, observe_iproute2, observe_iproute2_v1,
                       resolver_list)

IFCFG_DIR = "/etc/sysconfig/network-scripts"
BRCTL_SHOW = "brctl-show.txt"
IFCFG_DNS = "ifcfg-dns.txt"
# "FILE:KEY=VALUE" of every ifcfg file: its device (TYPE too, so that a file without DNS is listed)
# and its DNS1..DNSn, which initscripts writes to resolv.conf when the device comes up.
IFCFG_GREP = ("grep", "-r", "-H", "--include=ifcfg-*", "-E", "^(DEVICE|TYPE|DNS[0-9]+)=", IFCFG_DIR)
_IFCFG_LINE = (r"(?P<path>.*?/ifcfg-(?P<file>[^/]+)):(?P<key>DEVICE|TYPE|DNS(?P<n>[0-9]+))=(?P<value>.*)")   # audits only: compiled there


class El7(IpRoute2Target):
    name = "el7"
    description = "RHEL/CentOS 7: ifcfg files, brctl, virt-install 1.x flags"
    tools = ("brctl", "ip")
    default = True   # profile v1: a host that names no target is el7, as the seed's hosts are
    versions = "RHEL/CentOS 7 (initscripts network-scripts)"
    os_release = (("rhel", "7"), ("centos", "7"))
    persists = f"ifcfg files in {IFCFG_DIR}"
    ip_required = False   # RHEL 7's iproute2 may predate `ip -j`: brctl show is what it surely has
    port_resolvers = r"""
port_resolvers() {  # port_resolvers DEV: DNS1..DNS3 of DEV's ifcfg file (initscripts writes them to resolv.conf)
  local file="/etc/sysconfig/network-scripts/ifcfg-$1"
  if [ -f "$file" ]; then sed -n "s/^DNS[0-9]=[\"']\{0,1\}\([0-9.]*\).*/\1/p" "$file"; fi
}
"""

    def add_bridge(self, bridge: str) -> str:
        return cmd("brctl", "addbr", bridge)

    def delete_bridge(self, bridge: str) -> Tuple[str, ...]:
        return (cmd("ip", "link", "set", bridge, "down"), cmd("brctl", "delbr", bridge))

    def set_stp(self, bridge: str, on: bool) -> str:
        return cmd("brctl", "stp", bridge, "on" if on else "off")

    def set_delay(self, bridge: str, seconds: int) -> str:
        return cmd("brctl", "setfd", bridge, seconds)

    def add_port(self, bridge: str, port: str) -> str:
        return cmd("brctl", "addif", bridge, port)

    def remove_port(self, bridge: str, port: str) -> str:
        return cmd("brctl", "delif", bridge, port)

    def capture_files(self) -> Sequence[CaptureFile]:
        brctl = CaptureFile(BRCTL_SHOW, tuple(BrctlShow().command()), "bridges and ports as brctl shows them",
                            required=False, owner="el7")
        return (brctl, *super().capture_files())

    def resolver_capture(self) -> Optional[CaptureFile]:
        return CaptureFile(IFCFG_DNS, IFCFG_GREP, "each ifcfg file's DEVICE, TYPE and DNS1..DNSn (the "
                           "resolvers it gives the host; `vnetgen import` reads them)", required=False, since=5,
                           owner="el7")

    def parse_resolvers(self, text: str, where: str) -> Tuple[Dict[str, Tuple[str, ...]], Dict[str, str]]:
        return parse_ifcfg_dns(text, where)

    def observe_links(self, reader: CaptureReader) -> HostNetworking:
        # iproute2 JSON when the host's ip has -j (it also shows forward delays); else brctl show.
        found = observe_iproute2(reader)
        if found is not None:
            return found
        got = reader.read(BRCTL_SHOW)
        if got is None:
            found = observe_iproute2_v1(reader, required=False)
            if found is not None:
                return found
            got = reader.require(BRCTL_SHOW)
        return HostNetworking(bridges={b.name: b for b in BrctlShow().process(*got)}, tool="brctl",
                              missing={"delay": "brctl show does not print it", **LAYOUT_1_MISSING})

    def recognizes(self, files) -> bool:
        # Only el7's capture.sh records brctl show (and, in layout 1 where brctl was absent, ip-link-bridge.json).
        return BRCTL_SHOW in files or IP_LINK_BRIDGE_V1 in files

    def host_files(self, plan) -> List[Artifact]:
        return [Artifact(f"ifcfg/ifcfg-{name}", text) for name, text in ifcfg_files(plan).items()]

    def host_steps(self, plan) -> List[Step]:
        steps = [self.bridge_step(plan, b, rank) for rank, b in enumerate(plan.host.bridges.values())
                 if not b.external]
        files = ifcfg_files(plan)
        if files:
            dests = [f"{IFCFG_DIR}/ifcfg-{name}" for name in files]
            steps.append(Step((HOST_BRIDGES, 1 << 20), "persist interfaces (ifcfg)",
                              "initscripts recreates the same bridges and unnumbered ports at boot",
                              tuple(install_file(f"ifcfg/ifcfg-{name}", dest) for name, dest in zip(files, dests)),
                              tuple(restore_file(dest) for dest in dests)))
        return steps

    def vm_install(self, vm) -> Optional[List[str]]:
        # the seed's flags: virt-install 1.x spells them --ram and --vcpu, and takes --os-type
        os_args = ["--os-type", "linux"] + (["--os-variant", vm.os_variant] if vm.os_variant else [])
        return virt_install(vm, memory="--ram", vcpus="--vcpu", os=os_args)


# initscripts skips these (backups and package leftovers): their DNS is no configuration.
_IGNORED = ("~", ".bak", ".old", ".orig", ".rpmnew", ".rpmorig", ".rpmsave")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_ifcfg_dns(text: str, where: str) -> Tuple[Dict[str, Tuple[str, ...]], Dict[str, str]]:
    """ifcfg-dns.txt (`grep -r -H` of the ifcfg files): device → its DNS1..DNSn in order; a device
    named by DEVICE=, else by its file name (ifcfg-NAME)."""
    per_file: Dict[str, Dict[str, object]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(_IFCFG_LINE, line.rstrip("\r"))
        if match is None or match["file"].endswith(_IGNORED):
            continue
        entry = per_file.setdefault(match["path"], {"device": match["file"], "dns": {}, "line": number})
        value = _unquote(match["value"])
        if match["key"] == "DEVICE" and value:
            entry["device"] = value
        elif match["n"] is not None:
            entry["dns"][int(match["n"])] = value   # type: ignore[index]
    resolvers: Dict[str, Tuple[str, ...]] = {}
    unreadable: Dict[str, str] = {}
    for entry in per_file.values():
        device = str(entry["device"])
        dns = entry["dns"]
        found, why = resolver_list([dns[n] for n in sorted(dns)], f"{where}:{entry['line']}")  # type: ignore
        if why:
            unreadable[device] = why
        elif found or device not in resolvers:
            resolvers[device] = found
    return resolvers, unreadable


TARGET = El7()


@hookimpl
def vnetgen_targets():
    return [TARGET]


def _ifcfg(pairs: List[Tuple[str, object]]) -> str:
    """ifcfg files are sourced by bash: every value goes through the one quoting function."""
    lines = ["# generated by vnetgen; initscripts reads it (sourced by bash)"]
    lines += [f"{key}={q(value)}" for key, value in pairs if value is not None]
    return "\n".join(lines) + "\n"


def _nic_identity(host, name: str) -> List[Tuple[str, object]]:
    nic = host.nics.get(name)
    return [("NAME", name), ("UUID", nic.uuid if nic else None),
            ("HWADDR", nic.hwaddr.upper() if nic and nic.hwaddr else None)]


def _vlan_ifcfg(vlan: Vlan, bridge: Optional[str]) -> str:
    """A VLAN port: initscripts' ifup-eth creates it on PHYSDEV (and brings PHYSDEV up) at boot."""
    return _ifcfg([("DEVICE", vlan.name), ("VLAN", "yes"), ("PHYSDEV", vlan.parent), ("BOOTPROTO", "none"),
                   ("IPV6INIT", "no"), ("ONBOOT", "yes"), ("BRIDGE", bridge), ("NM_CONTROLLED", "no")])


def ifcfg_files(plan) -> Dict[str, str]:
    """ifcfg name → text: managed host bridges, their ports, trunk ports and numbered NICs."""
    host = plan.host
    files: Dict[str, str] = {}
    vlans = host_vlans(host)
    for bridge in host.bridges.values():
        if bridge.external:
            continue
        pairs: List[Tuple[str, object]] = [("DEVICE", bridge.name), ("TYPE", "Bridge"), ("BOOTPROTO", "none")]
        if bridge.ip is not None:
            pairs += [("IPADDR", bridge.ip.ip), ("PREFIX", bridge.ip.network.prefixlen),
                      ("GATEWAY", bridge.gateway)]
            pairs += [(f"DNS{i}", dns) for i, dns in enumerate(bridge.dns, 1)]
            pairs += [("DEFROUTE", "yes" if bridge.gateway else "no"), ("IPV4_FAILURE_FATAL", "no")]
        pairs += [("ONBOOT", "yes"), ("STP", "on" if bridge.stp else None),
                  ("DELAY", plan.bridge_delay[bridge.name]), ("NM_CONTROLLED", "no")]
        files[bridge.name] = _ifcfg(pairs)
        for port in bridge.ports:
            if port in vlans:
                files[port] = _vlan_ifcfg(vlans[port], bridge.name)
                continue
            files[port] = _ifcfg([("TYPE", "Ethernet"), ("BOOTPROTO", "none"),
                                  ("DEFROUTE", "yes" if bridge.gateway else None), ("IPV4_FAILURE_FATAL", "no"),
                                  ("IPV6INIT", "no"), *_nic_identity(host, port), ("ONBOOT", "yes"),
                                  ("BRIDGE", bridge.name), ("NM_CONTROLLED", "no")])
    for net in plan.networks.values():
        if not net.mode.libvirt_bridge or net.net.state == "absent":
            continue
        for port in net.net.ports:
            if port in vlans:
                files[port] = _vlan_ifcfg(vlans[port], None)
                continue
            # libvirt's bridge is not an ifcfg device: the port is unnumbered and the hook enslaves it.
            files[port] = _ifcfg([("TYPE", "Ethernet"), ("BOOTPROTO", "none"), ("IPV4_FAILURE_FATAL", "no"),
                                  ("IPV6INIT", "no"), *_nic_identity(host, port), ("ONBOOT", "yes"),
                                  ("NM_CONTROLLED", "no")])
    for nic in host.nics.values():
        if nic.name not in files and nic.ip is not None:
            files[nic.name] = _ifcfg([("TYPE", "Ethernet"), ("BOOTPROTO", "none"), ("IPADDR", nic.ip.ip),
                                      ("PREFIX", nic.ip.network.prefixlen), *_nic_identity(host, nic.name),
                                      ("ONBOOT", "yes"), ("NM_CONTROLLED", "no")])
    return dict(sorted(files.items()))

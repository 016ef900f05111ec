"""The typed profile: hosts, bridges, networks and VMs, each remembering where it was written."""
from __future__ import annotations

from dataclasses import field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Dict, List, Optional, Tuple, Union

from .dataclassc import dataclass
from .diagnostics import Mark


@dataclass
class Located:
    """Where an object of the profile was written (`mark`), and where each of its keys was (`marks`)."""
    mark: Mark = (1, 1)
    marks: Dict[str, Mark] = field(default_factory=dict, repr=False, compare=False)

    def at(self, key: str) -> Mark:
        """Where `key` was written, else where this object was."""
        return self.marks.get(key, self.mark)


@dataclass
class Nic(Located):
    """A physical NIC of a host's `nics:`: the MAC, UUID and address its persisted configuration gets."""
    name: str = ""
    hwaddr: Optional[str] = None
    uuid: Optional[str] = None
    ip: Optional[IPv4Interface] = None


@dataclass
class Bridge(Located):
    """A host bridge of `bridges:`, its ports, address, gateway and resolvers."""
    name: str = ""
    ports: List[str] = field(default_factory=list)
    ip: Optional[IPv4Interface] = None
    gateway: Optional[IPv4Address] = None
    no_gateway: bool = False       # `gateway: none`: the host's default route via its ports is given up
    dns: List[IPv4Address] = field(default_factory=list)
    no_dns: bool = False           # `dns: none`: the host keeps no resolvers from this bridge
    stp: bool = False
    delay: Optional[int] = None    # resolved by the planner: 0, or 2 s (the kernel's minimum) with stp
    external: bool = False


@dataclass
class DhcpHost(Located):
    """A static DHCP lease of a network's `dhcp: hosts:` (IPv4): by MAC or by name."""
    ip: Optional[IPv4Address] = None
    mac: Optional[str] = None
    name: Optional[str] = None


@dataclass
class Dhcp(Located):
    """A network's IPv4 `dhcp:`: the range and the static leases."""
    start: Optional[IPv4Address] = None
    end: Optional[IPv4Address] = None
    hosts: List[DhcpHost] = field(default_factory=list)


@dataclass
class IpHost(Located):
    """A static DHCP host of an `ips:` entry: by mac (IPv4), by DUID `id` (IPv6; libvirt gives a MAC
    no meaning there) or by name."""
    ip: Optional[Union[IPv4Address, IPv6Address]] = None
    mac: Optional[str] = None
    id: Optional[str] = None
    name: Optional[str] = None


@dataclass
class IpDhcp(Located):
    """The `dhcp:` of an `ips:` entry: range and static hosts, of the entry's family."""
    start: Optional[Union[IPv4Address, IPv6Address]] = None
    end: Optional[Union[IPv4Address, IPv6Address]] = None
    hosts: List[IpHost] = field(default_factory=list)


@dataclass
class IpEntry(Located):
    """One entry of a network's `ips:` (vnetgen/netip6.py): an `<ip>` of either family, with its DHCP."""
    address: Optional[Union[IPv4Interface, IPv6Interface]] = None
    dhcp: Optional[IpDhcp] = None


@dataclass
class Rate(Located):
    """One direction of a network's `bandwidth:`."""
    average: Optional[int] = None  # kilobytes per second
    peak: Optional[int] = None     # kilobytes per second
    burst: Optional[int] = None    # kilobytes


@dataclass
class Bandwidth(Located):
    """A network's `bandwidth:` (libvirt QoS): inbound and outbound rates."""
    inbound: Optional[Rate] = None
    outbound: Optional[Rate] = None


@dataclass
class Nat(Located):
    """A nat network's `nat:`: the host's outside addresses and the source ports masquerade uses."""
    addresses: Optional[str] = None   # "START-END" or one address, as written (validation parses it)
    ports: Optional[str] = None       # "START-END" or one port


@dataclass
class Forward(Located):
    """A port forward of a network's `forwards:`, to ADDRESS:PORT of a guest."""
    proto: str = "tcp"
    port: int = 0
    to: str = ""   # "ADDRESS:PORT" as written (validation parses it)


@dataclass
class DnsHost(Located):
    """A host entry of a network's `dns: hosts:`: an address and its names."""
    ip: Optional[Union[IPv4Address, IPv6Address]] = None   # in the network's IPv4 or IPv6 subnet
    names: List[str] = field(default_factory=list)


@dataclass
class DnsForwarder(Located):
    """A forwarder of a network's `dns: forwarders:`."""
    addr: Optional[str] = None     # an IPv4/IPv6 address; none: `domain` is answered locally only
    domain: Optional[str] = None   # only queries for this domain go to `addr`


@dataclass
class DnsSrv(Located):
    """An SRV record of a network's `dns: srv:`."""
    service: str = ""
    protocol: str = ""
    domain: Optional[str] = None
    target: Optional[str] = None
    port: Optional[int] = None
    priority: Optional[int] = None
    weight: Optional[int] = None


@dataclass
class DnsTxt(Located):
    """A TXT record of a network's `dns: txt:`."""
    name: str = ""
    value: str = ""


@dataclass
class Dns(Located):
    """A network's `dns:` (vnetgen/netdns.py); a list left out (None) is libvirt's to keep, never drift."""
    enable: bool = True            # `dns: false`: <dns enable='no'/>, no DNS server on the network
    forward_plain_names: Optional[bool] = None
    hosts: Optional[List[DnsHost]] = None
    forwarders: Optional[List[DnsForwarder]] = None
    srv: Optional[List[DnsSrv]] = None
    txt: Optional[List[DnsTxt]] = None


@dataclass
class Domain(Located):
    """A network's `domain:` (<domain>): its DNS domain, and whether only the network answers it."""
    name: str = ""
    local_only: Optional[bool] = None


@dataclass
class Portgroup(Located):
    """A portgroup of a network's `portgroups:`, with its VLAN tags."""
    name: str = ""
    default: bool = False
    vlan: Optional[List[int]] = None   # VLAN ids; one: access, two or more: trunk


@dataclass
class Network(Located):
    """A libvirt network of a host's `networks:`, as written; the planner resolves what it leaves out."""
    name: str = ""
    mode: str = ""
    bridge: Optional[str] = None   # resolved by the planner when absent
    stp: Optional[bool] = None
    delay: Optional[int] = None
    mac: Optional[str] = None      # pinned by the profile, else derived by the planner
    uuid: Optional[str] = None
    mtu: Optional[int] = None
    dev: Optional[str] = None      # <forward dev>
    nat: Optional[Nat] = None
    bandwidth: Optional[Bandwidth] = None
    forwards: List[Forward] = field(default_factory=list)
    domain: Optional[Domain] = None
    dns: Optional[Dns] = None
    devs: List[str] = field(default_factory=list)   # direct: the NICs of the macvtap pool
    macvtap_mode: Optional[str] = None              # direct: bridge | vepa | private | passthrough
    pf: Optional[str] = None                        # hostdev: the SR-IOV physical function
    vfs: List[str] = field(default_factory=list)    # hostdev: VFs by PCI address
    vlan: Optional[List[int]] = None                # <vlan>: one id (access) or several (trunk)
    portgroups: Dict[str, Portgroup] = field(default_factory=dict)
    ip: Optional[IPv4Interface] = None
    dhcp: Optional[Dhcp] = None
    ips: List[IpEntry] = field(default_factory=list)   # `ips:` as written (vnetgen/netip6.py); its IPv4
    ip6: Optional[IpEntry] = None                      # entry fills ip and dhcp, its IPv6 entry ip6
    ports: List[str] = field(default_factory=list)
    autostart: bool = True
    state: str = "active"

    def interface(self, version: int) -> Optional[Union[IPv4Interface, IPv6Interface]]:
        """The network's own address of IP version 4 (`ip`) or 6 (the IPv6 entry of `ips:`), if it has one."""
        if version == 4:
            return self.ip
        return self.ip6.address if self.ip6 is not None else None


@dataclass
class VmNic(Located):
    """One NIC of a VM: the network it is on, its MAC if pinned."""
    network: str = ""
    mac: Optional[str] = None


@dataclass
class Vm(Located):
    """A VM of a host's `vms:`: what virt-install is given."""
    name: str = ""
    memory: int = 0
    vcpus: int = 0
    networks: List[VmNic] = field(default_factory=list)
    disk_path: Optional[str] = None
    disk_size: Optional[int] = None
    location: Optional[str] = None
    import_: bool = False
    os_variant: Optional[str] = None
    extra_args: Optional[str] = None
    graphics: Optional[str] = None


@dataclass
class Host(Located):
    """A host of the profile: its NICs, host bridges, libvirt networks and VMs."""
    name: str = ""
    target: Optional[str] = None   # None: the default target's (validation fills it in)
    nics: Dict[str, Nic] = field(default_factory=dict)
    bridges: Dict[str, Bridge] = field(default_factory=dict)
    networks: Dict[str, Network] = field(default_factory=dict)
    vms: Dict[str, Vm] = field(default_factory=dict)


@dataclass
class LinkEnd:
    """One end of a link: HOST:NIC."""
    host: str
    nic: str


@dataclass
class Link(Located):
    """A cable (or trunk) of `links:` between two hosts' NICs."""
    ends: Tuple[LinkEnd, LinkEnd] = (LinkEnd("", ""), LinkEnd("", ""))


@dataclass
class Rollout(Located):
    """The profile's `rollout:`: how the fleet playbooks batch hosts."""
    serial: Union[int, str] = 1            # hosts per batch, or "N%" of the wave
    max_fail_percentage: int = 0


@dataclass
class Profile(Located):
    """A whole profile: its hosts, links, rollout and the warnings validation found."""
    path: str = ""
    name: Optional[str] = None
    hosts: Dict[str, Host] = field(default_factory=dict)
    links: List[Link] = field(default_factory=list)
    rollout: Rollout = field(default_factory=Rollout)
    warnings: List = field(default_factory=list)   # validation warnings, shown in REVIEW.md

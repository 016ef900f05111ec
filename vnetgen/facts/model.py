"""The observed state of a host as the fact parsers return it, and the checks they share (FactError
and the text helpers live in vnetgen.factbase, light enough for a build; re-exported here)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, List, Optional, Sequence, Tuple, Union

from ..dataclassc import dataclass
from ..factbase import FactError, excerpt, numbered_lines, quick_init

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


# --- virsh net-list / net-dumpxml -------------------------------------------------


@dataclass(frozen=True)
class NetListEntry:
    """One row of `virsh net-list --all`."""

    name: str
    active: bool
    autostart: bool
    persistent: bool


@quick_init
@dataclass(frozen=True)
class DhcpHostDef:
    """A static DHCP lease (`<host>`); IPv6 hosts are matched by id or name, not mac."""

    mac: Optional[str]
    ip: Optional[IPAddress]
    name: Optional[str]
    id: Optional[str] = None   # an IPv6 host's DHCP client DUID, as written


@quick_init
@dataclass(frozen=True)
class IpDef:
    """One `<ip>` of a network: the host's address on the bridge and its DHCP service."""

    family: str  # "ipv4" | "ipv6"
    address: IPInterface
    dhcp_ranges: Tuple[Tuple[IPAddress, IPAddress], ...] = ()
    dhcp_hosts: Tuple[DhcpHostDef, ...] = ()


@dataclass(frozen=True)
class DnsHostDef:
    ip: IPAddress
    names: Tuple[str, ...]


@dataclass(frozen=True)
class DnsForwarderDef:
    addr: Optional[str] = None
    domain: Optional[str] = None


@dataclass(frozen=True)
class DnsTxtDef:
    name: str
    value: str


@dataclass(frozen=True)
class DnsSrvDef:
    service: str
    protocol: str
    domain: Optional[str] = None
    target: Optional[str] = None
    port: Optional[int] = None
    priority: Optional[int] = None
    weight: Optional[int] = None


@dataclass(frozen=True)
class DnsDef:
    """A network's <domain> and <dns>; records sorted (their order carries no meaning for the audit)."""

    enable: Optional[bool] = None               # enable='no': no DNS server
    forward_plain_names: Optional[bool] = None
    domain: Optional[str] = None
    domain_local_only: Optional[bool] = None
    forwarders: Tuple[DnsForwarderDef, ...] = ()
    txts: Tuple[DnsTxtDef, ...] = ()
    srvs: Tuple[DnsSrvDef, ...] = ()
    hosts: Tuple[DnsHostDef, ...] = ()


@quick_init
@dataclass(frozen=True)
class NetworkDef:
    """What `virsh net-dumpxml NAME` says about a network, independent of how it was written."""

    name: str
    uuid: Optional[str] = None
    forward_mode: Optional[str] = None  # None: no <forward>, an isolated network
    forward_dev: Optional[str] = None
    bridge: Optional[str] = None
    stp: Optional[bool] = None
    delay: Optional[int] = None
    mac: Optional[str] = None
    ips: Tuple[IpDef, ...] = ()
    connections: Optional[int] = None  # only in the live XML of an active network
    nat_ports: Optional[Tuple[int, int]] = None  # libvirt fills in 1024-65535 when it starts
    nat_addresses: Optional[Tuple[IPAddress, IPAddress]] = None
    mtu: Optional[int] = None
    # <bandwidth>: ((direction, ((attribute, value), ...)), ...) in libvirt's order
    bandwidth: Optional[Tuple[Tuple[str, Tuple[Tuple[str, int], ...]], ...]] = None
    dns: Optional[DnsDef] = None   # <domain> and <dns>, when either is there
    # Pools of the direct and hostdev modes, and what an Open vSwitch bridge adds:
    interfaces: Tuple[str, ...] = ()       # <forward><interface dev>, in order
    pf: Optional[str] = None               # <forward><pf dev>
    pci: Tuple[str, ...] = ()              # <forward><address type='pci'> as DDDD:BB:SS.F, in order
    virtualport: Optional[str] = None      # <virtualport type> of the network
    vlan: Optional[Tuple[int, ...]] = None  # <vlan><tag id>s of the network
    # <portgroup>s: (name, default, VLAN ids or None), in order
    portgroups: Tuple[Tuple[str, bool, Optional[Tuple[int, ...]]], ...] = ()


# --- host bridges ---------------------------------------------------------------


@dataclass(frozen=True)
class BridgeInfo:
    """A host bridge as `brctl show` or `ip -j -d link` shows it.

    ports_known is False when the tool could not list the ports (brctl's
    "can't get port info") or when they were not captured (ip link alone):
    then `ports` is empty and means "unknown", not "none". delay (seconds)
    is known from `ip -d` only; brctl show does not print it.
    """

    name: str
    bridge_id: Optional[str] = None  # "8000.525400fa45cf", as brctl prints it
    stp: Optional[bool] = None
    ports: Tuple[str, ...] = ()
    ports_known: bool = True
    delay: Optional[float] = None


@dataclass(frozen=True)
class BridgePort:
    """A link enslaved to a bridge (`bridge -j link`, `ip -j link show master BR`)."""

    name: str
    master: str


@dataclass(frozen=True)
class LinkInfo:
    """A network link as `ip -j -d link show` shows it, with its addresses from `ip -j addr show`.

    addresses is None when they were not captured (a layout-1 capture, or `ip -j addr` failed).
    """

    name: str
    kind: Optional[str] = None        # linkinfo.info_kind: "bridge", "veth", "vlan", ...; None for a plain NIC
    master: Optional[str] = None      # the bridge (or bond) it is a port of
    up: bool = False                  # administratively up (the UP flag)
    mac: Optional[str] = None
    addresses: Optional[Tuple[str, ...]] = None   # "ADDR/PREFIX", global and host scope, sorted
    parent: Optional[str] = None      # the lower link ("link"), e.g. the NIC under a VLAN
    vlan_id: Optional[int] = None     # linkinfo.info_data.id of a VLAN


@dataclass(frozen=True)
class RouteInfo:
    """A route of the main table (`ip -j route show`, `ip -j -6 route show`)."""

    dst: str                          # "default" or a prefix
    dev: Optional[str] = None
    gateway: Optional[str] = None
    family: str = "ipv4"


# --- guests ---------------------------------------------------------------------


@dataclass(frozen=True)
class DomainEntry:
    """One row of `virsh list --all`; id is None for a domain that is not running."""

    id: Optional[int]
    name: str
    state: str  # as virsh prints it: "running", "shut off", "in shutdown", ...


@dataclass(frozen=True)
class DomIf:
    """One row of `virsh domiflist VM`; virsh's "-" (nothing there) becomes None."""

    interface: Optional[str]
    type: str
    source: Optional[str]
    model: Optional[str]
    mac: str


@dataclass(frozen=True)
class DomainDisk:
    """One `<disk>` of a domain: its device (disk, cdrom, ...) and what backs it (a file or block
    device path; None for a network disk or an empty drive)."""

    device: str
    type: str
    source: Optional[str]


@dataclass(frozen=True)
class DomainDef:
    """`virsh dumpxml --inactive VM`: what a profile VM needs of a defined domain."""

    name: str
    memory_kib: int
    vcpus: int
    vcpus_current: Optional[int]                   # <vcpu current='N'>, when fewer run than are defined
    disks: Tuple[DomainDisk, ...]
    interfaces: Tuple[DomIf, ...]                  # interface (target dev) is None: an inactive definition
    graphics: Tuple[str, ...]                      # <graphics type=...>, in order
    os_id: Optional[str]                           # libosinfo's id in <metadata>, as virt-install writes it


# --- conversions ------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """A fact as plain JSON types: dataclasses become objects, tuples lists, addresses strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)
    return value


# --- helpers shared by the parsers ---------------------------------------------

_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_UINT = re.compile(r"[0-9]{1,9}")  # bounded: int() of a huge digit string is slow or refused
_DASHES = re.compile(r"-{3,}")


def parse_mac(value: str, source: str, line: int, what: str = "MAC address") -> str:
    """A MAC address in lower case, or FactError."""
    if not _MAC.fullmatch(value):
        raise FactError(source, line, f"{what} {value!r} is not a MAC address")
    return value.lower()


def parse_uint(value: str, source: str, line: int, what: str) -> int:
    """A small non-negative integer, or FactError."""
    if not _UINT.fullmatch(value):
        # what is "delay=" for an attribute (delay='-1') or a noun ("domain id '-1'").
        shown = f"{what}{value!r}" if what.endswith("=") else f"{what} {value!r}"
        raise FactError(source, line, f"{shown} is not a non-negative integer")
    return int(value)


def virsh_table(text: str, source: str) -> List[Tuple[int, str]]:
    """The rows of a virsh table (net-list, list, domiflist) as (line number, row text).

    virsh prints a header and a line of dashes even for an empty table, so an
    empty capture is refused: it is what a failed or cut-short capture looks like.
    Without header (virsh -q) every non-blank line is a row.
    """
    lines = list(numbered_lines(text))
    filled = [(n, line) for n, line in lines if line.strip()]
    if not filled:
        raise FactError(source, 1, "empty capture: virsh prints a table header even when the list is empty")
    check_virsh_error(filled[0][1], source, filled[0][0])
    dash_at = next((i for i, (_, line) in enumerate(filled) if _DASHES.fullmatch(line.strip())), None)
    if dash_at is None:
        return filled  # virsh -q: rows only
    if dash_at != 1:
        number = filled[dash_at][0]
        raise FactError(source, number, "expected exactly one header line above the dashes")
    return filled[2:]


def check_virsh_error(line: str, source: str, number: int) -> None:
    """FactError quoting virsh's own message, if a capture holds that instead of output."""
    stripped = line.strip()
    if stripped.startswith("error: "):
        raise FactError(source, number, f"virsh failed: {excerpt(stripped, 160, quote='')}")


def split_fields(row: str, left: int, right: int) -> Optional[Sequence[str]]:
    """Split a table row into `left` fields, one middle field (may hold spaces), `right` fields.

    None if the row has too few fields. str.split/rsplit, not a regular
    expression: a name may contain spaces, and a regex with a lazy middle group
    backtracks quadratically on a long line of blanks.
    """
    head = row.split(None, left) if left else [row]
    if len(head) != left + 1:
        return None
    tail = head[left].rsplit(None, right) if right else [head[left]]
    if len(tail) != right + 1:
        return None
    middle = tail[0].strip()
    if not middle:
        return None
    return head[:left] + [middle] + tail[1:]

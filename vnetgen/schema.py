"""Profile v1 as one JSON Schema: it drives structural validation and `vnetgen schema`."""
from __future__ import annotations

from typing import Any, Dict, Iterable

# Names end up in file names, XML and shell words: keep them to a safe alphabet.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Kernel limit: at most 15 bytes (IFNAMSIZ 16 with the NUL); no '/', ':', whitespace, not '.'/'..'.
IFNAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$"
MAC_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}$"
LINK_END_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$"
# Free text (profile name, VM extra args, paths) may not carry control characters.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def _s(pattern: str, description: str, max_length: int = 255, fmt: str = "") -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "string", "pattern": pattern, "maxLength": max_length,
                              "description": description}
    if fmt:
        schema["format"] = fmt
    return schema


NAME = _s(NAME_PATTERN, "a name: letters, digits, '_', '.', '-'", 64)
IFNAME = _s(IFNAME_PATTERN, "an interface name: at most 15 bytes of letters, digits, '_', '.', '-'", 15)
MAC = _s(MAC_PATTERN, "a MAC address, six hex pairs separated by ':'", 17)
UUID = _s(UUID_PATTERN, "a UUID", 36)
IPV4 = _s(r"^[0-9.]+$", "an IPv4 address", 15, "ipv4")
IP_ANY = _s(r"^[0-9A-Fa-f.:]+$", "an IPv4 or IPv6 address", 45, "ip")
IPV4_IFACE = _s(r"^[0-9.]+/[0-9.]+$", "an IPv4 address with prefix, e.g. 192.168.122.1/24", 31,
                "ipv4-interface")
TEXT = _s(TEXT_PATTERN, "text on one line", 1024)
# virt-install splits sub-options on commas, so a disk path cannot hold one.
PATH = _s(r"^/[^,\x00-\x1f\x7f]*$", "an absolute path without commas", 1024)
BOOL = {"type": "boolean"}
DELAY = {"type": "integer", "minimum": 0, "maximum": 30, "description": "forward delay, seconds"}


def _obj(properties: Dict[str, Any], required: Iterable[str] = (), description: str = "") -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _map(value: Dict[str, Any], key_pattern: str, description: str) -> Dict[str, Any]:
    return {"type": "object", "description": description,
            "propertyNames": {"pattern": key_pattern},
            "additionalProperties": value}


NIC = _obj({"hwaddr": MAC, "uuid": UUID, "ip": IPV4_IFACE}, description="a physical NIC")

BRIDGE = _obj({
    "ports": {"type": "array", "items": IFNAME, "description": "NICs enslaved to the bridge"},
    "ip": IPV4_IFACE,
    # "none": the profile accepts that the host's default route (or resolvers) via the ports goes
    "gateway": {"oneOf": [IPV4, {"type": "string", "enum": ["none"], "description": "none"}]},
    "dns": {"oneOf": [{"type": "array", "items": IPV4, "maxItems": 3},
                      {"type": "string", "enum": ["none"], "description": "none"}]},
    "stp": BOOL,
    "delay": DELAY,
    "external": {"type": "boolean",
                 "description": "the bridge exists already and vnetgen does not manage it"},
}, description="a host bridge (not created by libvirt)")

# libvirt's <bandwidth> rates: average and peak in kilobytes per second, burst in kilobytes; libvirt
# needs average. Capped below 10^9 (8 Tbit/s): what the audit's parser reads back.
_KB = {"type": "integer", "minimum": 1, "maximum": 999999999}
RATE = _obj({"average": dict(_KB, description="kilobytes per second"),
             "peak": dict(_KB, description="kilobytes per second"),
             "burst": dict(_KB, description="kilobytes")}, required=("average",),
            description="a traffic shaping rate (libvirt's <inbound>/<outbound>)")
BANDWIDTH = _obj({"inbound": RATE, "outbound": RATE},
                 description="libvirt's <bandwidth>: shaping of the whole network's traffic")
NAT = _obj({
    "addresses": _s(r"^[0-9.]+(-[0-9.]+)?$", "public IPv4 addresses NAT uses: START-END or one address", 31),
    "ports": _s(r"^[0-9]+(-[0-9]+)?$", "source ports NAT uses: START-END (libvirt's default 1024-65535)", 11),
}, description="libvirt's <nat>: the addresses and ports masquerade uses (mode nat only)")

# A port forward into a NAT guest: "ADDRESS:PORT", or "[IPv6]:PORT" as in a URL (plugins/forwards.py).
FORWARD = _obj({
    "proto": {"type": "string", "enum": ["tcp", "udp"], "description": "tcp | udp"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "the host's port"},
    "to": _s(r"^([0-9.]+|\[[0-9A-Fa-f:.]+\]):[0-9]+$", "the guest's ADDRESS:PORT, inside the network's subnet "
             "(an IPv6 address in brackets: [2001:db8::5]:22)", 53),
}, required=("proto", "port", "to"), description="a port of the host forwarded to a guest (mode nat only)")

# libvirt's <domain> and <dns>: vnetgen/netdns.py checks the names' characters and labels (located
# errors that say why, which a failed `oneOf` alternative of `domain` could not).
DNS_NAME = _s(r"^[^\x00-\x20\x7f]+$", "a DNS name: letters, digits, '-', labels separated by '.'", 253)
_U16 = {"type": "integer", "minimum": 0, "maximum": 65535}
DOMAIN = {"oneOf": [DNS_NAME, _obj({
    "name": DNS_NAME,
    "local_only": dict(BOOL, description="dnsmasq answers this domain itself and never forwards it (localOnly)"),
}, required=("name",))], "description": "the network's DNS domain (<domain>): a name, or {name, local_only}"}
DNS = {"oneOf": [dict(BOOL, description="false: no DNS server on the network (<dns enable='no'/>)"), _obj({
    "hosts": {"type": "array", "description": "names dnsmasq answers (<host ip><hostname/></host>)",
              "items": _obj({"ip": IP_ANY, "names": {"type": "array", "items": DNS_NAME, "minItems": 1,
                                                  "maxItems": 64}}, required=("ip", "names"))},
    "forwarders": {"type": "array", "description": "upstream servers (<forwarder addr domain>)",
                   "items": _obj({"addr": _s(r"^[0-9A-Fa-f.:]+$", "an IPv4 or IPv6 address", 45),
                                  "domain": DNS_NAME})},
    "srv": {"type": "array", "description": "SRV records (<srv>)", "items": _obj({
        "service": _s(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,13}[A-Za-z0-9])?$", "a service name (RFC 6335), e.g. ldap", 15),
        "protocol": {"type": "string", "enum": ["tcp", "udp"]},
        "domain": DNS_NAME, "target": DNS_NAME,
        "port": _U16, "priority": _U16, "weight": _U16}, required=("service", "protocol"))},
    "txt": {"type": "array", "description": "TXT records (<txt>)",
            "items": _obj({"name": DNS_NAME, "value": _s(r"^[^\x00-\x1f\x7f]+$", "text on one line", 255)},
                          required=("name", "value"))},
    "forward_plain_names": dict(BOOL, description="forward names without a dot upstream (forwardPlainNames)"),
})], "description": "the network's DNS server (<dns>): false, or its records and forwarders"}

DHCP_HOST = _obj({"mac": MAC, "ip": IPV4, "name": NAME}, required=("ip",))

# `ips:` (vnetgen/netip6.py): IPv4 and IPv6 addresses alike, at most one of each family (IP_ANY above).
IP_ANY_IFACE = _s(r"^[0-9A-Fa-f.:]+/[0-9]+$", "an IPv4 or IPv6 address with prefix, e.g. fd00:1::1/64", 49,
                  "ip-interface")
DUID = _s(r"^[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){3,129}$", "a DHCPv6 client DUID, hex pairs separated by ':'", 389)
IP_ENTRY = _obj({
    "address": IP_ANY_IFACE,
    "dhcp": _obj({"start": IP_ANY, "end": IP_ANY, "hosts": {"type": "array", "items": _obj(
        {"ip": IP_ANY, "mac": dict(MAC, description="IPv4 only: the client's MAC"),
         "id": dict(DUID, description="IPv6 only: the client's DUID"), "name": NAME}, required=("ip",))}},
        required=("start", "end")),
}, required=("address",), description="one address of the network (<ip>): IPv4 or IPv6, with its DHCP")

# The modes direct, hostdev and ovs (plugins/direct.py, hostdev.py, ovs.py): libvirt's vocabulary.
# A PCI address as lspci -D and libvirt print it: DOMAIN:BUS:SLOT.FUNCTION.
PCI_PATTERN = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$"
_TAG = {"type": "integer", "minimum": 0, "maximum": 4095, "description": "an 802.1Q VLAN id"}
VLAN = {"oneOf": [_TAG, {"type": "array", "items": _TAG, "minItems": 1, "maxItems": 64, "uniqueItems": True,
                         "description": "VLAN ids; two or more make a trunk"}],
        "description": "libvirt's <vlan>: one VLAN id (access), or a list (trunk)"}
PORTGROUP = _obj({"default": BOOL, "vlan": VLAN}, description="libvirt's <portgroup>: a named set of "
                 "port settings a guest's interface picks with portgroup=")
MODE_DIRECT_KEYS = {
    "devs": {"type": "array", "items": IFNAME, "minItems": 1, "maxItems": 64, "uniqueItems": True,
             "description": "host NICs a direct (macvtap) network spreads its guests over"},
    "macvtap_mode": {"type": "string", "enum": ["bridge", "vepa", "private", "passthrough"],
                     "description": "how macvtap joins guests to the NIC (direct; default bridge)"},
    "pf": dict(IFNAME, description="the SR-IOV physical function whose VFs a hostdev network hands out"),
    "vfs": {"type": "array", "items": _s(PCI_PATTERN, "a PCI address, e.g. 0000:03:10.0", 12), "minItems": 1,
            "maxItems": 256, "uniqueItems": True, "description": "the VFs of a hostdev network, by PCI address"},
    "vlan": VLAN,
    "portgroups": _map(PORTGROUP, NAME_PATTERN, "libvirt's <portgroup>s, by name"),
}

# Network keys only some modes take: a mode lists the ones it does in `Mode.keys`.
# libvirt refuses <forward dev> in mode open ("forward dev not allowed … with forward mode='open'").
MODE_KEYS = ("nat", "dev", "forwards", *MODE_DIRECT_KEYS)

NETWORK = _obj({
    "mode": _s(NAME_PATTERN, "nat | route | isolated | bridge | open | direct | hostdev | ovs | a plugin's mode", 32),
    "bridge": IFNAME,
    "stp": BOOL,
    "delay": DELAY,
    "mac": MAC,
    "uuid": UUID,
    "mtu": {"type": "integer", "minimum": 68, "maximum": 65535,
            "description": "MTU of the libvirt-created bridge (<mtu size>)"},
    "dev": dict(IFNAME, description="the host interface guests' traffic leaves by (<forward dev>)"),
    "nat": NAT,
    "bandwidth": BANDWIDTH,
    "forwards": {"type": "array", "items": FORWARD,
                 "description": "ports of the host forwarded to guests (DNAT by the network hook)"},
    "domain": DOMAIN,
    "dns": DNS,
    **MODE_DIRECT_KEYS,
    "ip": IPV4_IFACE,
    "dhcp": _obj({"start": IPV4, "end": IPV4,
                  "hosts": {"type": "array", "items": DHCP_HOST}}, required=("start", "end")),
    "ips": {"type": "array", "items": IP_ENTRY, "minItems": 1, "maxItems": 2,
            "description": "the network's addresses, IPv4 and IPv6 (instead of ip and dhcp)"},
    "ports": {"type": "array", "items": IFNAME,
              "description": "host NICs added to the libvirt-created bridge"},
    "autostart": BOOL,
    "state": {"type": "string", "enum": ["active", "inactive", "absent"]},
}, required=("mode",), description="a libvirt network")

VM_NIC = {"oneOf": [NAME, _obj({"network": NAME, "mac": MAC}, required=("network",))]}

VM = _obj({
    "memory": {"type": "integer", "minimum": 1, "maximum": 16777216, "description": "MiB"},
    "vcpus": {"type": "integer", "minimum": 1, "maximum": 4096},
    "networks": {"type": "array", "items": VM_NIC},
    "disk": _obj({"path": PATH, "size": {"type": "integer", "minimum": 1, "maximum": 1048576}},
                 required=("path",)),
    "location": _s(r"^[^\x00-\x1f\x7f]+$", "install media: a path or URL", 1024),
    "import": BOOL,
    "os_variant": _s(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", "an osinfo name, e.g. ubuntu14.04", 64),
    "extra_args": TEXT,
    "graphics": _s(r"^[a-z]+$", "none | vnc | spice", 16),
}, required=("memory", "vcpus", "networks"), description="a virtual machine (virt-install)")

HOST_PROPERTIES: Dict[str, Any] = {
    "target": _s(NAME_PATTERN, "the host's OS family, a target plugin: el7, el9, ubuntu (vnetgen plugins lists them)", 32),
    "nics": _map(NIC, IFNAME_PATTERN, "physical NICs that vnetgen configures"),
    "bridges": _map(BRIDGE, IFNAME_PATTERN, "host bridges"),
    "networks": _map(NETWORK, NAME_PATTERN, "libvirt networks"),
    "vms": _map(VM, NAME_PATTERN, "virtual machines"),
}

HOST = _obj(HOST_PROPERTIES, description="one KVM host")

# How ansible/site.yml and rollback.yml batch the hosts of a wave (Ansible's play keywords; `-e
# vnetgen_serial=…` / `-e vnetgen_max_fail_percentage=…` override them at rollout time).
ROLLOUT = _obj({
    "serial": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 100000},
                         _s(r"^([1-9][0-9]?|100)%$", "a percentage of the wave's hosts, e.g. 20%", 4)],
               "description": "hosts per batch: a number, or a percentage of the wave (default 1)"},
    "max_fail_percentage": {"type": "integer", "minimum": 0, "maximum": 100,
                            "description": "failed hosts a batch may have, in percent, before the rollout "
                                           "stops; Ansible stops when it is exceeded (default 0)"},
}, description="how the bundle's Ansible playbooks batch the hosts")


def profile_schema(modes: Iterable[str] = ()) -> Dict[str, Any]:
    """The JSON Schema of profile v1; `modes` (from the plugins) become the mode enum."""
    host_properties, host = HOST_PROPERTIES, HOST
    modes = sorted(set(modes))
    if modes:
        # One map of networks serves hosts, defaults and the one-host shorthand: the dicts on the
        # way to its `mode` are copied with the enum, the rest of the schema is shared.
        networks = host_properties["networks"]
        network = networks["additionalProperties"]
        mode = {**network["properties"]["mode"], "enum": modes}
        networks = {**networks, "additionalProperties": {**network, "properties": {**network["properties"],
                                                                                     "mode": mode}}}
        host_properties = {**host_properties, "networks": networks}
        host = {**host, "properties": host_properties}
    top: Dict[str, Any] = {
        "vnetgen": {"type": "integer", "const": 1, "description": "format version"},
        "name": TEXT,
        "defaults": host,
        "hosts": _map(host, NAME_PATTERN, "hosts by name"),
        "links": {"type": "array", "description": "cables between hosts",
                  "items": {"type": "array", "minItems": 2, "maxItems": 2,
                            "items": _s(LINK_END_PATTERN, "HOST:NIC", 80)}},
        "rollout": ROLLOUT,
        # one-host shorthand
        "host": NAME,
    }
    top.update(host_properties)
    schema = _obj(top, required=("vnetgen",))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "vnetgen profile v1"
    return schema

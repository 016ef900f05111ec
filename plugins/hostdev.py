"""Mode `hostdev`: a pool of SR-IOV virtual functions libvirt hands to guests as PCI devices.

    networks:
      sriov:
        mode: hostdev
        pf: enp1s0                          # the physical function: libvirt uses all its VFs
        # vfs: [0000:03:10.0, 0000:03:10.2]  # or the VFs themselves, by PCI address
        vlan: 42                            # optional, as libvirt allows on hostdev networks

`<forward mode='hostdev' managed='yes'><pf dev='enp1s0'/></forward>`: libvirt detaches each VF from its
host driver when a guest starts (managed) and gives it back when it stops.
"""
from __future__ import annotations

from vnetgen.api import ImportedNetwork, Mode, cmd, hookimpl, is_ifname, network_element

from ._pool import DefinitionKind, definition, networks_of, requires

MODE = Mode(name="hostdev", description="guests get SR-IOV virtual functions of a host NIC as PCI devices",
            forward="hostdev", libvirt_bridge=False, ip="forbidden", keys=("pf", "vfs", "vlan", "portgroups"),
            importable=False)

# Bash the preflight calls (no profile value in it: each call writes its argument quoted).
HELPERS = """
pci_device_exists() {  # pci_device_exists ADDRESS...: each is a PCI device of this host
  local address missing=()
  for address in "$@"; do [ -e "/sys/bus/pci/devices/$address" ] || missing+=("$address"); done
  if [ "${#missing[@]}" -gt 0 ]; then printf '   missing PCI devices: %s\\n' "${missing[*]}"; return 1; fi
}

is_sriov_pf() {  # is_sriov_pf NIC: NIC is an SR-IOV physical function with VFs enabled
  local vfs
  vfs=$(cat "/sys/class/net/$1/device/sriov_numvfs" 2>/dev/null) || vfs=0
  if [ "${vfs:-0}" -gt 0 ]; then return 0; fi
  printf '   %s has no SR-IOV VFs enabled (/sys/class/net/%s/device/sriov_numvfs)\\n' "$1" "$1"
  return 1
}
"""


@hookimpl
def vnetgen_modes():
    return [MODE]


@hookimpl
def vnetgen_check_kinds():
    return [DefinitionKind("vf-pool", "the SR-IOV pool of a hostdev network: its `<pf dev>` or its VFs' PCI "
                           "addresses", lambda d: d.pf if d.pf is not None else (list(d.pci) or None))]


def _normal(address):
    return address.lower()


@hookimpl
def vnetgen_validate_network(host, network, report):
    if network.mode != MODE.name:
        return
    who = f"network {network.name}"
    if network.pf and network.vfs:
        report.error(network.at("vfs"), f"{who}: give 'pf' or 'vfs', not both")
    elif not network.pf and not network.vfs:
        report.error(network.mark, f"{who}: mode hostdev needs 'pf:' (the SR-IOV NIC) or 'vfs:' (its VFs' PCI "
                                   "addresses, e.g. 0000:03:10.0)")
    if "bridge" in network.marks:
        report.error(network.at("bridge"), f"{who}: mode hostdev uses no bridge (guests get the VFs themselves)")
    if network.pf:
        if network.pf == "lo":
            report.error(network.at("pf"), f"{who}: pf lo is the host's loopback interface")
        elif network.pf in host.bridges:
            report.error(network.at("pf"), f"{who}: pf {network.pf} is a host bridge, not an SR-IOV NIC")
    seen = {}
    for index, address in enumerate(network.vfs):
        key = _normal(address)
        if key in seen:   # the schema compares as written: 0000:03:10.0 and 0000:03:10.0 in other case
            report.error(network.at(f"vfs[{index}]"), f"{who}: VF {address} listed twice (first as {seen[key]})")
        seen.setdefault(key, address)


@hookimpl
def vnetgen_network_xml(host, network, plan):
    if network.mode.name != MODE.name:
        return None
    from lxml import etree

    root = network_element(network)
    forward = root.find("forward")
    forward.set("managed", "yes")
    if network.net.pf:
        etree.SubElement(forward, "pf", dev=network.net.pf)
    for address in network.net.vfs:
        domain, bus, rest = _normal(address).split(":")
        slot, function = rest.split(".")
        etree.SubElement(forward, "address", type="pci", domain=f"0x{domain}", bus=f"0x{bus}", slot=f"0x{slot}",
                         function=f"0x{function}")
    return root


@hookimpl
def vnetgen_import_network(definition):
    """An SR-IOV pool: `<forward mode='hostdev'>` with a PF or VFs (not both)."""
    if definition.forward_mode != MODE.forward or bool(definition.pf) == bool(definition.pci):
        return None
    if definition.pf:
        return ImportedNetwork(MODE.name, (("pf", definition.pf),), ("<forward>",)) if is_ifname(definition.pf) else None
    return ImportedNetwork(MODE.name, (("vfs", list(definition.pci)),), ("<forward>",))


@hookimpl
def vnetgen_shell_helpers(host, plan):
    return HELPERS if networks_of(plan, MODE) else ""


@hookimpl
def vnetgen_steps(host, plan):
    steps = []
    for network in networks_of(plan, MODE):
        net = network.net
        if net.pf:
            steps.append(requires(network, f"SR-IOV NIC {net.pf} has VFs",
                                  (cmd("require_nics", net.pf), cmd("is_sriov_pf", net.pf))))
        else:
            steps.append(requires(network, "its VFs exist", (cmd("pci_device_exists", *map(_normal, net.vfs)),)))
    return steps


@hookimpl
def vnetgen_checks(host, plan):
    checks = []
    for network in networks_of(plan, MODE):
        net = network.net
        if net.pf:
            checks.append(definition("vf-pool", network.name, net.pf, (f"has:<pf dev='{net.pf}'/>",),
                                     f"network {network.name} hands out the VFs of {net.pf}"))
        else:
            vfs = [_normal(a) for a in net.vfs]
            tokens = tuple("has:<address type='pci' domain='0x{}' bus='0x{}' slot='0x{}' function='0x{}'/>".format(
                *a.replace(".", ":").split(":")) for a in vfs) + (f"count:{len(vfs)}:<address type='pci'",)
            checks.append(definition("vf-pool", network.name, vfs, tokens,
                                     f"network {network.name} hands out VFs {', '.join(vfs)}"))
    return checks

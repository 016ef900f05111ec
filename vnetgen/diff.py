"""What changes between two profiles, host by host, and what each change costs on a running host."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import netip6
from .dataclassc import dataclass
from .netfields import FIELDS

# Impact of a change, in the words REVIEW.md and `vnetgen diff` use.
RESTART = "restart"   # libvirt applies it only by restarting the network: its guests lose connectivity briefly
LIVE = "live"         # applied on the running host without a restart
HOST = "host"         # changes the host's own networking (addresses, bridges): may cut the operator off
NEW = "new"
REMOVED = "removed"
MANUAL = "manual"     # vnetgen does not apply it (e.g. a changed VM): done by hand

IMPACT_WORDS = {
    RESTART: "network restarts: its guests lose connectivity briefly",
    LIVE: "applies live, no restart",
    HOST: "changes the host's own networking",
    NEW: "added",
    REMOVED: "removed",
    MANUAL: "not applied by vnetgen (existing VMs are never touched)",
}

# Network properties libvirt can only change by restarting the network.
_RESTART_FIELDS = (("mode", "mode"), ("bridge", "bridge"), ("stp", "stp"), ("delay", "delay"), ("mac", "mac"),
                   ("uuid", "uuid"), ("ip", "address"))


@dataclass(frozen=True)
class Change:
    """One change between two profiles on a host, in a reviewer's words, and its impact."""
    host: str
    object: str      # "network default", "bridge mybridge0", "vm VM1", "host", "sysctl"
    what: str        # in words a reviewer understands
    impact: str

    def line(self) -> str:
        return f"{self.object}: {self.what} ({IMPACT_WORDS[self.impact]})"


def _net_fields(plan: Any) -> Dict[str, Any]:
    net = plan.net
    fields = {"mode": net.mode, "bridge": plan.bridge, "stp": plan.stp, "delay": plan.delay, "mac": plan.mac,
              "uuid": plan.uuid, "ip": str(net.ip) if net.ip else None}
    fields.update((spec.kind, spec.expected(net)) for spec in FIELDS if not spec.live)
    if fields.get("ipv6"):   # its static hosts change live (dhcp6_hosts): the rest only by a restart
        fields["ipv6"] = {k: v for k, v in fields["ipv6"].items() if k != "hosts"}
    return fields


def _live_fields(plan: Any) -> Dict[str, Any]:
    """What `virsh net-update` changes on a running network (DNS hosts, TXT and SRV records)."""
    return {spec.kind: spec.expected(plan.net) for spec in FIELDS if spec.live}


def dhcp_range(plan: Any) -> Optional[Tuple[str, str]]:
    dhcp = plan.net.dhcp
    return (str(dhcp.start), str(dhcp.end)) if dhcp else None


def dhcp_leases(plan: Any) -> Dict[str, Any]:
    from .checks import lease_line

    return {lease_line(lease): lease for lease in (plan.net.dhcp.hosts if plan.net.dhcp else [])}


def dhcp6_hosts(plan: Any) -> List[str]:
    """The DHCPv6 static hosts of a network's IPv6 `<ip>`, as libvirt prints them (netip6.host_line)."""
    return netip6.hosts(plan.net)


def live_dhcp_only(old: Any, new: Any) -> bool:
    """True when `old` → `new` differs only in what `virsh net-update` changes live (DHCP range
    and static leases of an existing DHCP block, DHCPv6 static hosts, DNS hosts, TXT and SRV records).
    `_net_fields` holds the IPv6 address and DHCPv6 range: a DHCPv6 block that comes or goes is a restart."""
    if _net_fields(old) != _net_fields(new) or (old.net.dhcp is None) != (new.net.dhcp is None):
        return False
    dhcp = old.net.dhcp is not None and (dhcp_range(old) != dhcp_range(new)
                                         or list(dhcp_leases(old)) != list(dhcp_leases(new)))
    return dhcp or dhcp6_hosts(old) != dhcp6_hosts(new) or _live_fields(old) != _live_fields(new)


def _added_removed(before: Any, after: Any) -> str:
    """For a list setting (DNS records): which entries come and go."""
    if not isinstance(before or after, list):
        return ""
    added = [k for k in after or [] if k not in (before or [])]
    removed = [k for k in before or [] if k not in (after or [])]
    return "".join(f"; {word} {', '.join(keys)}" for word, keys in (("added", added), ("removed", removed)) if keys)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _network_changes(host: str, old: Any, new: Any) -> List[Change]:
    name = f"network {new.name}"
    out: List[Change] = []
    a, b = _net_fields(old), _net_fields(new)
    for key, label in _RESTART_FIELDS:
        if a[key] != b[key]:
            out.append(Change(host, name, f"{label} {_show(a[key])} → {_show(b[key])}", RESTART))
    a.update(_live_fields(old))
    b.update(_live_fields(new))
    for spec in sorted(FIELDS, key=lambda s: bool(s.live)):  # a live change is live only without a restart
        if a[spec.kind] != b[spec.kind]:
            before, after = ("libvirt's default" if v is None else spec.words(v) for v in (a[spec.kind], b[spec.kind]))
            live = spec.live and not any(c.impact == RESTART for c in out)
            out.append(Change(host, name, f"{spec.kind}: {before} → {after}" + _added_removed(a[spec.kind], b[spec.kind]),
                              LIVE if live else RESTART))
    if (old.net.dhcp is None) != (new.net.dhcp is None):
        out.append(Change(host, name, "DHCP " + ("enabled" if new.net.dhcp else "disabled"), RESTART))
    elif old.net.dhcp is not None:
        impact = LIVE if not any(c.impact == RESTART for c in out) else RESTART
        if dhcp_range(old) != dhcp_range(new):
            out.append(Change(host, name, "DHCP range {}–{} → {}–{}".format(*dhcp_range(old), *dhcp_range(new)),
                              impact))
        before, after = dhcp_leases(old), dhcp_leases(new)
        for line in after:
            if line not in before:
                out.append(Change(host, name, f"static lease added: {line}", impact))
        for line in before:
            if line not in after:
                out.append(Change(host, name, f"static lease removed: {line}", impact))
    out.extend(_dhcp6_changes(host, name, old, new, out))
    if old.net.ports != new.net.ports:
        out.append(Change(host, name, f"trunk ports {old.net.ports or 'none'} → {new.net.ports or 'none'}", LIVE))
    if old.net.autostart != new.net.autostart:
        out.append(Change(host, name, f"autostart {_show(old.net.autostart)} → {_show(new.net.autostart)}", LIVE))
    if old.net.state != new.net.state:
        impact = REMOVED if new.net.state == "absent" else LIVE
        out.append(Change(host, name, f"state {old.net.state} → {new.net.state}", impact))
    return out


def _dhcp6_changes(host: str, name: str, old: Any, new: Any, so_far: List[Change]) -> List[Change]:
    """DHCPv6 static hosts added or removed, when both profiles have a DHCPv6 block (else the `ipv6`
    change says it): `virsh net-update … ip-dhcp-host --parent-index N`, live unless the network restarts."""
    if old.net.ip6 is None or new.net.ip6 is None or old.net.ip6.dhcp is None or new.net.ip6.dhcp is None:
        return []
    impact = LIVE if not any(c.impact == RESTART for c in so_far) else RESTART
    before, after = dhcp6_hosts(old), dhcp6_hosts(new)
    return ([Change(host, name, f"DHCPv6 static host added: {line}", impact) for line in after if line not in before] +
            [Change(host, name, f"DHCPv6 static host removed: {line}", impact) for line in before if line not in after])


def _bridge_changes(host: str, old: Any, new: Any, old_delay: Optional[int], new_delay: Optional[int]) -> List[Change]:
    """The delay compared is the one the bundle writes (the planner's: an unset delay is 0, or 2 s
    with STP), so that `delay: 0` and no delay at all are not a change."""
    out = []
    for key in ("ports", "ip", "gateway", "dns", "stp", "delay", "external"):
        a, b = (old_delay, new_delay) if key == "delay" else (getattr(old, key), getattr(new, key))
        if a != b:
            out.append(Change(host, f"bridge {new.name}", f"{key} {_show(a)} → {_show(b)}", HOST))
    return out


def _paired(before: Dict[str, Any], after: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """(name, old or None, new or None) for every name of either map: old order, then new names."""
    names = list(before) + [n for n in after if n not in before]
    return [(n, before.get(n), after.get(n)) for n in names]


def host_changes(name: str, old: Optional[Any], new: Optional[Any]) -> List[Change]:
    """Changes of one host between two plans (either may be None: host added or removed)."""
    if old is None:
        return [Change(name, "host", "new host", NEW)]
    if new is None:
        return [Change(name, "host", "no longer in the profile (nothing is removed from it)", REMOVED)]
    out: List[Change] = []
    for net_name, a, b in _paired(old.networks, new.networks):
        if a is None:
            out.append(Change(name, f"network {net_name}", f"new {b.net.mode} network", NEW))
        elif b is None:
            out.append(Change(name, f"network {net_name}", "no longer in the profile (left as it is; "
                                                           "use state: absent to remove it)", REMOVED))
        else:
            out.extend(_network_changes(name, a, b))
    for br_name, a, b in _paired(old.host.bridges, new.host.bridges):
        if a is None:
            out.append(Change(name, f"bridge {br_name}", "new host bridge", HOST))
        elif b is None:
            out.append(Change(name, f"bridge {br_name}", "no longer in the profile (left as it is)", REMOVED))
        else:
            out.extend(_bridge_changes(name, a, b, old.bridge_delay.get(br_name), new.bridge_delay.get(br_name)))
    before = {s.key: s.value for s in old.sysctl}
    after = {s.key: s.value for s in new.sysctl}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            out.append(Change(name, "sysctl", f"{key} {before.get(key, 'unset')} → {after.get(key, 'unset')}",
                              LIVE))
    for vm, a, b in _paired(old.host.vms, new.host.vms):
        if a is None:
            out.append(Change(name, f"vm {vm}", "installed with virt-install", NEW))
        elif b is None:
            out.append(Change(name, f"vm {vm}", "no longer in the profile (the domain is left as it is)", REMOVED))
        elif _vm_fields(a) != _vm_fields(b) or not _same_macs(a, b):
            out.append(Change(name, f"vm {vm}", "definition changed", MANUAL))
    return out


def _vm_fields(vm: Any) -> Tuple:
    """What a defined VM is: its domain's memory, vCPUs, NICs, disk and graphics. How it was installed
    (disk size, location or import, os_variant, extra_args) is not compared: the runbook installs
    only a VM that does not exist, and one in both profiles exists already."""
    return (vm.memory, vm.vcpus, [n.network for n in vm.networks], vm.disk_path, vm.graphics or "none")


def _same_macs(old: Any, new: Any) -> bool:
    """A NIC's MAC changes only when both profiles pin one: pinning the MAC a VM has (or no longer
    pinning it) changes nothing on the host (the audit checks a pinned one)."""
    return all(a.mac is None or b.mac is None or a.mac.lower() == b.mac.lower()
               for a, b in zip(old.networks, new.networks))


def diff_plans(old: List[Any], new: List[Any]) -> List[Change]:
    out: List[Change] = []
    for name, a, b in _paired({p.name: p for p in old}, {p.name: p for p in new}):
        out.extend(host_changes(name, a, b))
    return out


def diff_links(old_profile: Any, new_profile: Any) -> List[Change]:
    def ends(profile: Any) -> List[str]:
        return sorted(" ↔ ".join(sorted(f"{e.host}:{e.nic}" for e in link.ends)) for link in profile.links)

    a, b = ends(old_profile), ends(new_profile)
    return ([Change("fleet", "link", f"{link} added", HOST) for link in b if link not in a] +
            [Change("fleet", "link", f"{link} removed", HOST) for link in a if link not in b])

"""VLAN sub-interfaces as bridge ports, on every target: a host bridge's port (or a libvirt network's
trunk port) named PARENT.ID, e.g. `ens2.100`, is 802.1Q VLAN ID on NIC PARENT.

Decisions (docs/profile.md, "VLAN ports"):
- The name says it all, as it does for `ip link`, initscripts (ifcfg-ens2.100) and netplan: no separate
  key. A dotted port name whose last part is not a number is a plain NIC, as before.
- ID 1-4094 (0 and 4095 are reserved), written without leading zeros; the name is an interface name
  (at most 15 bytes), checked like every port.
- The parent is a NIC: not a bridge of the profile, and not itself a bridge port (a bridge's receive
  handler takes every frame of its ports first, so VLANs of a bridged NIC get nothing reliably). The
  parent may keep an untagged address of its own.
- Live, the runbook creates the sub-interface (`ip link add link PARENT name DEV type vlan id ID`)
  before the bridges take their ports; rollback.sh deletes it when the runbook created it. Each target
  persists it (ifcfg VLAN=yes, a NetworkManager vlan connection, netplan `vlans:`)."""
from __future__ import annotations

from typing import Dict, List

from vnetgen.api import HOST_BRIDGES, Action, Check, CheckKind, Step, cmd, hookimpl

from ._vlan import VLAN_MAX, VLAN_MIN, Vlan, host_vlans, split

FUNCTIONS = r"""
vlan_is() {  # vlan_is DEV PARENT ID: DEV is 802.1Q VLAN ID on PARENT
  local link
  link=$(ip -o -d link show dev "$1" 2>/dev/null) || return 1
  grep -qF ": $1@$2:" <<<"$link" && grep -qE " vlan protocol 802\.1Q id $3 " <<<"$link "
}
"""


@hookimpl
def vnetgen_validate_host(host, report) -> None:
    holders = [(f"bridge {b.name}", b, b.ports) for b in host.bridges.values() if not b.external]
    holders += [(f"network {n.name}", n, n.ports) for n in host.networks.values() if n.state != "absent"]
    bridged = {p for _, _, ports in holders for p in ports}
    for who, obj, ports in holders:
        for index, port in enumerate(ports):
            parts = split(port)
            if parts is None:
                continue
            parent, written = parts
            mark = obj.at(f"ports[{index}]")
            if written != str(int(written)):
                report.error(mark, f"{who}: VLAN port {port}: write the VLAN id without leading zeros "
                                   f"({parent}.{int(written)})")
            elif not VLAN_MIN <= int(written) <= VLAN_MAX:
                report.error(mark, f"{who}: VLAN port {port}: VLAN id {int(written)} is out of range "
                                   f"{VLAN_MIN}-{VLAN_MAX} (0 and 4095 are reserved by 802.1Q)")
            if parent in bridged:
                report.error(mark, f"{who}: VLAN port {port}: its parent {parent} is itself a bridge port; the "
                                   "bridge would take its frames before the VLAN sees them: give the bridge "
                                   f"{parent}'s untagged traffic through another NIC or a VLAN port")
            if parent in host.bridges:
                report.error(mark, f"{who}: VLAN port {port}: its parent {parent} is a bridge of the profile; "
                                   "a VLAN port's parent must be a NIC")
            if split(parent) is not None:
                report.error(mark, f"{who}: VLAN port {port}: its parent {parent} is a VLAN itself "
                                   "(stacked VLANs are not supported)")


def _vlans(plan) -> Dict[str, Vlan]:
    try:
        bridge_of = {name: net.bridge for name, net in plan.networks.items()}
        return host_vlans(plan.host, bridge_of)
    except AttributeError:   # docgen's stand-in plan
        return {}


def create(vlan: Vlan) -> str:
    return cmd("ip", "link", "add", "link", vlan.parent, "name", vlan.name, "type", "vlan", "id", vlan.id)


@hookimpl
def vnetgen_shell_helpers(host, plan) -> str:
    return FUNCTIONS if plan is None or _vlans(plan) else ""


@hookimpl
def vnetgen_checks(host, plan) -> List[Check]:
    return [Check("vlan-port", f"nic/{v.name}", f"{v.parent} id {v.id}", cmd("vlan_is", v.name, v.parent, v.id),
                  create(v), words=f"{v.name} is VLAN {v.id} on {v.parent}",
                  params=(("parent", v.parent), ("id", v.id)))
            for v in _vlans(plan).values()]


@hookimpl
def vnetgen_steps(host, plan) -> List[Step]:
    steps = []
    for rank, vlan in enumerate(_vlans(plan).values()):
        record = f"vlan-{vlan.name}"
        actions = (Action(commands=(create(vlan),), check=cmd("vlan_is", vlan.name, vlan.parent, vlan.id),
                          done=f"{vlan.name} is VLAN {vlan.id} on {vlan.parent}", record=record),
                   Action(commands=(cmd("ip", "link", "set", vlan.parent, "up"),), check=cmd("link_is_up", vlan.parent),
                          done=f"{vlan.parent} is up"),
                   Action(commands=(cmd("ip", "link", "set", vlan.name, "up"),), check=cmd("link_is_up", vlan.name),
                          done=f"{vlan.name} is up"))
        created = cmd("created", record)
        undo = (Action(commands=(cmd("ip", "link", "delete", vlan.name), cmd("forget", record)),
                       check=f"! {created} || ! " + cmd("test", "-e", f"/sys/class/net/{vlan.name}")),)
        steps.append(Step((HOST_BRIDGES, -2, rank, vlan.name), f"VLAN port {vlan.name}",
                          f"{vlan.master or 'the bridge'} takes {vlan.parent}'s frames tagged {vlan.id} through "
                          f"{vlan.name}; the bridge step enslaves it", actions, undo))
    return steps


class VlanPort(CheckKind):
    name = "vlan-port"
    summary = "a VLAN port (PARENT.ID) exists and is 802.1Q VLAN ID on PARENT"
    captures = ("the target's link file",)

    def evaluate(self, check: Check, ev) -> None:
        links = ev.obs.networking.links
        if links is None:
            ev.skip(f"{check.object} vlan", ev.obs.networking.missing.get("links", "links not captured"))
            return
        link = links.get(check.object.split("/", 1)[1])
        if link is None:
            ev.drift(check, None)
        elif link.kind != "vlan" or link.parent != check.param("parent") or link.vlan_id != check.param("id"):
            actual = f"{link.parent} id {link.vlan_id}" if link.kind == "vlan" else f"a {link.kind or 'NIC'}"
            ev.drift(check, actual, fix=cmd("ip", "link", "delete", link.name) + " && " + check.fix)


@hookimpl
def vnetgen_check_kinds() -> List[CheckKind]:
    return [VlanPort()]

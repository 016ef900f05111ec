"""Target `ubuntu` (Ubuntu 20.04+, Debian with netplan.io): host bridges live with iproute2, persisted
as one netplan YAML (renderer networkd) that the next boot agrees with.

Decisions (README, "Targets"):
- The runbook never runs `netplan apply`: the live state is made by the guarded iproute2 actions every
  target shares, and `netplan apply` restarts networkd-managed links (it can cut the SSH session the
  runbook runs in); `netplan try` refuses bridges with parameters. The YAML makes the next boot agree.
- Before anything changes, preflight renders the host's whole netplan configuration with our file in
  place (`netplan generate --root-dir` on a scratch copy) and refuses when netplan rejects it, reports
  conflicting default routes, or another netplan file still gives a bridge port an address, a gateway
  or DHCP (netplan merges definitions across files, so that address would come back at boot).
- Trunk ports of libvirt-created bridges are not in the YAML: networkd detaches a link it manages from
  a master its .network file does not name (netplan has no KeepMaster=), which would undo the libvirt
  hook that enslaves them. Unmanaged by networkd, they are brought up and enslaved by the hook.
- Bridges a later profile removes (`build --against OLD`) are deleted live with `ip link delete`
  (netplan never deletes a bridge that left its YAML), unless the default route still goes through one.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import yaml

from vnetgen.api import (HOST_BRIDGES, PREFLIGHT, Action, Artifact, CaptureFile, FactError, Step, cmd, here, hookimpl,
                         install_file, q, restore_file, under_root, virt_install)

from ._vlan import host_vlans
from .iproute2 import HELPERS, IpRoute2Target, resolver_list

NETPLAN_FILE = "netplan/90-vnetgen.yaml"
NETPLAN_DEST = "/etc/netplan/90-vnetgen.yaml"
NETPLAN_GET = "netplan-get.yaml"
# Every device kind of netplan that can carry nameservers.
_NETPLAN_KINDS = ("ethernets", "bridges", "bonds", "vlans", "wifis", "tunnels", "vrfs", "modems")

NETPLAN_HELPERS = r"""
_netplan_copy() {  # _netplan_copy DIR SCRATCHDIR: DIR's *.yaml, if any, into SCRATCHDIR
  local file
  [ -d "$1" ] || return 0
  for file in "$1"/*.yaml; do
    if [ -f "$file" ]; then cp "$file" "$2/"; fi
  done
}

netplan_check() {  # netplan_check FILE DEST [PORT...]: netplan accepts the host's configuration with FILE
  # installed as DEST, and no netplan file gives a bridge PORT an address, gateway or DHCP. Renders into
  # a scratch root (`netplan generate --root-dir`): nothing on the host changes.
  local scratch out status=0 port rendered file dest=$2
  scratch=$(mktemp -d) || return 1
  [ -n "$scratch" ] && [ -d "$scratch" ] || return 1
  mkdir -p "$scratch/lib/netplan" "$scratch/run/netplan" "$scratch/etc/netplan"
  _netplan_copy /lib/netplan "$scratch/lib/netplan"
  _netplan_copy /run/netplan "$scratch/run/netplan"
  _netplan_copy "${2%/*}" "$scratch/etc/netplan"
  cp "$1" "$scratch/etc/netplan/${2##*/}"
  chmod 600 "$scratch"/*/netplan/*.yaml
  out=$(netplan generate --root-dir "$scratch" 2>&1) || status=$?
  out=${out//"$scratch/etc/"/"${2%/etc/netplan/*}/etc/"}   # name the host's files, not their scratch copies
  out=${out//"$scratch/"/"/"}
  if [ "$status" != 0 ]; then
    printf 'netplan generate refuses the configuration with %s installed:\n%s\n' "$2" "$out" >&2
  elif grep -q 'Conflicting default route' <<<"$out"; then
    printf 'netplan reports conflicting default routes with %s installed:\n%s\n' "$2" "$out" >&2
    status=1
  fi
  shift 2
  for port in "$@"; do
    [ "$status" = 0 ] || break
    rendered="$scratch/run/systemd/network/10-netplan-$port.network"
    if [ -f "$rendered" ] && grep -Eq '^(Address|Gateway)=|^DHCP=(yes|ipv4|ipv6)' "$rendered"; then
      printf '%s is a bridge port, but a netplan file also gives it an address, gateway or DHCP ' "$port" >&2
      printf '(netplan merges definitions across files): remove %s from it. Files naming it:\n' "$port" >&2
      for file in /lib/netplan/*.yaml /run/netplan/*.yaml "${dest%/*}"/*.yaml; do
        if [ -f "$file" ] && [ "$file" != "$dest" ] && grep -qw -- "$port" "$file"; then
          printf '  %s\n' "$file" >&2
        fi
      done
      status=1
    fi
  done
  rm -rf "$scratch"
  return "$status"
}

holds_default_route() {  # holds_default_route DEV: an IPv4 default route goes through DEV
  local routes
  routes=$(default_routes) || return 1
  awk -v dev="$1" '$2 == dev { found = 1 } END { exit !found }' <<<"$routes"
}
"""


class Ubuntu(IpRoute2Target):
    name = "ubuntu"
    description = "Ubuntu 20.04+, Debian with netplan: one netplan YAML (networkd), iproute2"
    tools = ("ip", "netplan")
    versions = "Ubuntu 20.04, 22.04, 24.04; Debian 12+ with netplan.io"
    persists = f"one netplan YAML, {NETPLAN_DEST} (0600, renderer networkd)"
    os_release = (("ubuntu", ""), ("debian", ""))

    def shell_helpers(self) -> str:
        return HELPERS + NETPLAN_HELPERS

    def resolver_capture(self) -> Optional[CaptureFile]:
        return CaptureFile(NETPLAN_GET, ("netplan", "get", "all"), "the host's netplan configuration, all files "
                           "merged (each device's nameservers; `vnetgen import` reads them)", required=False,
                           since=5, owner="ubuntu")

    def parse_resolvers(self, text: str, where: str) -> Tuple[Dict[str, Tuple[str, ...]], Dict[str, str]]:
        return parse_netplan_dns(text, where)

    def validate(self, host: Any, report: Any) -> None:
        for net in host.networks.values():
            for index, port in enumerate(net.ports if net.state != "absent" else ()):
                if port in host_vlans(host) and not host_vlans(host)[port].host_bridge:
                    # networkd would detach a VLAN it creates from libvirt's bridge (see above)
                    report.error(net.at(f"ports[{index}]"), f"network {net.name}: VLAN trunk port {port}: target "
                                 "ubuntu cannot persist a VLAN port of a libvirt bridge (networkd would detach "
                                 "it); make it a host bridge's port and use mode: bridge")
        for nic in host.nics.values():
            if nic.uuid:
                report.warning(nic.at("uuid"), f"nic {nic.name}: target ubuntu ignores uuid (a connection UUID "
                                               "of ifcfg/NetworkManager; netplan with networkd has none)")

    def host_files(self, plan: Any) -> List[Artifact]:
        text = netplan_yaml(plan)
        return [Artifact(NETPLAN_FILE, text, 0o600)] if text is not None else []

    def host_steps(self, plan: Any) -> List[Step]:
        steps = [self.bridge_step(plan, b, rank) for rank, b in enumerate(plan.host.bridges.values())
                 if not b.external]
        steps += self.removed_bridge_steps(plan)
        if netplan_yaml(plan) is None:
            return steps
        ports = sorted({p for b in plan.host.bridges.values() if not b.external for p in b.ports})
        steps.append(Step((PREFLIGHT, 1, "netplan"), "netplan accepts the new configuration",
                          "the host's netplan files with ours in place are rendered in a scratch directory "
                          "(netplan generate --root-dir): a file netplan refuses, two default routes, or an "
                          "address another file gives a bridge port would break the next boot",
                          (Action(check=cmd("netplan_check", here(NETPLAN_FILE), under_root(NETPLAN_DEST), *ports),
                                  kind="require"),)))
        install = install_file(NETPLAN_FILE, NETPLAN_DEST, "0600")
        steps.append(Step((HOST_BRIDGES, 1 << 20), "persist interfaces (netplan)",
                          "networkd recreates the same bridges, ports and addresses at boot; the runbook does "
                          "not run `netplan apply` (the live state is already made, and apply restarts links)",
                          (install,), (restore_file(NETPLAN_DEST),)))
        return steps

    def removed_bridge_steps(self, plan: Any) -> List[Step]:
        """Host bridges of the previous profile (`build --against OLD`) that this one drops: netplan never
        deletes a bridge that left its YAML, so the runbook deletes it live."""
        if plan.previous is None:
            return []
        steps = []
        for name, bridge in plan.previous.host.bridges.items():
            if name in plan.host.bridges or bridge.external:
                continue
            is_bridge = f"[ -d /sys/class/net/{q(name)}/bridge ]"
            # the default route must not go through the bridge about to go
            actions = (Action(check=f"! {is_bridge} || ! " + cmd("holds_default_route", name), kind="require"),
                       Action(commands=self.delete_bridge(name), check="! " + is_bridge,
                              done=f"bridge {name} is gone"))
            steps.append(Step((HOST_BRIDGES, 1 << 19, name), f"remove host bridge {name}",
                              f"the previous profile had {name}, this one does not, and netplan never deletes a "
                              "bridge that left its YAML; rollback.sh restores the previous YAML, which brings "
                              "it back at the next boot, not live", actions))
        return steps

    def vm_install(self, vm: Any) -> Optional[List[str]]:
        # --memory/--vcpus (virt-install 1.3+); --os-variant, which 4.x also spells --osinfo and requires:
        # `generic` when the profile names none (`--osinfo detect=on` is unknown to 20.04's virtinst 2.2).
        return virt_install(vm, os=["--os-variant", vm.os_variant or "generic"])


def parse_netplan_dns(text: str, where: str) -> Tuple[Dict[str, Tuple[str, ...]], Dict[str, str]]:
    """netplan-get.yaml (`netplan get all`: every netplan file merged): device → nameservers.addresses."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise FactError(where, mark.line + 1 if mark is not None else 1, "not YAML netplan could have printed") from None
    network = doc.get("network") if isinstance(doc, dict) else None
    found: Dict[str, Tuple[str, ...]] = {}
    unreadable: Dict[str, str] = {}
    for kind in _NETPLAN_KINDS:
        devices = network.get(kind) if isinstance(network, dict) else None
        for device, settings in (devices.items() if isinstance(devices, dict) else ()):
            servers = settings.get("nameservers") if isinstance(settings, dict) else None
            addresses = servers.get("addresses") if isinstance(servers, dict) else None
            if addresses is None:
                found[str(device)] = ()
            elif not isinstance(addresses, list):
                unreadable[str(device)] = f"{where}: {kind}.{device}.nameservers.addresses is not a list"
            else:
                found[str(device)], why = resolver_list([str(a) for a in addresses], f"{where}: {kind}.{device}")
                if why:
                    unreadable[str(device)] = why
    return found, unreadable


TARGET = Ubuntu()


@hookimpl
def vnetgen_targets():
    return [TARGET]


def _ethernet(host: Any, name: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"dhcp4": False, "dhcp6": False}
    nic = host.nics.get(name)
    if nic is not None and nic.hwaddr:
        # set-name also puts Name= in networkd's [Match]: a bridge that inherits the port's MAC never matches
        entry["match"] = {"macaddress": nic.hwaddr.lower()}
        entry["set-name"] = name
    return entry


def netplan_config(plan: Any) -> Dict[str, Any]:
    """The netplan `network:` mapping: managed host bridges, their ports and numbered NICs."""
    host = plan.host
    ethernets: Dict[str, Any] = {}
    bridges: Dict[str, Any] = {}
    vlans = host_vlans(host)
    found_vlans: Dict[str, Any] = {}
    for bridge in host.bridges.values():
        if bridge.external:
            continue
        for port in bridge.ports:
            if port in vlans:
                vlan = vlans[port]
                found_vlans[port] = {"id": vlan.id, "link": vlan.parent, "dhcp4": False, "dhcp6": False}
                continue
            ethernets[port] = _ethernet(host, port)
        entry: Dict[str, Any] = {"interfaces": list(bridge.ports), "dhcp4": False, "dhcp6": False,
                                 # netplan's default is STP on: always written
                                 "parameters": {"stp": bool(bridge.stp),
                                                "forward-delay": plan.bridge_delay[bridge.name]}}
        if bridge.ip is not None:
            entry["addresses"] = [bridge.ip.with_prefixlen]
            if bridge.gateway is not None:
                # 0.0.0.0/0, not `default`: netplan before 0.103 (Ubuntu 20.04) does not know `default`
                entry["routes"] = [{"to": "0.0.0.0/0", "via": str(bridge.gateway)}]
            if bridge.dns:
                entry["nameservers"] = {"addresses": [str(d) for d in bridge.dns]}
        bridges[bridge.name] = entry
    for nic in host.nics.values():
        if nic.name not in ethernets and nic.ip is not None:
            ethernets[nic.name] = dict(_ethernet(host, nic.name), addresses=[nic.ip.with_prefixlen])
    for vlan in found_vlans.values():
        # netplan's `link:` must name an interface it defines: the parent, unnumbered unless the profile numbers it
        ethernets.setdefault(vlan["link"], _ethernet(host, vlan["link"]))
    network: Dict[str, Any] = {"version": 2, "renderer": "networkd"}
    if found_vlans:
        network["vlans"] = found_vlans
    if ethernets:
        network["ethernets"] = ethernets
    if bridges:
        network["bridges"] = bridges
    return network


def netplan_yaml(plan: Any) -> Optional[str]:
    """The bundle's netplan file, or None when the host has nothing for netplan to persist (and the
    previous profile of `build --against` had nothing either, so no file of ours is left behind)."""
    network = netplan_config(plan)
    if len(network) == 2 and not (plan.previous is not None and len(netplan_config(plan.previous)) > 2):
        return None
    import yaml

    # safe_dump quotes every key and value that needs it: no profile value can change the structure.
    body = yaml.safe_dump({"network": network}, sort_keys=True, default_flow_style=False, allow_unicode=False)
    return (f"# generated by vnetgen for host {plan.host.name}; netplan reads it at boot (renderer networkd).\n"
            "# Do not edit: rebuild the bundle and run its runbook.\n" + body)

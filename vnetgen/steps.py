"""The runbook steps every host shares, whatever its modes: preflight, sysctl, networks, ports, VMs, verify."""
from __future__ import annotations

import re
from typing import Any, Iterable, List

from .api import (BACKUP, HOST_BRIDGES, NETWORKS, PORTS, PREFLIGHT, SYSCTL, VERIFY, VMS, Action, Step,
                  install_file, restore_file)
from .checks import definition_tokens, find
from .netdns import live_updates
from .netip6 import parent_index
from .shell import cmd, here, under_root

HOOK_PATH = "/etc/libvirt/hooks/network"

def core_steps(plan: Any, pm: Any) -> Iterable[Step]:
    yield _preflight(plan)
    if plan.sysctl:
        yield _sysctl(plan)
    for bridge in plan.host.bridges.values():
        if bridge.external:
            check = find(plan.checks, "bridge-missing", f"bridge/{bridge.name}")[0]
            yield Step((HOST_BRIDGES, -1, bridge.name), f"external bridge {bridge.name}",
                       "the profile says it exists already; vnetgen does not manage it",
                       (Action(check=check.test, kind="require"),))
    yield from _networks(plan)
    yield from _ports(plan)
    for vm in plan.host.vms.values():
        argv = plan.target.vm_install(vm)
        if argv:
            yield Step((VMS, 0, vm.name), f"virtual machine {vm.name}",
                       "installed with virt-install unless a domain of that name exists; "
                       "an existing VM is never touched", skip_flag="NO_VMS", actions=
                       (Action(commands=(cmd(*argv),), check=cmd("virsh", "dominfo", vm.name) + " >/dev/null 2>&1",
                               done=f"domain {vm.name} exists"),))
    yield Step((VERIFY, 0), "verify", "the same checks `vnetgen audit` makes; any drift fails the run",
               (require("verify_all"),))


_VLAN_PORT = r"(?<=.)\.[0-9]+$"   # compiled when a port has a dot (most have none)


def require(check: str) -> Action:
    return Action(check=check, kind="require")


def _preflight(plan: Any) -> Step:
    tools = ["virsh", "sha256sum", "sysctl", "flock", "setsid", *plan.target.tools]
    ports = {p for b in plan.host.bridges.values() for p in b.ports} | {p for n in plan.host.networks.values()
                                                                          for p in n.ports}
    # a VLAN port PARENT.ID is made by the runbook (plugin vlan): its parent NIC must exist
    nics = sorted({re.sub(_VLAN_PORT, "", p) if "." in p else p for p in ports} | set(plan.host.nics))
    actions = [require(cmd("require_host", plan.host.name)), require("require_root"),
               require(cmd("require_tools", *sorted(set(tools)))),
               require("require_libvirtd"), require(cmd("require_checksums", plan.host.name))]
    if nics:
        actions.append(require(cmd("require_nics", *nics)))
    if plan.host.vms:
        actions.append(require(cmd("require_vm_tools", "virt-install")))
    actions += plan.target.preflight(plan)
    actions += _keeps_host_config(plan)
    actions += _no_clashes(plan)
    return Step((PREFLIGHT, 0), "preflight",
                "stop before changing anything if this is not the host, the tools are missing, "
                "libvirtd is down, a NIC is absent, the bundle was altered, a port would take the host's "
                "address, default route or resolvers with it, or a name, UUID or subnet is taken", tuple(actions))


def _keeps_host_config(plan: Any) -> List[Action]:
    """A NIC that joins a bridge gives up its own addresses, default route and resolvers: refuse before
    any change unless the profile moves each of them to the bridge, or says `none` to give it up."""
    actions: List[Action] = []
    for bridge in plan.host.bridges.values():
        if bridge.external or not bridge.ports:
            continue
        cidr = bridge.ip.with_prefixlen if bridge.ip is not None else "-"
        actions.append(require(cmd("keeps_addresses", bridge.name, cidr, *bridge.ports)))
        if bridge.gateway is None and not bridge.no_gateway:
            actions.append(require(cmd("keeps_default_route", bridge.name, *bridge.ports)))
        if not bridge.dns and not bridge.no_dns:
            actions.append(require(cmd("keeps_resolvers", bridge.name, *bridge.ports)))
    return actions


def _no_clashes(plan: Any) -> List[Action]:
    """What the runbook will create must be free on the host: libvirt refuses a bridge name, UUID or
    subnet in use only when it is too late (half the networks applied, sysctl already changed)."""
    actions: List[Action] = []
    for bridge in plan.host.bridges.values():
        if not bridge.external:
            actions.append(require(cmd("host_bridge_free", bridge.name)))
    for net in plan.networks.values():
        if net.net.state == "absent":
            continue
        actions.append(require(cmd("uuid_free", net.uuid, net.name)))
        if net.bridge and net.mode.libvirt_bridge:
            actions.append(require(cmd("bridge_name_free", net.bridge, net.name)))
            if net.net.ip is not None and net.net.state == "active":
                actions.append(require(cmd("subnet_free", str(net.net.ip.network), net.bridge)))
    return actions


def _sysctl(plan: Any) -> Step:
    dest = plan.target.sysctl_path
    actions: List[Action] = [install_file("sysctl.d/90-vnetgen.conf", dest)]
    for setting in plan.sysctl:
        proc = "/proc/sys/" + setting.key.replace(".", "/")
        check = f"[ \"$(cat {proc})\" = {setting.value} ]"
        if setting.key.startswith("net.bridge."):
            # Exists only while br_netfilter is loaded; without it bridged traffic skips the firewall anyway.
            check = f"[ ! -e {proc} ] || {check}"
        actions.append(Action(commands=(cmd("set_sysctl", setting.key, setting.value),), check=check,
                              done=f"{setting.key} is {setting.value}"))
    # The live values too: rollback.sh puts back what set_sysctl found before the first run.
    undo = [restore_file(dest)] + [Action(commands=(cmd("restore_sysctl", s.key),),
                                          check=f"[ ! -e \"$BACKUP/sysctl/{s.key}\" ]",
                                          done=f"{s.key}: nothing to restore") for s in plan.sysctl]
    whys = list(dict.fromkeys(s.why for s in plan.sysctl))
    return Step((SYSCTL, 0), "sysctl", "; ".join(whys) + "; the drop-in keeps it across reboots", tuple(actions),
                undo=tuple(undo))


def _networks(plan: Any) -> Iterable[Step]:
    nets = list(plan.networks.values())
    backup = [Action(commands=(cmd("backup_net", n.name),),
                     check=f"[ -e \"$BACKUP/networks/{n.name}.xml\" ] || " + cmd("created", f"network-{n.name}"),
                     done=f"network {n.name}: its state before the first run is kept already")
              for n in nets]
    if backup:
        yield Step((BACKUP, 0), "back up networks",
                   "keep each network's definition and state as they were before the first run (or note that "
                   "it did not exist), for rollback.sh", tuple(backup))
    # Removals first, so their bridge names and subnets are free for what follows.
    for rank, net_plan in enumerate(sorted(nets, key=lambda n: n.net.state != "absent")):
        yield _network_step(plan, net_plan, rank)


def _network_step(plan: Any, np_: Any, rank: int) -> Step:
    name, net = np_.name, np_.net
    exists = cmd("net_exists", name)
    active = cmd("net_info_is", name, "Active", "yes")
    undo = (Action(commands=(cmd("restore_net", name),),
                   check=f"[ ! -e \"$BACKUP/networks/{name}.xml\" ] && ! " + cmd("created", f"network-{name}"),
                   done=f"network {name}: nothing to restore"),)
    if net.state == "absent":
        return Step((NETWORKS, rank, name), f"remove network {name}",
                    "the profile marks it absent; its definition is backed up first",
                    (Action(commands=(cmd("virsh", "net-destroy", name),), check="! " + active,
                            done=f"network {name} is not running"),
                     Action(commands=(cmd("virsh", "net-undefine", name),), check="! " + exists,
                            done=f"network {name} is not defined")), undo)
    tokens = definition_tokens(plan.checks, name)
    pinned = "pinned-uuid" if net.uuid else "keep-uuid"
    old = plan.previous.networks.get(name) if plan.previous else None
    live = _live_dhcp_actions(old, np_) if old is not None else []
    actions = live + [Action(commands=(cmd("define_net", name, here(f"networks/{name}.xml"), pinned),),
                      check=cmd("net_xml_match", "--inactive", name, *tokens),
                      done=f"definition of {name} is up to date")]
    if net.state == "active":
        actions.append(Action(commands=(cmd("virsh", "net-start", name),), check=active,
                              done=f"network {name} is running"))
        # A running network keeps its old live config until restarted (guests lose connectivity briefly).
        actions.append(Action(commands=(cmd("virsh", "net-destroy", name), cmd("virsh", "net-start", name)),
                              check=cmd("net_xml_match", name, *tokens),
                              done=f"running network {name} matches its definition"))
    else:
        actions.append(Action(commands=(cmd("virsh", "net-destroy", name),), check="! " + active,
                              done=f"network {name} is stopped"))
    flag = ("--disable",) if not net.autostart else ()
    actions.append(Action(commands=(cmd("virsh", "net-autostart", *flag, name),),
                          check=cmd("net_info_is", name, "Autostart", "yes" if net.autostart else "no"),
                          done=f"autostart of {name} is {'on' if net.autostart else 'off'}"))
    why = f"{np_.mode.description}; defined from networks/{name}.xml"
    return Step((NETWORKS, rank, name), f"network {name} ({net.mode})", why, tuple(actions), undo)


def _live_dhcp_actions(old: Any, new: Any) -> List[Action]:
    """`virsh net-update` of DHCP ranges and static leases: applied without restarting the network
    (so its guests keep their connectivity), on a host that still runs the old definition; none when
    more than DHCP changed. Only a build `--against` a profile needs vnetgen.diff."""
    from .diff import dhcp6_hosts, dhcp_leases, dhcp_range, live_dhcp_only

    if not live_dhcp_only(old, new):
        return []
    name = new.name
    absent = "! " + cmd("net_exists", name) + " || "
    actions: List[Action] = []

    def update(verb: str, section: str, xml: str, present_after: bool, done: str, token: str = "") -> None:
        test = cmd("net_xml_match", name, f"has:{token or xml}")
        actions.append(Action(commands=(cmd("net_update", name, verb, section, xml),),
                              check=absent + (test if present_after else "! " + test), done=done))

    before, after = dhcp_leases(old), dhcp_leases(new)
    for line in before:
        if line not in after:
            update("delete", "ip-dhcp-host", line, False, f"lease {line} is gone")
    if dhcp_range(old) != dhcp_range(new):
        update("delete", "ip-dhcp-range", "<range start='{}' end='{}'/>".format(*dhcp_range(old)), False,
               "the old DHCP range is gone")
        update("add", "ip-dhcp-range", "<range start='{}' end='{}'/>".format(*dhcp_range(new)), True,
               "the DHCP range is {}-{}".format(*dhcp_range(new)))
    for line in after:
        if line not in before:
            update("add", "ip-dhcp-host", line, True, f"lease {line} is in place")
    # DHCPv6 hosts: in the IPv6 <ip>, named by its index (libvirt's default is the IPv4 one)
    index = str(parent_index(new.net))
    before6, after6 = dhcp6_hosts(old), dhcp6_hosts(new)
    changes6 = [("delete", line) for line in before6 if line not in after6]
    changes6 += [("add", line) for line in after6 if line not in before6]
    for verb, line in changes6:
        test = cmd("net_xml_match", name, f"has:{line}")
        actions.append(Action(commands=(cmd("net_update", name, verb, "ip-dhcp-host", line, index),),
                              check=absent + (test if verb == "add" else "! " + test),
                              done=f"DHCPv6 host {line} is " + ("in place" if verb == "add" else "gone")))
    for verb, section, xml, token in live_updates(old, new):   # DNS hosts, TXT and SRV records
        update(verb, section, xml, verb == "add", f"{section} {xml} is " + ("in place" if verb == "add" else "gone"),
               token)
    return actions


def _ports(plan: Any) -> Iterable[Step]:
    with_ports = [n for n in plan.networks.values() if n.net.ports and n.mode.libvirt_bridge
                  and n.net.state != "absent"]
    if not with_ports and not plan.hook_cases:
        return
    actions: List[Action] = []
    undo: List[Action] = []
    for np_ in with_ports:
        for port in np_.net.ports:
            actions.append(Action(commands=(plan.target.add_port(np_.bridge, port),),
                                  check=f"[ -e /sys/class/net/{np_.bridge}/brif/{port} ]",
                                  done=f"{port} is a port of {np_.bridge}", record=f"port-{np_.bridge}-{port}"))
            actions.append(Action(commands=(plan.target.link_up(port),),
                                  check=cmd("link_is_up", port), done=f"{port} is up"))
            undo.append(Action(commands=(plan.target.remove_port(np_.bridge, port),),
                               check=f"[ ! -e \"$STATE/created/port-{np_.bridge}-{port}\" ] || "
                                     f"[ ! -e /sys/class/net/{np_.bridge}/brif/{port} ]"))
    # A hook of the host's own is not overwritten: it moves aside and ours runs it after our part.
    chained = HOOK_PATH + ".before-vnetgen"
    actions.append(Action(commands=(cmd("chain_hook", under_root(HOOK_PATH)),),
                          check=cmd("hook_chained", under_root(HOOK_PATH)),
                          done=f"{HOOK_PATH}: no other hook to keep, or it is kept as {chained}",
                          record="hook-chained", installs=(chained,)))
    actions.append(install_file("hooks/network", HOOK_PATH, "0755"))
    undo.append(restore_file(HOOK_PATH))
    undo.append(Action(commands=(cmd("rm", "-f", under_root(chained)), cmd("forget", "hook-chained")),
                       check="! " + cmd("created", "hook-chained")))
    if not with_ports:
        yield Step((PORTS, 0), "the network hook",
                   "install the libvirt network hook that applies what the plugins ask of it whenever libvirt "
                   "starts or stops a network (libvirtd reads a new hook file when it restarts)",
                   tuple(actions), tuple(undo))
        return
    yield Step((PORTS, 0), "bridge ports and the network hook",
               "add the trunk NICs to libvirt's bridges now, and install a libvirt network hook that re-adds "
               "them whenever libvirt (re)starts the network (libvirtd reads a new hook file when it restarts)",
               tuple(actions), tuple(undo))

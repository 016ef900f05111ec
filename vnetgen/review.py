"""The data of REVIEW.md: fleet run order with reasons, per-host changes, and a Mermaid diagram."""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Tuple


def run_order(profile: Any, plans: List[Any]) -> List[Tuple[str, str]]:
    """(host, reason): a host whose DHCP server others reach over a link goes first."""
    return [(host, reason) for wave in run_waves(profile, plans) for host, reason in wave]


def run_waves(profile: Any, plans: List[Any]) -> List[List[Tuple[str, str]]]:
    """run_order in waves: the hosts serving DHCP to others over a link, then the rest (no empty wave)."""
    from .validate import networks_by_bridge, segments

    modes = {n.net.mode: n.mode for p in plans for n in p.networks.values()}
    on_bridge = networks_by_bridge(profile, modes)
    servers: Dict[str, List[str]] = {}
    for group in segments(profile, modes):
        hosts = sorted({h for h, _ in group})
        if len(hosts) < 2:
            continue
        for host, net in (x for node in group for x in on_bridge.get(node, ())):
            if net.dhcp is not None:
                servers.setdefault(host.name, []).extend(h for h in hosts if h != host.name)
    first = [(h, f"serves DHCP to {', '.join(sorted(set(servers[h])))} over a link: its network must be up "
                 "before theirs") for h in (p.name for p in plans) if h in servers]
    reason = "depends on " + ", ".join(h for h, _ in first) if first else "independent"   # once: not per host
    rest = [(p.name, reason) for p in plans if p.name not in servers]
    return [wave for wave in (first, rest) if wave]


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _mermaid_id(*parts: str) -> str:
    return "_".join(p if _ID_CHARS.issuperset(p) else re.sub(r"[^A-Za-z0-9_]", "_", p) for p in parts)


def _network_label(net: Any) -> str:
    """A network's node text: name, mode, addresses of both families and VLAN ids (the settings that
    say what a guest lands on; the others are in the host section's network line)."""
    words = [f"network {net.name} ({net.mode})"]
    words += [str(ip) for ip in (net.interface(4), net.interface(6)) if ip]
    if net.vlan:
        words.append("VLAN " + ",".join(str(v) for v in net.vlan))
    return " ".join(words)


def _uplinks(net: Any) -> List[str]:
    """The host NICs a network's guests reach the world through without a bridge: `<forward dev>`, a
    macvtap pool's `devs`, an SR-IOV physical function `pf` (whichever the profile sets)."""
    return list(dict.fromkeys([*net.devs, *(d for d in (net.dev, net.pf) if d)]))


def mermaid(profile: Any, plans: List[Any], subgraphs: List[List[str]]) -> List[str]:
    """Lines of a Mermaid flowchart: hosts as subgraphs (each plan's mermaid_host); NICs, bridges,
    networks, VMs; links."""
    lines = ["flowchart LR"]
    for subgraph in subgraphs:
        lines.extend(subgraph)
    planned = {p.name for p in plans}
    for link in profile.links:
        a, b = link.ends
        if a.host in planned and b.host in planned:
            lines.append(f'  {_mermaid_id(a.host, "nic", a.nic)} ===|"link"| {_mermaid_id(b.host, "nic", b.nic)}')
    return lines


def mermaid_host(plan: Any) -> List[str]:
    """One host's subgraph of the flowchart."""
    lines: List[str] = []
    host = plan.name
    lines.append(f'  subgraph {_mermaid_id("h", host)}["host {host}"]')
    for bridge in plan.host.bridges.values():
        lines.append(f'    {_mermaid_id(host, "br", bridge.name)}["bridge {bridge.name}'
                     f'{" " + str(bridge.ip) if bridge.ip else ""}"]')
        for port in bridge.ports:
            lines.append(f'    {_mermaid_id(host, "nic", port)}(["NIC {port}"]) --- '
                         f'{_mermaid_id(host, "br", bridge.name)}')
    for net in plan.networks.values():
        if net.net.state == "absent":
            continue
        node = _mermaid_id(host, "net", net.name)
        lines.append(f'    {node}{{{{"{_network_label(net.net)}"}}}}')
        for nic in _uplinks(net.net):
            lines.append(f'    {_mermaid_id(host, "nic", nic)}(["NIC {nic}"]) -.-|"uplink"| {node}')
        for fwd in net.net.forwards:
            fwd_node = _mermaid_id(host, "fwd", net.name, fwd.proto, str(fwd.port), fwd.to)
            lines.append(f'    {fwd_node}>"{fwd.proto} port {fwd.port} to {fwd.to}"] --> {node}')
        if net.bridge:
            bridge_node = _mermaid_id(host, "br", net.bridge)
            if net.bridge not in plan.host.bridges:
                lines.append(f'    {bridge_node}["bridge {net.bridge}"]')
            lines.append(f"    {node} --- {bridge_node}")
            for port in net.net.ports:
                lines.append(f'    {_mermaid_id(host, "nic", port)}(["NIC {port}"]) --- {bridge_node}')
    for vm in plan.host.vms.values():
        for nic in vm.networks:
            lines.append(f'    {_mermaid_id(host, "vm", vm.name)}["VM {vm.name}"] --> '
                         f'{_mermaid_id(host, "net", nic.network)}')
    lines.append("  end")
    return lines


def host_parts(plan: Any) -> Tuple[str, List[str]]:
    """What REVIEW.md says of one host alone: its section and its subgraph of the diagram (a build's
    workers make them for their hosts)."""
    from .render import render

    section = render("_host_review.md.j2", plan=plan, host_paths={plan.name: host_paths(plan)})
    return section, mermaid_host(plan)


def context(profile: Any, plans: List[Any], profile_file: str, waves: List[List[Tuple[str, str]]],
            against: Any = None, previous: Any = None,
            parts: Optional[List[Tuple[str, List[str]]]] = None) -> Dict[str, Any]:
    """What REVIEW.md.j2 formats; `waves` is run_waves(profile, plans); `parts`: each plan's
    host_parts when made already."""
    from .render import one_line

    changes = None
    if against is not None:   # only then is vnetgen.diff imported
        from .diff import diff_links, diff_plans

        changes = diff_links(against, profile) + diff_plans(previous or [], plans)
    if parts is None:
        parts = [host_parts(plan) for plan in plans]
    return dict(profile_file=profile_file, profile_name=profile.name or "",
                host_sections=[section for section, _ in parts],
                order=[entry for wave in waves for entry in wave],
                mermaid=mermaid(profile, plans, [subgraph for _, subgraph in parts]),
                warnings=profile.warnings, changes=changes,
                against_file=one_line(os.path.basename(getattr(against, "path", ""))))


def host_paths(plan: Any) -> Dict[str, List[str]]:
    """What a host's runbook touches outside libvirt: the paths it installs or replaces, those it
    removes, and what it may restart (from its steps, so REVIEW.md cannot disagree with the runbook)."""
    installs: List[str] = []
    removes: List[str] = []
    restarts: List[str] = []
    for step in plan.steps:
        for action in step.actions:
            installs += action.installs
            removes += action.removes
        restarts += step.restarts
    running = [n.name for n in plan.networks.values() if n.net.state == "active"]
    if running:
        restarts.append("libvirt network " + ", ".join(running) + " when its definition changes in a way "
                        "libvirt cannot apply live")
    return {"installs": list(dict.fromkeys(installs)), "removes": list(dict.fromkeys(removes)),
            "restarts": list(dict.fromkeys(restarts))}


def for_review(plan: Any) -> Any:
    """The part of a host's plan REVIEW.md reads (run order, diagram, host section, host paths),
    without the runbook's text (network XML, checks, commands, helpers, host files): what a build
    keeps of each host once its files are written."""
    from dataclasses import replace

    from .api import Action

    return replace(plan, checks=[], artifacts=[], plugin_captures=[], helpers="", previous=None,
                   networks={name: replace(net, xml="") for name, net in plan.networks.items()},
                   steps=[replace(step, undo=(), actions=tuple(Action(installs=a.installs, removes=a.removes)
                                                              for a in step.actions))
                          for step in plan.steps])

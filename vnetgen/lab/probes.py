"""Reachability probes: what a guest, the router or the internet host must (or must not) reach, as
the profile implies, each tried for real in the lab."""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import LabError
from .ports import Port
from .wiring import Wiring
from .world import Lab


@dataclass
class Probe:
    """A reachability check with the outcome the profile implies."""

    what: str
    expected: bool
    actual: Optional[bool] = None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


def plan_probes(lab: Lab, wiring: Wiring, ports: List[Port]) -> List[Tuple[Probe, Callable[[], bool]]]:
    """Each probe the profile implies for the attached `ports`, with the action that tries it."""
    router = lab.router()
    internet = router.internet_ip
    probes: List[Tuple[Probe, Callable[[], bool]]] = []

    def add(what: str, expected: bool, why: str, action: Callable[[], bool]) -> None:
        probes.append((Probe(what, expected, why=why), action))

    live = [p for p in ports if p.address and p.node is not None]
    first_on: Dict[Any, Port] = {}
    for port in live:
        node = port.node
        if port.gateway:
            add(f"{port.label} → its gateway {port.gateway}", True, "",
                lambda n=node, g=port.gateway: n.ping(g, timeout=8))
        if port.segment in first_on:
            head = first_on[port.segment]
            add(f"{head.label} → {port.label} {port.ip}", True, "same L2 segment",
                lambda n=head.node, a=port.ip: n.ping(a, timeout=8))
        else:
            first_on[port.segment] = port
        closed = port.gateway is None
        why = "a closed segment: no gateway, nothing beyond the guests" if closed else \
            f"{port.mode} network" + (" (via another host)" if port.how == "dhcp" and port.mode == "isolated" else "")
        add(f"{port.label} → internet host {internet}", not closed, why,
            lambda n=node, c=closed: n.ping(internet, timeout=2 if c else 8))
        if closed:
            for host_name, address in sorted(wiring.upstream_ip.items()):
                add(f"{port.label} → host {host_name} {address}", False, "isolated from the host's LAN",
                    lambda n=node, a=address: n.ping(a, timeout=2))
        if port.mode == "route" and port.how == "static":
            add(f"internet host → {port.label} {port.ip} (its own address, no NAT)", True,
                "upstream has the static route",
                lambda a=port.ip: router.internet.ping(a, timeout=8))
    for plan in wiring.plans:
        for bridge in plan.host.bridges.values():
            if bridge.ip is not None and bridge.ports and not bridge.external:
                add(f"LAN router → host {plan.name} {bridge.ip.ip} (now on {bridge.name})", True,
                    "the host keeps its address",
                    lambda a=str(bridge.ip.ip): router.ping(a, timeout=8))
    return probes


def run_probes(lab: Lab, wiring: Wiring, ports: List[Port]) -> List[Probe]:
    """Every reachability check, concurrently (an expected miss waits out its timeout)."""
    planned = plan_probes(lab, wiring, ports)
    if not planned:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(planned))) as pool:
        results = list(pool.map(lambda item: _safe(item[1]), planned))
    for (probe, _), actual in zip(planned, results):
        probe.actual = actual
    return [probe for probe, _ in planned]


def _safe(action: Callable[[], bool]) -> bool:
    try:
        return bool(action())
    except LabError:
        return False

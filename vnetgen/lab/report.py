"""The lines of `vnetgen rehearse`'s report that say how a guest, a probe or the whole rehearsal fared."""
from __future__ import annotations

from typing import List

from .ports import Port
from .probes import Probe


def port_line(port: Port) -> str:
    where = f"{port.label} on {port.network} ({port.mode}, bridge {port.bridge or '-'})"
    if not port.how:
        return f"--   {where}: {port.note}"
    if port.how == "dhcp":
        if not port.address:
            return f"FAIL {where}: {port.note}"
        return f"ok   {where}: DHCP lease {port.address}, router {port.gateway or 'none'}"
    return f"ok   {where}: static {port.address}" + (f", gateway {port.gateway}" if port.gateway else
                                                      " (no gateway on this segment)")


def probe_line(probe: Probe) -> str:
    verdict = "ok  " if probe.ok else "FAIL"
    seen = "reached" if probe.actual else "not reached"
    expect = "" if probe.ok else f" (expected {'reached' if probe.expected else 'not reached'})"
    return f"{verdict} {probe.what}: {seen}{expect}" + (f" — {probe.why}" if probe.why else "")


def verdict_lines(problems: List[str], seconds: float) -> List[str]:
    if problems:
        return ([f"\nverdict: FAILED ({len(problems)} problem{'s' if len(problems) != 1 else ''}, {seconds:.0f} s)"]
                + [f"  - {problem}" for problem in problems])
    return [f"\nverdict: PASSED — runbooks applied, guests and reachability as the profile implies, second "
            f"runs changed nothing, rollback restored every host ({seconds:.0f} s)"]


def unavailable_message(reason: str) -> str:
    return (f"vnetgen rehearse: cannot run a lab here: {reason}. It needs root and libvirt's daemon, "
            "dnsmasq, iproute2, bridge-utils and busybox (Debian: apt-get install --no-install-recommends "
            "libvirt-daemon libvirt-clients dnsmasq-base iptables bridge-utils busybox iputils-ping iproute2).")

"""Mode `route`: guests' subnet is routed, not NATed; the upstream router needs a static route."""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

MODE = Mode(name="route", description="guests' subnet is routed by the host without NAT; upstream needs "
            "a static route to it", forward="route", ip="required", forwards_ipv4=True, keys=("dev",))


@hookimpl
def vnetgen_modes():
    return [MODE]


"""Mode `nat`: libvirt's default — a private bridge whose guests reach out through masquerade."""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

MODE = Mode(name="nat", description="guests share the host's address through NAT (masquerade)",
            forward="nat", ip="required", forwards_ipv4=True)


@hookimpl
def vnetgen_modes():
    return [MODE]


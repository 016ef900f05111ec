"""Mode `open`: libvirt adds no firewall rules at all; the admin's own firewall decides."""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

MODE = Mode(name="open", description="libvirt adds no firewall rules; routing and filtering are the "
            "host admin's", forward="open", ip="required")


@hookimpl
def vnetgen_modes():
    return [MODE]

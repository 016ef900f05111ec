"""Mode `open`: libvirt adds no firewall rules at all; the admin's own firewall decides."""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

# The host routes the guests' traffic (libvirt turns ip_forward on when it starts the network), so
# the sysctl drop-in must keep it on, and rollback.sh must know to put it back.
MODE = Mode(name="open", description="libvirt adds no firewall rules; routing and filtering are the "
            "host admin's", forward="open", ip="required", forwards_ipv4=True)


@hookimpl
def vnetgen_modes():
    return [MODE]

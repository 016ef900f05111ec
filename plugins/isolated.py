"""Mode `isolated`: no <forward>; guests reach each other (and the host, if numbered) only."""
from __future__ import annotations

from vnetgen.api import Mode, hookimpl

MODE = Mode(name="isolated", description="guests reach each other only (no <forward>); unnumbered when "
            "it has no ip", forward="", ip="optional")


@hookimpl
def vnetgen_modes():
    return [MODE]

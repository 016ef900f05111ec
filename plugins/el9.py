"""Target `el9` (RHEL/Rocky/Alma 8, 9, 10, Fedora): NetworkManager keyfiles, nmcli, iproute2; no brctl."""
from __future__ import annotations

from vnetgen.api import hookimpl

from .iproute2 import IpRoute2Target


class El9(IpRoute2Target):
    name = "el9"
    description = "RHEL/Rocky/Alma 8-10, Fedora: NetworkManager keyfiles, nmcli, iproute2"
    tools = ("ip", "nmcli")
    versions = "RHEL, Rocky, Alma 8, 9, 10; Fedora (NetworkManager 1.30+)"
    persists = "NetworkManager keyfiles in /etc/NetworkManager/system-connections/ (0600)"


TARGET = El9()


@hookimpl
def vnetgen_targets():
    return [TARGET]

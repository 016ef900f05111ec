"""Facts: parsers of what a host's tools print (virsh, ip, sysctl), for `vnetgen audit`; a target's
own tools are parsed in its plugin (el7's brctl: plugins/brctl_show.py).

Each parser is a class in the style of pyinfra facts: `command(...)` gives the
argv that produces the capture, `process(text, source)` reads it and returns
frozen dataclasses (see model.py), or raises FactError("SOURCE:LINE: message")
for anything it cannot read. No other exception escapes a parser, whatever the
input. lxml is imported only when XML is parsed. The argv of each command, FactError and the text
helpers are in vnetgen.factbase, which a build imports without this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from ..factbase import FactError, as_text
from .dom_dumpxml import DomDumpXml
from .domiflist import DomIfList
from .iproute import BridgePorts, IpAddrs, IpLinkBridges, IpLinks, IpRoutes, bridges_from_iproute, combine, json_array
from .model import (BridgeInfo, BridgePort, DhcpHostDef, DomainDef, DomainDisk, DomainEntry, DomIf, IpDef, LinkInfo,
                    NetListEntry, RouteInfo, NetworkDef, to_jsonable)
from .net_dumpxml import NetDumpXml
from .net_list import NetList
from .sysctl import Sysctl
from .virsh_list import VirshList

__all__ = [
    "BridgeInfo", "BridgePort", "BridgePorts", "DhcpHostDef", "DomDumpXml", "DomIf", "DomIfList", "DomainDef", "DomainDisk",
    "DomainEntry", "FactError", "IpAddrs", "IpDef", "IpLinkBridges", "IpLinks", "IpRoutes", "LinkInfo", "RouteInfo", "NetDumpXml", "NetList", "NetListEntry",
    "NetworkDef", "Sysctl", "VirshList", "as_text", "bridges_from_iproute", "combine", "json_array",
    "process_file", "to_jsonable",
]


def process_file(fact: Any, path: Union[str, Path]) -> Any:
    """Read a capture file with `fact` (e.g. NetList()); unreadable files are FactError too."""
    from ..safeio import CAPTURE_LIMIT, UnsafeInput, read_bounded

    try:
        data = read_bounded(str(path), CAPTURE_LIMIT, "capture file")
    except UnsafeInput as error:
        raise FactError(str(path), 0, error.reason) from None
    return fact.process(as_text(data), str(path))

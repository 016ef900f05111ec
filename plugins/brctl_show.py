"""Parse `brctl show` (bridge-utils): host bridges, their bridge id, STP and ports. The el7 target's
parser (RHEL 7 has brctl; later releases do not), written against `vnetgen.api` like any plugin's.

A build imports it for the capture command only: its patterns are compiled where a capture is parsed
(re caches them), and it makes no dataclass."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from vnetgen.api import FactError, excerpt, is_ifname, numbered_lines

if TYPE_CHECKING:  # imported where a capture is parsed: a build reads only the command
    from vnetgen.api import BridgeInfo

_HEADER = ["bridge", "name", "bridge", "id", "STP", "enabled", "interfaces"]
# NAME<tabs>PRIO.MAC<tabs>yes|no<tabs>[FIRST PORT]; brctl separates with tabs, but a
# capture pasted from a terminal has spaces: any blanks will do.
_BRIDGE = r"(\S+)\s+([0-9A-Fa-f]{4}\.[0-9A-Fa-f]{12})\s+(yes|no)(?:\s+(\S+))?\s*"
# brctl prints "NAME\t\t" and flushes before it reads the bridge's info: when the
# read fails (old bridge-utils, RHEL 7: "can't get info ...") nothing more goes to
# stdout, so the next bridge's line, or the end of the capture, follows on the same line.
_UNREADABLE = r"(\S+)\t\t"
_NO_INFO = r"can't get info\b.*"
_BLANK = r"\s*"
# Printed on stdout after the STP column when the port list cannot be read.
_NO_PORT_INFO = " can't get port info"
# brctl's stderr, which a capture with 2>&1 holds. Each says that a bridge is absent
# or unreadable, which the result already expresses (absent, or unknown fields), so
# they are skipped. Into a file stdout is flushed late and these lines come first,
# above the header; only "can't get info" follows its "NAME\t\t" (brctl flushes that).
_DIAGNOSTICS = (
    r"bridge \S+ does not exist!",
    r"device \S+ is not a bridge!",
    r"(?:\S+: )?can't get info\b.*",
    r"/sys/\S+: .*",  # 1.7: a sysfs attribute it could not read
)


class _Bridge:
    """One bridge of `brctl show` while it is read."""

    def __init__(self, name: str, line: int, bridge_id: Optional[str] = None, stp: Optional[bool] = None,
                 ports: Optional[List[str]] = None, ports_known: bool = True) -> None:
        self.name, self.line, self.bridge_id, self.stp = name, line, bridge_id, stp
        self.ports: List[str] = [] if ports is None else ports
        self.ports_known = ports_known

    def freeze(self) -> BridgeInfo:
        from vnetgen.api import BridgeInfo

        return BridgeInfo(name=self.name, bridge_id=self.bridge_id, stp=self.stp,
                          ports=tuple(sorted(self.ports)), ports_known=self.ports_known)


class BrctlShow:
    """`brctl show [BRIDGE...]` → tuple of BridgeInfo, sorted by name, ports sorted."""

    def command(self, *bridges: str) -> List[str]:
        return ["brctl", "show", *bridges]

    def process(self, text: str, source: str) -> Tuple[BridgeInfo, ...]:
        bridges: Dict[str, _Bridge] = {}
        current: Optional[_Bridge] = None
        header = False
        failure: Optional[Tuple[int, str]] = None
        for number, line in numbered_lines(text):
            if line.split() == _HEADER:
                header = True
                continue
            if not line.strip():
                continue
            if _is_diagnostic(line):
                if failure is None and not re.fullmatch(_ABSENT, line.strip()):
                    failure = (number, line.strip())
                continue
            if line[0] in " \t":
                _add_port(current, line, source, number)
                continue
            for bridge in _parse_bridge_line(line, source, number):
                if bridge.name in bridges:
                    raise FactError(source, number, f"bridge {bridge.name!r} is listed twice "
                                                    f"(line {bridges[bridge.name].line})")
                bridges[bridge.name] = current = bridge
        if failure is not None and not header:
            # brctl prints its header before any bridge; an error alone is a failed capture, not "no bridges".
            raise FactError(source, failure[0], f"brctl failed: {excerpt(failure[1], 80)} (no table was "
                                                "captured: run capture.sh again)")
        return tuple(bridges[name].freeze() for name in sorted(bridges))


# What `brctl show NAME` says of a NAME that is no bridge: with nothing else, an honest empty answer.
_ABSENT = r"bridge \S+ does not exist!|device \S+ is not a bridge!"


def _is_diagnostic(line: str) -> bool:
    stripped = line.strip()
    # Every diagnostic ends with "!", says "can't get info" or starts with "/sys/": the patterns are
    # tried only on such a line, not on each of a capture's bridge and port lines.
    if not (stripped.endswith("!") or "can't get info" in stripped or stripped.startswith("/sys/")):
        return False
    return any(re.fullmatch(pattern, stripped) for pattern in _DIAGNOSTICS)


def _add_port(current: Optional[_Bridge], line: str, source: str, number: int) -> None:
    # Each port after the first is on a line of its own, indented by tabs.
    port = line.strip()
    if current is None:
        raise FactError(source, number, f"port line {port[:40]!r} before any bridge line")
    if not is_ifname(port):
        raise FactError(source, number, f"{port[:40]!r} is not an interface name")
    current.ports.append(port)


def _parse_bridge_line(line: str, source: str, number: int) -> List[_Bridge]:
    """The bridges on one line: usually one, more when brctl could not read some."""
    cut = line.find(_NO_PORT_INFO)
    body = line if cut < 0 else line[:cut]
    found = []
    pos = 0  # positions, not slices: a long line of "NAME\t\t" must stay linear
    while True:
        match = re.compile(_BRIDGE).fullmatch(body, pos)
        if match:
            found.append(_readable_bridge(match, number, ports_known=cut < 0))
            break
        unreadable = re.compile(_UNREADABLE).match(body, pos)
        if unreadable is None:
            raise FactError(source, number, f"expected 'NAME BRIDGE-ID yes|no [PORT]', got {line.strip()[:80]!r}")
        found.append(_Bridge(name=unreadable.group(1), line=number, ports_known=False))
        pos = unreadable.end()
        if re.compile(_BLANK).fullmatch(body, pos) or re.compile(_NO_INFO).fullmatch(body, pos):
            break
    for bridge in found:
        _check_names(bridge, source, number)
    return found


def _readable_bridge(match: "re.Match[str]", number: int, ports_known: bool) -> _Bridge:
    name, bridge_id, stp, port = match.groups()
    return _Bridge(name=name, line=number, bridge_id=bridge_id.lower(), stp=stp == "yes",
                   ports=[port] if port else [], ports_known=ports_known)


def _check_names(bridge: _Bridge, source: str, number: int) -> None:
    for name in [bridge.name, *bridge.ports]:
        if not is_ifname(name):
            raise FactError(source, number, f"{name[:40]!r} is not an interface name")

"""The light part of the fact parsers (`vnetgen.facts`): FactError, the text helpers a parser (a
plugin's too) uses, `quick_init`, and the argv of every capture command.

Each parser's `command()` returns what a function here returns, and the capture table (capture.sh,
live audit) calls the same functions: one source per command. A build writes capture.sh and so needs
the commands, never a parser; importing this module costs next to nothing, `vnetgen.facts` (its
parsers and ~25 dataclasses) is imported only when something parses (audit, import).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

_MESSAGE_LIMIT = 240


class FactError(Exception):
    """A capture that a parser cannot read; str() is "SOURCE:LINE: message"."""

    def __init__(self, source: str, line: int, message: str) -> None:
        if len(message) > _MESSAGE_LIMIT:  # a message quotes the capture: never more than a short excerpt of it
            message = message[:_MESSAGE_LIMIT] + "..."
        super().__init__(source, line, message)
        self.source = source
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


def quick_init(cls: Any) -> Any:
    """Over `@dataclass(frozen=True)`: an __init__ that stores every field with one dict update, where
    the dataclass's calls object.__setattr__ once per field (2.7 µs against 0.6 for 11 fields). The
    same parameters, order and defaults; only for plain fields (no default_factory, init=False,
    kw_only or __post_init__). For the objects an audit makes by the hundred thousand."""
    params, names, env = [], [], {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING or not f.init or f.kw_only:
            raise TypeError(f"quick_init: {cls.__name__}.{f.name} is not a plain field")
        names.append(f.name)
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"quick_init: {cls.__name__} has a __post_init__")
    fill = ", ".join(f"{n}={n}" for n in names)
    exec(f"def __init__(self, {', '.join(params)}):\n    self.__dict__.update({fill})\n", env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


# --- text helpers shared by the parsers --------------------------------------------------


def as_text(data: Union[str, bytes]) -> str:
    """Text of a capture; bytes that are not UTF-8 survive as surrogates (and are then refused)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode("utf-8", "surrogateescape")
    if not isinstance(data, str):
        raise TypeError(f"a capture is str or bytes, not {type(data).__name__}")
    return data


def excerpt(text: str, limit: int = 40, quote: str = "'") -> str:
    """A short, escaped piece of a capture, fit to quote in a one-line error (no control characters)."""
    shown = text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return f"{quote}{shown}{'...' if len(text) > limit else ''}{quote}"


def numbered_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) pairs, split on "\\n" only, as editors and `sed -n` count them."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def is_ifname(name: str) -> bool:
    """True for a name the kernel accepts for a link (dev_valid_name)."""
    if name in ("", ".", ".."):
        return False
    if len(name.encode("utf-8", "surrogatepass")) > 15:
        return False
    return not any(c == "/" or c == ":" or c.isspace() for c in name)


# --- the capture commands (each parser's command() returns these) ------------------------


def net_list_command() -> List[str]:
    """`NetList`: every network, its state and autostart."""
    return ["virsh", "net-list", "--all"]


def net_dumpxml_command(name: str, inactive: bool = False) -> List[str]:
    """`NetDumpXml`: a network's definition; --network: a name that starts with "-" stays a name."""
    return ["virsh", "net-dumpxml", *(["--inactive"] if inactive else []), "--network", name]


def virsh_list_command() -> List[str]:
    """`VirshList`: the domains."""
    return ["virsh", "list", "--all"]


def domiflist_command(domain: str) -> List[str]:
    """`DomIfList`: a domain's NICs."""
    return ["virsh", "domiflist", "--domain", domain]


def dom_dumpxml_command(domain: str) -> List[str]:
    """`DomDumpXml`: --inactive, the persistent definition (what the next boot runs), not a running
    guest's extras."""
    return ["virsh", "dumpxml", "--inactive", "--domain", domain]


def sysctl_command(keys: Sequence[str]) -> List[str]:
    """`Sysctl`: the kernel settings `keys`."""
    return ["sysctl", *keys]


def ip_link_bridges_command() -> List[str]:
    """`IpLinkBridges`: the bridges (layout 1)."""
    return ["ip", "-j", "-d", "link", "show", "type", "bridge"]


def bridge_ports_command(master: Optional[str] = None) -> List[str]:
    """`BridgePorts`: every bridge port, or the links of one master."""
    if master is None:
        return ["bridge", "-j", "link"]
    return ["ip", "-j", "link", "show", "master", master]


def ip_links_command() -> List[str]:
    """`IpLinks`: every link with its details."""
    return ["ip", "-j", "-d", "link", "show"]


def ip_addrs_command() -> List[str]:
    """`IpAddrs`: every address."""
    return ["ip", "-j", "addr", "show"]


def ip_routes_command(family: str = "ipv4") -> List[str]:
    """`IpRoutes`: the main table's routes of one family."""
    return ["ip", "-j", *(("-6",) if family == "ipv6" else ()), "route", "show"]

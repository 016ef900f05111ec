"""Parse `sysctl KEY...` ("key = value" lines) and `sysctl -n KEY...` (bare values)."""

from __future__ import annotations

import re
from typing import Dict, List, Sequence

from ..factbase import sysctl_command
from .model import FactError, numbered_lines

_ASSIGNMENT = re.compile(r"\s*([\w.:@+/-]+)\s*=(.*)")
# What sysctl prints on stderr for a key the kernel does not have, or will not let
# it read; a capture with 2>&1 holds it. The key is then absent from the result:
# unknown, which is what it is.
_MISSING = re.compile(r"sysctl: (?:cannot stat /proc/sys/\S+: No such file or directory"
                      r"|reading key \"\S+\")")


DEFAULT_KEYS = ("net.ipv4.ip_forward",)


class Sysctl:
    """`sysctl KEY...` → {key: value}.

    Bare values (`sysctl -n KEY...`) are named by `keys`, in order; without
    `keys` a bare line is refused, lest any one line of junk read as a value.
    """

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self.keys = tuple(keys)

    def command(self, *keys: str) -> List[str]:
        return sysctl_command(keys or self.keys or DEFAULT_KEYS)

    def process(self, text: str, source: str) -> Dict[str, str]:
        values: Dict[str, str] = {}
        bare = 0
        for number, line in numbered_lines(text):
            if not line.strip() or _MISSING.fullmatch(line.strip()):
                continue
            match = _ASSIGNMENT.fullmatch(line)
            if match:
                key, value = match.group(1), match.group(2).strip()
            else:
                if bare >= len(self.keys):
                    raise FactError(source, number, f"expected 'key = value', got {line.strip()[:80]!r}")
                key, value = self.keys[bare], line.strip()
                bare += 1
            if key in values and values[key] != value:
                raise FactError(source, number, f"{key} is {values[key]!r} and {value!r}")
            values[key] = value
        return values

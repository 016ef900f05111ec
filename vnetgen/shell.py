"""The one quoting function every shell word from a profile goes through."""
from __future__ import annotations

import re
import shlex
from typing import Iterable

_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_DOUBLE_OK = re.compile(r'^[^$`"\\!\x00-\x1f\x7f]*$')


class Raw(str):
    """A word that is already shell syntax (e.g. "$HERE/networks/x.xml"); never from a profile."""


def here(relative: str) -> Raw:
    """A bundle file, addressed relative to the script's own directory."""
    return Raw('"$HERE/' + q(relative).strip("'") + '"')


def under_root(absolute: str) -> Raw:
    """An /etc path that `--root DIR` relocates."""
    return Raw('"$ROOT' + q(absolute).strip("'") + '"')


def q(word: object) -> str:
    """Quote one word for bash; readable when possible (no quotes, or double quotes around XML)."""
    if isinstance(word, Raw):
        return str(word)
    text = str(word)
    if text and _SAFE.match(text):
        return text
    if "'" in text and _DOUBLE_OK.match(text):
        return f'"{text}"'
    return shlex.quote(text)


def cmd(*words: object) -> str:
    """A command line from literal words, each quoted."""
    return " ".join(q(w) for w in words)


def join(words: Iterable[object]) -> str:
    return cmd(*words)

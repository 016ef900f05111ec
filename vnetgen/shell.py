"""The one quoting function every shell word from a profile goes through."""
from __future__ import annotations

import re
from typing import Dict, Iterable

# shlex.quote's safe characters: a word of them alone needs no quotes. (A set, not the pattern
# ^[A-Za-z0-9_@%+=:,./-]+$ it was, whose $ also matched before a final newline and left it unquoted.)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")
_DOUBLE_OK = r'^[^$`"\\!\x00-\x1f\x7f]*$'   # compiled when a word holds a ' (rare)


class Raw(str):
    """A word that is already shell syntax (e.g. "$HERE/networks/x.xml"); never from a profile."""


def here(relative: str) -> Raw:
    """A bundle file, addressed relative to the script's own directory."""
    return Raw('"$HERE/' + q(relative).strip("'") + '"')


def under_root(absolute: str) -> Raw:
    """An /etc path that `--root DIR` relocates."""
    return Raw('"$ROOT' + q(absolute).strip("'") + '"')


# A fleet's bundle quotes the same words (commands, flags, names, paths) hundreds of thousands of
# times: remember them. Bounded, so a huge profile cannot grow it without limit; full, it just stops
# learning. Keyed by plain str only: a Raw equal to a plain word must not share its entry.
_QUOTED: Dict[str, str] = {}
_QUOTED_MAX = 1 << 16


def q(word: object) -> str:
    """Quote one word for bash; readable when possible (no quotes, or double quotes around XML)."""
    if word.__class__ is str:
        quoted = _QUOTED.get(word)  # type: ignore[call-overload]
        if quoted is None:
            quoted = _quote(word)  # type: ignore[arg-type]
            if len(_QUOTED) < _QUOTED_MAX:
                _QUOTED[word] = quoted  # type: ignore[index]
        return quoted
    if isinstance(word, Raw):
        return str(word)
    return _quote(str(word))


def _quote(text: str) -> str:
    if text and _SAFE.issuperset(text):
        return text
    if "'" in text and re.fullmatch(_DOUBLE_OK, text):
        return f'"{text}"'
    # shlex.quote(text), whose safe characters are _SAFE's: text is empty or holds another character
    # here, so it is single-quoted (importing shlex is ~0.2 ms of a one-host build).
    return "'" + text.replace("'", "'\"'\"'") + "'" if text else "''"


def cmd(*words: object) -> str:
    """A command line from literal words, each quoted."""
    return " ".join(map(q, words))


def join(words: Iterable[object]) -> str:
    return cmd(*words)

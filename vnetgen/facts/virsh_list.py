"""Parse `virsh list --all`: which guests are defined and in what state."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..factbase import virsh_list_command
from .model import DomainEntry, FactError, excerpt, parse_uint, split_fields, virsh_table

# virsh's states of two words (virshDomainStateToString); any other state is one word.
_TWO_WORD_STATES = frozenset({"no state", "in shutdown", "shut off"})


class VirshList:
    """`virsh list --all` → tuple of DomainEntry, in virsh's order (running by id, then the rest)."""

    def command(self) -> List[str]:
        return virsh_list_command()

    def process(self, text: str, source: str) -> Tuple[DomainEntry, ...]:
        seen: Dict[str, int] = {}
        entries = []
        for number, row in virsh_table(text, source):
            entry = _parse_row(row, source, number)
            if entry.name in seen:
                raise FactError(source, number, f"domain {entry.name!r} is listed twice (line {seen[entry.name]})")
            seen[entry.name] = number
            entries.append(entry)
        return tuple(entries)


def _parse_row(row: str, source: str, number: int) -> DomainEntry:
    # A name may hold spaces and a state may be two words: try a two-word state first.
    fields = split_fields(row, 1, 2)
    if fields is not None and f"{fields[2]} {fields[3]}" in _TWO_WORD_STATES:
        id_text, name, state = fields[0], fields[1], f"{fields[2]} {fields[3]}"
    else:
        fields = split_fields(row, 1, 1)
        if fields is None:
            raise FactError(source, number, f"expected 'ID NAME STATE', got {excerpt(row.strip(), 80)}")
        id_text, name, state = fields
    return DomainEntry(id=_parse_id(id_text, source, number), name=name, state=state)


def _parse_id(text: str, source: str, number: int) -> Optional[int]:
    if text == "-":
        return None  # not running
    return parse_uint(text, source, number, "domain id")

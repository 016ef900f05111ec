"""Parse `virsh net-list --all`: which networks exist, run, start at boot, persist."""

from __future__ import annotations

from typing import Dict, List, Tuple

from ..factbase import net_list_command
from .model import FactError, NetListEntry, excerpt, split_fields, virsh_table

_STATE = {"active": True, "inactive": False}
_YES_NO = {"yes": True, "no": False}


class NetList:
    """`virsh net-list --all` → tuple of NetListEntry, sorted by name."""

    def command(self) -> List[str]:
        return net_list_command()

    def process(self, text: str, source: str) -> Tuple[NetListEntry, ...]:
        entries: Dict[str, NetListEntry] = {}
        for number, row in virsh_table(text, source):
            entry = _parse_row(row, source, number)
            if entry.name in entries:
                raise FactError(source, number, f"network {entry.name!r} is listed twice")
            entries[entry.name] = entry
        return tuple(entries[name] for name in sorted(entries))


def _parse_row(row: str, source: str, number: int) -> NetListEntry:
    # Columns are padded with spaces and a name may hold a space ("lab net"):
    # the last three columns are read from the right, the rest is the name.
    fields = split_fields(row, 0, 3)
    if fields is None:
        raise FactError(source, number, f"expected 'NAME STATE AUTOSTART PERSISTENT', got {excerpt(row.strip(), 80)}")
    name, state, autostart, persistent = fields
    if state not in _STATE:
        raise FactError(source, number, f"state {state!r} is neither 'active' nor 'inactive'")
    for what, value in (("autostart", autostart), ("persistent", persistent)):
        if value not in _YES_NO:
            raise FactError(source, number, f"{what} {value!r} is neither 'yes' nor 'no'")
    return NetListEntry(name=name, active=_STATE[state], autostart=_YES_NO[autostart],
                        persistent=_YES_NO[persistent])

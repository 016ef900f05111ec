"""Parse `virsh domiflist VM`: a guest's NICs, what they plug into, and their MACs."""

from __future__ import annotations

from typing import List, Optional, Tuple

from ..factbase import domiflist_command
from .model import DomIf, FactError, excerpt, parse_mac, split_fields, virsh_table


class DomIfList:
    """`virsh domiflist VM` → tuple of DomIf, in the guest's NIC order."""

    def command(self, domain: str) -> List[str]:
        return domiflist_command(domain)

    def process(self, text: str, source: str) -> Tuple[DomIf, ...]:
        return tuple(_parse_row(row, source, number) for number, row in virsh_table(text, source))


def _parse_row(row: str, source: str, number: int) -> DomIf:
    # The source (a network name) may hold spaces: two columns from the left,
    # two from the right, the source is what lies between.
    fields = split_fields(row, 2, 2)
    if fields is None:
        raise FactError(source, number, f"expected 'INTERFACE TYPE SOURCE MODEL MAC', got {excerpt(row.strip(), 80)}")
    interface, type_, source_name, model, mac = fields
    return DomIf(interface=_dash(interface), type=type_, source=_dash(source_name),
                 model=_dash(model), mac=parse_mac(mac, source, number))


def _dash(value: str) -> Optional[str]:
    # virsh prints "-" where there is nothing: no target dev yet, no model, no source.
    return None if value == "-" else value

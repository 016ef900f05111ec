"""Parse `virsh dumpxml --inactive VM`: a defined domain's memory, vCPUs, disks, NICs and graphics,
with the network definitions' safe parser (no entities, no network, no DTD; the capture is size-bounded)."""

from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

from ..factbase import dom_dumpxml_command
from .model import (DomainDef, DomainDisk, DomIf, FactError, check_virsh_error, numbered_lines, parse_mac,
                    parse_uint)
from .net_dumpxml import _child, _children, _line, _parse_xml

# libvirt's memory units (docs: formatdomain "Memory Allocation"), in bytes.
_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6, "m": 2**20, "mib": 2**20,
          "gb": 10**9, "g": 2**30, "gib": 2**30, "tb": 10**12, "t": 2**40, "tib": 2**40}
_AMOUNT = re.compile(r"[0-9]{1,15}")   # bounded: a TiB in KiB has 10 digits
_LIBOSINFO = "{http://libosinfo.org/xmlns/libvirt/domain/1.0}"


class DomDumpXml:
    """`virsh dumpxml --inactive --domain VM` → DomainDef."""

    def command(self, domain: str) -> List[str]:
        return dom_dumpxml_command(domain)

    def process(self, text: str, source: str) -> DomainDef:
        first = next(((n, line) for n, line in numbered_lines(text) if line.strip()), None)
        if first is None:
            raise FactError(source, 1, "empty capture: expected <domain>")
        check_virsh_error(first[1], source, first[0])
        root = _parse_xml(text, source, root_tag="domain")
        name = _child(root, "name")
        if name is None or not (name.text or "").strip():
            raise FactError(source, _line(root), "<domain> without <name>")
        memory = _child(root, "memory")
        if memory is None:
            raise FactError(source, _line(root), "<domain> without <memory>")
        vcpu = _child(root, "vcpu")
        devices = _child(root, "devices")
        return DomainDef(
            name=name.text.strip(),
            memory_kib=_kib(memory, source),
            vcpus=1 if vcpu is None else parse_uint((vcpu.text or "").strip(), source, _line(vcpu), "<vcpu>"),
            vcpus_current=None if vcpu is None or vcpu.get("current") is None
            else parse_uint(vcpu.get("current"), source, _line(vcpu), "<vcpu current>"),
            disks=tuple(_disk(d) for d in _children(devices, "disk")) if devices is not None else (),
            interfaces=tuple(_interface(i, source) for i in _children(devices, "interface"))
            if devices is not None else (),
            graphics=tuple(g.get("type", "") for g in _children(devices, "graphics")) if devices is not None else (),
            os_id=_os_id(root),
        )


def _kib(element: Any, source: str) -> int:
    text = (element.text or "").strip()
    if not _AMOUNT.fullmatch(text):
        raise FactError(source, _line(element), f"<memory> {text[:40]!r} is not a non-negative integer")
    value = int(text)
    unit = element.get("unit", "KiB")
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise FactError(source, _line(element), f"<memory unit='{unit}'>: not a libvirt memory unit")
    return value * factor // 1024


def _disk(element: Any) -> DomainDisk:
    source = _child(element, "source")
    path = None
    if source is not None:
        path = source.get("file") or source.get("dev") or source.get("dir")
    return DomainDisk(device=element.get("device", "disk"), type=element.get("type", "file"), source=path)


def _interface(element: Any, source: str) -> DomIf:
    kind = element.get("type", "")
    origin = _child(element, "source")
    mac = _child(element, "mac")
    model = _child(element, "model")
    target = _child(element, "target")
    if mac is None or not mac.get("address"):
        raise FactError(source, _line(element), "<interface> without <mac address>: "
                                                "an inactive definition always has one")
    where: Optional[str] = None
    if origin is not None:
        where = origin.get("network") if kind == "network" else origin.get("bridge") or origin.get("dev")
    return DomIf(interface=None if target is None else target.get("dev"), type=kind, source=where,
                 model=None if model is None else model.get("type"),
                 mac=parse_mac(mac.get("address"), source, _line(mac)))


def _os_id(root: Any) -> Optional[str]:
    metadata = _child(root, "metadata")
    if metadata is None:
        return None
    for element in metadata.iter(f"{_LIBOSINFO}os"):
        return element.get("id")
    return None


__all__: Tuple[str, ...] = ("DomDumpXml",)

"""Audit reports: the JSON report of SPEC section 5 and the text table a terminal shows."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Sequence

from .checks import HostAudit


def make_report(audits: Sequence[HostAudit], strict: bool = False) -> Dict[str, Any]:
    """The JSON report: in_sync means no errors (and, with `strict`, no warnings), as the exit code."""
    hosts = {a.host: {"in_sync": a.in_sync(strict), "drift": [_utf8(d.to_dict()) for d in a.drift],
                      "not_audited": [_utf8(item) for item in a.not_audited]} for a in audits}
    return {"in_sync": all(h["in_sync"] for h in hosts.values()), "hosts": hosts}


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _utf8(value: Any) -> Any:
    """Names from a capture that were not UTF-8 (bytes kept as lone surrogates) as the text \\xNN, so the
    JSON report is valid UTF-8 whatever a host printed."""
    if isinstance(value, str):
        return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", value)
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utf8(v) for v in value]
    return value


def _printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences, newlines) of a name shown escaped."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), _utf8(text))


# --- text ----------------------------------------------------------------------------

_COLOURS = {"error": "31", "warning": "33", "ok": "32", "dim": "2"}
_HEADER = ("SEVERITY", "KIND", "OBJECT", "EXPECTED", "ACTUAL")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_printable(str(v)) for v in value) if value else "none"
    return _printable(str(value))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_text(report: Dict[str, Any], color: bool = False) -> str:
    """A table of drift per host, the aspects not audited, and a one-line verdict at the end."""
    def paint(text: str, what: str) -> str:
        return f"\033[{_COLOURS[what]}m{text}\033[0m" if color else text

    lines: List[str] = []
    errors = warnings = drifted = 0
    for host, result in report["hosts"].items():
        drift = result["drift"]
        host_errors = sum(d["severity"] == "error" for d in drift)
        errors += host_errors
        warnings += len(drift) - host_errors
        drifted += not result["in_sync"]
        status = paint("in sync", "ok") if not drift else ", ".join(
            paint(_plural(n, w), w) for n, w in ((host_errors, "error"), (len(drift) - host_errors, "warning")) if n)
        lines.append(f"{_printable(host)}: {status}")
        if drift:
            rows = [_HEADER] + [(d["severity"], d["kind"], _printable(d["object"]), _cell(d["expected"]),
                                _cell(d["actual"]))
                                for d in drift]
            widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
            for number, row in enumerate(rows):
                cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
                if number:
                    cells[0] = paint(cells[0], row[0])
                lines.append("  " + "  ".join(cells).rstrip())
                if number:
                    lines.append("  " + " " * widths[0] + "  fix: " + _printable(drift[number - 1]["fix"]))
        for item in result.get("not_audited", []):
            lines.append("  " + paint(f"not audited: {_printable(item)}", "dim"))
    total = len(report["hosts"])
    if report["in_sync"]:
        verdict = paint("in sync", "ok") + f": {_plural(total, 'host')}"
        if warnings:
            verdict += f" ({_plural(warnings, 'warning')}; --strict counts warnings as drift)"
    else:
        counts = [_plural(n, w) for n, w in ((errors, "error"), (warnings, "warning")) if n]
        verdict = paint("drift", "error") + f": {' and '.join(counts)} on {drifted} of {_plural(total, 'host')}"
        verdict += "; run the fixes in the host's bundle directory"
    lines.append(verdict)
    return "\n".join(lines) + "\n"

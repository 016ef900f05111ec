"""The generated parts of docs/audit.md, from the registries they describe: the capture layout (the
capture table of every target and plugin) and the drift kinds (the check-kind registry).

    python -m vnetgen.docgen [--write]   # print the blocks, or rewrite them in docs/audit.md

A test holds docs/audit.md to this output, so the docs cannot drift from the code."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List

MARKERS = {"capture-layout": "capture layout", "drift-kinds": "drift kinds"}


def capture_layout(pm: Any) -> str:
    """Every file a capture may hold: the core's, each target's, each plugin's, with its command."""
    from .api import CaptureFile
    from .capture import DOMAINS, DOMIFLIST, DOMXML, NET_LIST, NET_XML, LAYOUT, OS_RELEASE, sysctl_file
    from .plugins import targets as plugin_targets

    rows: List[CaptureFile] = [NET_LIST, NET_XML, sysctl_file(["KEY..."]), DOMAINS, DOMIFLIST, DOMXML,
                               OS_RELEASE]
    owners: Dict[str, List[str]] = {}
    required_by: Dict[str, List[str]] = {}
    for target in plugin_targets(pm).values():
        for entry in target.capture_files():
            if entry.name not in {r.name for r in rows}:
                rows.append(entry)
            owners.setdefault(entry.name, []).append(target.name)
            if entry.required:
                required_by.setdefault(entry.name, []).append(target.name)
    for files in pm.hook.vnetgen_capture_files(host=None, plan=_AnyPlan()):
        for entry in files:
            if entry.name not in {r.name for r in rows}:
                rows.append(entry)
    lines = [f"Layout {LAYOUT} (`capture-layout.txt` holds the number; a capture without it is layout 1).", "",
             "| file | command | holds | required | written by |", "|---|---|---|---|---|"]
    for entry in rows:
        item = "<network>" if entry.each == "network" else "<vm>"
        name = entry.name.replace("{name}", item)
        # a table cell: "|" (grep -E's alternation) escaped
        command = " ".join(word.replace("{name}", item) for word in entry.argv).replace("|", "\\|")
        who = ", ".join(sorted(owners[entry.name])) if entry.name in owners else entry.owner
        if entry.name in owners:
            needed = sorted(required_by.get(entry.name, []))
            required = "yes" if needed == sorted(owners[entry.name]) else ("for " + ", ".join(needed) if needed else "no")
        else:
            required = "yes" if entry.required else "no"
        lines.append(f"| `{name}` | `{command}` | {entry.about} | {required} | {who} |")
    return "\n".join(lines)


class _AnyPlan:
    """A stand-in plan for asking plugins which capture files they may add (any network: all of them)."""

    networks = {"any": None}
    host = None


def drift_kinds(pm: Any) -> str:
    from .checks import kinds

    lines = ["| kind | severity | what it compares | read from |", "|---|---|---|---|"]
    for kind in kinds(pm).values():
        files = ", ".join(c if " " in c else f"`{c}`" for c in kind.captures) or "—"
        lines.append(f"| `{kind.name}` | {kind.severity} | {kind.summary} | {files} |")
    return "\n".join(lines)


def blocks(pm: Any) -> Dict[str, str]:
    return {"capture-layout": capture_layout(pm), "drift-kinds": drift_kinds(pm)}


def rewrite(text: str, generated: Dict[str, str]) -> str:
    for key, body in generated.items():
        pattern = re.compile(rf"(<!-- {key} -->\n).*?(\n<!-- /{key} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/audit.md: no <!-- {key} --> block")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


def main(argv: List[str]) -> int:
    from .plugins import get_plugin_manager

    generated = blocks(get_plugin_manager())
    path = Path(__file__).resolve().parent.parent / "docs" / "audit.md"
    if argv[1:] == ["--write"]:
        path.write_text(rewrite(path.read_text(), generated))
        return 0
    for key, body in generated.items():
        print(f"<!-- {key} -->\n{body}\n<!-- /{key} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

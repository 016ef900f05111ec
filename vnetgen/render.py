"""Plans → bundle artifacts (path, text): pure formatting; no I/O beyond reading templates."""
from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, Dict, List

from .api import Artifact
from .shell import Raw, cmd, q


@functools.lru_cache(maxsize=None)
def environment() -> Any:
    """The environment the bundle is rendered with: templates from their precompiled modules
    (vnetgen.templatec), each checked against its source."""
    from .templatec import Loader

    return _environment(Loader())


def source_environment() -> Any:
    """The same environment compiling every template from its source (what vnetgen.templatec
    precompiles, and what the tests compare the precompiled modules with)."""
    import jinja2

    return _environment(jinja2.PackageLoader("vnetgen", "templates"))


def _environment(loader: Any) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, never an empty string
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        auto_reload=False,  # templates are package files: no stat of each one at every render
        # bash's ${#array[@]} would open a default "{#" comment
        comment_start_string="{%#", comment_end_string="#%}")
    env.filters["q"] = q
    return env


def one_line(text: str) -> str:
    """A file name made safe for a comment line of a script or a line of REVIEW.md: a newline in a
    profile's file name must not end the comment and start a command."""
    return text if text.isprintable() else re.sub(r"[\x00-\x1f\x7f]", "?", text)


def hook_context(cases: List[Any]) -> Dict[str, Any]:
    """Plugins' hook cases grouped for hook.sh.j2: operation → network → lines, in the order given;
    each distinct block of functions once."""
    operations: Dict[str, Dict[str, List[str]]] = {}
    functions: List[str] = []
    for case in cases:
        operations.setdefault(case.operation, {}).setdefault(case.network, []).extend(case.lines)
        if case.functions and case.functions not in functions:
            functions.append(case.functions)
    return dict(operations=operations, functions=functions)


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def host_artifacts(plan: Any, profile_file: str) -> List[Artifact]:
    """Every file of one host's directory, paths relative to it, in a stable order."""
    host = plan.host.name
    common = dict(host=host, profile_file=profile_file, profile_name=plan.profile.name or "")
    files = [Artifact(f"networks/{n.name}.xml", n.xml) for n in plan.networks.values() if n.net.state != "absent"]
    if plan.sysctl:
        files.append(Artifact("sysctl.d/90-vnetgen.conf", render("sysctl.conf.j2", host=host, settings=plan.sysctl)))
    trunks = [n for n in plan.networks.values() if n.net.ports and n.mode.libvirt_bridge and n.net.state != "absent"]
    if trunks or plan.hook_cases:
        files.append(Artifact("hooks/network", render("hook.sh.j2", host=host, networks=trunks,
                                                      **hook_context(plan.hook_cases)), 0o755))
    files.extend(plan.artifacts)
    helpers = plan.helpers
    # The runbook checks each of these against SHA256SUMS, itself and the two scripts after it included.
    bundle_files = sorted([a.path for a in files] + ["runbook.sh", "rollback.sh", "capture.sh"])
    nets = list(plan.networks)   # the networks whose state the scripts read once (net_cache)
    files.append(Artifact("runbook.sh", render("runbook.sh.j2", steps=plan.steps, checks=plan.checks,
                                               helpers=helpers, bundle_files=bundle_files, nets=nets, **common),
                          0o755))
    files.append(Artifact("rollback.sh", render("rollback.sh.j2", steps=[s for s in reversed(plan.steps) if s.undo],
                                                vms=list(plan.host.vms), helpers=helpers, nets=nets, **common),
                          0o755))
    files.append(Artifact("capture.sh", render("capture.sh.j2", host=host, **capture_context(plan)), 0o755))
    return files


# Files earlier capture layouts wrote that the current one does not: removed before a new capture.
_LEGACY_CAPTURE_FILES = ("ip-link-bridge.json",)


def capture_context(plan: Any) -> Dict[str, Any]:
    """capture.sh's rows, one per file of the capture table (vnetgen.capture.capture_table)."""
    from .capture import DOMAINS, LAYOUT, LAYOUT_FILE, capture_table

    rows, stale = [], []
    for entry in capture_table(plan):
        item = Raw('"$name"')
        words = [item if word == "{name}" else word for word in entry.argv]
        path = entry.name.replace("{name}", "$name")
        rows.append(dict(file=entry.name.replace("{name}", "<network>" if entry.each == "network" else "<vm>"),
                         about=entry.about, required=entry.required, each=entry.each, command=cmd(*words),
                         path=f'"{path}"' if "$" in path else q(path),
                         how="partial" if entry.status_ok else "required" if entry.required else "optional"))
        stale.append(f'"$OUT"/{entry.name.replace("{name}", "*")}' if entry.each else f'"$OUT/{entry.name}"')
    stale += [f'"$OUT/{name}"' for name in _LEGACY_CAPTURE_FILES]
    return dict(rows=rows, stale=stale, layout=LAYOUT, layout_file=LAYOUT_FILE, domains_file=DOMAINS.name)


def sha256sums(files: Dict[str, Artifact]) -> str:
    """`sha256sum` format ("HASH  PATH"), sorted by path, so `sha256sum -c` can check the bundle."""
    return "".join(sha256_line(path, a.content()) for path, a in sorted(files.items()))


def sha256_line(path: str, data: bytes) -> str:
    """One line of SHA256SUMS."""
    return f"{hashlib.sha256(data).hexdigest()}  {path}\n"

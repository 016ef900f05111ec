"""The `vnetgen` console script and `python -m vnetgen`: the top-level help without importing typer,
everything else through vnetgen.cli.

Importing typer alone takes about half the time of importing every dependency, so `vnetgen --help`
could not be fast through it. `vnetgen --help` and a bare `vnetgen` (help on standard error, exit 2)
print instead what typer printed for them when vnetgen/_helptext.py was made (`python -m
vnetgen.helptext --write`), but only where typer would print those very bytes: the same typer
release (read from its __init__.py, not imported), standard output not a terminal, no COLUMNS (the
help's width), no TYPER_* or completion variable, no gettext catalogue for typer's words, a program
name the text was made for. Anything else runs typer. tests/test_helptext.py renders typer's help
again and compares byte for byte, so the stored text cannot go stale unnoticed.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Tuple


def program_name() -> str:
    """The name typer (click's `_detect_program_name`) puts in "Usage:": the script's file name, or
    `python -m PACKAGE` under -m."""
    main = sys.modules.get("__main__")
    path = sys.argv[0] if sys.argv else ""
    package = getattr(main, "__package__", None)
    if package in (None, ""):
        return os.path.basename(path)
    name = os.path.splitext(os.path.basename(path))[0]
    module = package if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def _typer_version() -> Optional[str]:
    """The installed typer's version, read from its package file (importing it is what this avoids)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("typer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith("__version__ = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


def prerendered(args: List[str]) -> Optional[Tuple[str, str, int]]:
    """(stdout, stderr, exit status) typer would give for `args`, when it was stored and nothing here
    would make typer print otherwise; None: let typer run."""
    if os.name == "nt" or len(args) > 1 or (args and args[0] != "--help"):
        return None
    env = os.environ
    if "COLUMNS" in env or any(key.startswith(("TYPER_", "_TYPER_")) or key.endswith("_COMPLETE") for key in env):
        return None
    stdout = sys.stdout
    if stdout is None or stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        return None
    try:
        if stdout.isatty():
            return None
    except ValueError:  # closed
        return None
    from . import _helptext

    shown = _helptext.HELP.get((program_name(), tuple(args)))
    if shown is None or _typer_version() != _helptext.TYPER:
        return None
    import gettext

    if gettext.find("messages"):  # typer's words ("Options", "Commands") would be translated
        return None
    return shown


def main() -> None:
    shown = prerendered(sys.argv[1:])
    if shown is None:
        from .cli import main as typer_main

        typer_main()
        return
    out, err, status = shown
    for stream, text in ((sys.stdout, out), (sys.stderr, err)):
        if text:
            stream.write(text)
            stream.flush()
    sys.exit(status)

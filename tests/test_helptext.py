"""`vnetgen --help` is printed from vnetgen/_helptext.py without importing typer (vnetgen.entry): the
stored text is what typer prints now, byte for byte, the console script and `python -m vnetgen` print
it without typer, and every condition that would make typer print otherwise runs typer instead."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import pytest

from vnetgen import _helptext, entry, helptext

Shown = Tuple[str, str, int]


def run(argv: List[str], env: Optional[Dict[str, str]] = None, stdout=subprocess.PIPE) -> Tuple[Shown, bool]:
    """(stdout, stderr, status) of `argv` run with -X importtime, and whether it imported typer."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          env=helptext.plain_environment() if env is None else env, stdin=subprocess.DEVNULL)
    err = proc.stderr.decode()
    imports = [line for line in err.splitlines(keepends=True) if line.startswith("import time:")]
    imported_typer = any(line.split("|")[-1].strip() == "typer" for line in imports)
    rest = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("import time:"))
    return ((proc.stdout or b"").decode(), rest, proc.returncode), imported_typer


def test_the_stored_help_is_what_typer_prints():
    assert helptext.generate() == helptext.current(), "run: python -m vnetgen.helptext --write"


@pytest.mark.parametrize("args", [("--help",), ()])
def test_python_m_vnetgen_prints_it_without_typer(args):
    shown, imported_typer = run(["-m", "vnetgen", *args])
    assert shown == helptext.typer_render("python -m vnetgen", args)
    assert shown == _helptext.HELP[("python -m vnetgen", args)]
    assert not imported_typer
    assert shown[2] == (0 if args else 2) and "Commands:" in (shown[0] + shown[1])


@pytest.mark.parametrize("args", [("--help",), ()])
def test_the_console_script_prints_it_without_typer(args):
    script = shutil.which("vnetgen", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("no vnetgen console script beside this python (pip install -e . makes it)")
    with open(script, encoding="utf-8", errors="replace") as handle:
        if "vnetgen.entry" not in handle.read():
            pytest.skip("the console script predates vnetgen.entry: pip install -e . again")
    shown, imported_typer = run([script, *args])
    assert shown == helptext.typer_render("vnetgen", args) == _helptext.HELP[("vnetgen", args)]
    assert not imported_typer


@pytest.mark.parametrize("variable, value", [("COLUMNS", "60"), ("COLUMNS", "80"), ("TYPER_USE_RICH", "1"),
                                             ("_VNETGEN_COMPLETE", "bash_source")])
def test_a_variable_typer_reads_runs_typer(variable, value):
    env = dict(helptext.plain_environment(), **{variable: value})
    shown, imported_typer = run(["-m", "vnetgen", "--help"], env=env)
    assert imported_typer
    assert shown == helptext.typer_render("python -m vnetgen", ("--help",), env=env)
    if variable == "COLUMNS" and value == "60":
        assert shown != _helptext.HELP[("python -m vnetgen", ("--help",))]  # narrower: typer did read it


def test_a_terminal_runs_typer():
    import pty

    controller, terminal = pty.openpty()
    try:
        shown, imported_typer = run(["-m", "vnetgen", "--help"], stdout=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert imported_typer


@pytest.mark.parametrize("args", [("--version",), ("-h",), ("--help", "build"), ("build", "--help")])
def test_other_arguments_run_typer(args):
    shown, imported_typer = run(["-m", "vnetgen", *args])
    assert imported_typer
    assert shown == helptext.typer_render("python -m vnetgen", args)


def test_another_typer_release_or_program_name_runs_typer(monkeypatch):
    import io

    for key in list(os.environ):
        if key not in helptext.plain_environment():
            monkeypatch.delenv(key)
    pipe, err = io.StringIO(), io.StringIO()   # not terminals
    for name, stream in (("stdout", pipe), ("__stdout__", pipe), ("stderr", err), ("__stderr__", err)):
        monkeypatch.setattr(sys, name, stream)
    monkeypatch.setattr(entry, "program_name", lambda: "python -m vnetgen")
    assert entry.prerendered(["--help"]) == _helptext.HELP[("python -m vnetgen", ("--help",))]
    with monkeypatch.context() as patch:
        patch.setattr(entry, "_typer_version", lambda: "0.0.1")
        assert entry.prerendered(["--help"]) is None
    monkeypatch.setattr(entry, "program_name", lambda: "vng")
    assert entry.prerendered(["--help"]) is None


def test_a_gettext_catalogue_runs_typer(tmp_path):
    """A language whose catalogue translates typer's words: typer prints them translated."""
    env = dict(helptext.plain_environment(), LANGUAGE="xx")
    catalogue = tmp_path / "locale" / "xx" / "LC_MESSAGES"
    catalogue.mkdir(parents=True)
    write_mo(catalogue / "messages.mo", {"Options": "Optionen", "Commands": "Befehle"})
    # gettext's default catalogue directory is sys.base_prefix/share/locale: point a copy of Python's
    # prefix there through a sitecustomize that rebinds gettext._default_localedir.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import gettext\ngettext._default_localedir = {str(tmp_path / 'locale')!r}\n")
    env["PYTHONPATH"] = str(site)
    shown, imported_typer = run(["-m", "vnetgen", "--help"], env=env)
    assert imported_typer
    assert "Befehle:" in shown[0]


def write_mo(path, messages: Dict[str, str]) -> None:
    """A GNU gettext catalogue (.mo) of `messages`."""
    import struct

    keys = sorted(messages)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(messages[k].encode() + b"\0" for k in keys)
    n = len(keys)
    start = 7 * 4 + 16 * n
    offsets, pos = [], 0
    for k in keys:
        offsets.append((len(k.encode()), start + pos))
        pos += len(k.encode()) + 1
    soffsets, pos = [], 0
    for k in keys:
        soffsets.append((len(messages[k].encode()), start + len(ids) + pos))
        pos += len(messages[k].encode()) + 1
    header = struct.pack("Iiiiiii", 0x950412de, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    table = b"".join(struct.pack("ii", *o) for o in offsets) + b"".join(struct.pack("ii", *o) for o in soffsets)
    path.write_bytes(header + table + ids + strs)

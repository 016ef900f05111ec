"""The `vnetgen` command: parses arguments, calls the library, maps results to exit codes."""
# No `from __future__ import annotations` here: typer reads every command's annotations at start-up,
# and as strings it evaluates each twice (inspect, then typing.get_type_hints): ~0.8 ms of a build.

import copy
import gc
import os
import sys
from typing import Any, List, NoReturn, Optional

import typer

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Compile libvirt virtual networking profiles into reviewable bundles, and audit hosts.")

EXIT_OK, EXIT_DIFFERS, EXIT_INVALID = 0, 1, 2


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vnetgen {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    """vnetgen: libvirt networking as reviewable code."""


def _print_report(report, stream=None) -> None:
    for diag in report.sorted():
        typer.echo(str(diag), err=True)


def _load(profile: str, writes: bool = False):
    """Load and validate, or print every problem and exit 2."""
    from .diagnostics import InvalidProfile
    from .plugins import get_plugin_manager
    from .profile import load_valid

    pm = get_plugin_manager()
    try:
        loaded, report = load_valid(profile, pm)
    except InvalidProfile as exc:
        _invalid(profile, exc, writes)
    _print_report(report)
    return loaded, pm


def _invalid(profile: str, exc: Any, writes: bool = False) -> NoReturn:
    """Print every problem of an InvalidProfile and exit 2."""
    _print_report(exc.report)
    count = len(exc.report.errors)
    tail = "; nothing was written" if writes else ""
    typer.echo(f"{profile}: {count} error{'s' if count != 1 else ''}{tail}", err=True)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def validate(profile: str = typer.Argument(..., metavar="PROFILE", help="The profile (YAML).")) -> None:
    """Report problems in PROFILE: exit 0 when there are none (warnings alone: 0), 2 on errors."""
    _load(profile)
    typer.echo(f"{profile}: ok")


@app.command()
def build(profile: str = typer.Argument(..., metavar="PROFILE", help="The profile (YAML)."),
          output: str = typer.Option("build", "-o", "--output", metavar="DIR", help="Bundle directory."),
          host: List[str] = typer.Option([], "--host", metavar="HOST", help="Build only this host (repeatable)."),
          check: bool = typer.Option(False, "--check", help="Compare DIR with what PROFILE builds; exit 1 "
                                                            "if they differ. Writes nothing."),
          force: bool = typer.Option(False, "--force", help="Write into DIR even if it holds files vnetgen "
                                                            "did not write (they are kept)."),
          archive: bool = typer.Option(False, "--archive", help="Also write byte-reproducible archives: "
                                       "DIR/archives/hosts/HOST.tar.gz and DIR/archives/fleet.tar.gz."),
          against: Optional[str] = typer.Option(None, "--against", metavar="OLD",
                                                help="The profile the hosts run now: REVIEW.md gets a Changes "
                                                     "section and runbooks apply DHCP changes live."),
          jobs: Optional[int] = typer.Option(None, "-j", "--jobs", metavar="N", min=1,
                                             help="Worker processes that plan and render hosts (default: "
                                                  "one per CPU, at most 4, from 32 hosts on; 1: none). The "
                                                  "bundle is the same whatever N.")) -> None:
    """Compile PROFILE into a bundle: network XML, ifcfg, sysctl, runbook.sh, rollback.sh, capture.sh."""
    from .bundle import BundleError, Stream, build_archived, compare, write

    loaded, pm = _load(profile, writes=not check)
    old = _load(against)[0] if against else None
    unknown = [h for h in host if h not in loaded.hosts]
    if unknown:
        typer.echo(f"{profile}: no host {', '.join(unknown)} (hosts: {', '.join(loaded.hosts)})", err=True)
        raise typer.Exit(EXIT_INVALID)
    # Rendered as it is written or compared: a fleet's bundle is never held whole (--archive packs
    # the whole bundle, so it builds it in memory first).
    stream = Stream(loaded, pm, profile_file=_display_name(profile), hosts=host or None, against=old, jobs=jobs)
    try:
        bundle = build_archived(stream) if archive else stream
        if check:
            differ, missing, extra, count = compare(bundle, output)
            for path, how in differ:
                typer.echo(f"differs: {path} (a rebuild writes {how})")
            for label, paths in (("missing", missing), ("extra", extra)):
                for path in paths:
                    typer.echo(f"{label}: {path}")
            if differ or missing or extra:
                typer.echo(f"{output} is out of date: {len(differ)} differ, {len(missing)} missing, "
                           f"{len(extra)} extra; run vnetgen build {profile} -o {output}")
                raise typer.Exit(EXIT_DIFFERS)
            typer.echo(f"{output} is up to date ({count} files)")
            return
        written = write(bundle, output, force=force)
    except BundleError as exc:
        typer.echo(f"vnetgen: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID)
    typer.echo(f"wrote {len(written)} files for {stream.hosts} host(s) to {output}")


def _display_name(path: str) -> str:
    """The profile's name as recorded in the bundle: its base name, so bundles are relocatable."""
    return os.path.basename(path)


@app.command()
def audit(profile: str = typer.Argument(..., metavar="PROFILE", help="The profile (YAML)."),
          captures: Optional[str] = typer.Option(None, "--captures", metavar="DIR",
                                                 help="Audit the captures in DIR (DIR/<host>/, written by each "
                                                      "host's capture.sh) instead of this machine."),
          host: List[str] = typer.Option([], "--host", metavar="HOST", help="Audit only this host (repeatable). Live: the host "
                                                            "this machine is (default: by hostname, or the "
                                                            "only host)."),
          output_format: str = typer.Option("text", "--format", metavar="text|json", help="Report format."),
          strict: bool = typer.Option(False, "--strict", help="Warnings (e.g. networks the profile does not "
                                                              "mention) are drift too."),
          jobs: Optional[int] = typer.Option(None, "-j", "--jobs", metavar="N", min=1,
                                             help="Worker processes that plan and audit captured hosts "
                                                  "(default: one per CPU, at most 4, from 32 hosts on; 1: "
                                                  "none). The report is the same whatever N.")) -> None:
    """Compare the live host (or captures) with PROFILE: exit 0 in sync, 1 drift, 2 invalid input or capture."""
    import json
    import os

    from .audit import AuditError, audit_live, audit_profile_captures, format_text
    from .diagnostics import InvalidProfile
    from .factbase import FactError

    if output_format not in ("text", "json"):
        typer.echo(f"vnetgen audit: --format is text or json, not {output_format!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    try:
        if captures is not None:
            # loaded and validated there, as _load does: a fleet's hosts are audited meanwhile
            from .plugins import get_plugin_manager

            try:
                report = audit_profile_captures(profile, captures, host or None, strict=strict,
                                                pm=get_plugin_manager(), jobs=jobs, valid=_print_report)
            except InvalidProfile as exc:
                _invalid(profile, exc)
        elif len(host) > 1:
            _load(profile)
            raise AuditError("a live audit reads this machine only: give one --host, or audit captures "
                             "with --captures DIR")
        else:
            loaded, pm = _load(profile)
            report = audit_live(loaded, host[0] if host else None, strict=strict, pm=pm)
    except (AuditError, FactError) as exc:
        typer.echo(f"vnetgen audit: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID)
    if output_format == "json":
        typer.echo(json.dumps(report, indent=2))
    else:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        typer.echo(format_text(report, color=color), nl=False)
    raise typer.Exit(EXIT_OK if report["in_sync"] else EXIT_DIFFERS)


@app.command("import")
def import_(captures: Optional[str] = typer.Option(None, "--captures", metavar="DIR",
                                                  help="Import the captures in DIR (DIR/<host>/, written by "
                                                       "capture.sh) instead of this machine."),
            host: List[str] = typer.Option([], "--host", help="Import only this host of DIR (repeatable). Live: "
                                                              "the name to give this machine (default: its "
                                                              "short hostname)."),
            output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE",
                                                 help="Write the profile to FILE (default: standard output).")
            ) -> None:
    """Write a profile of what the hosts run now (captures or this machine), such that auditing them
    against it reports in sync: exit 0 written, 2 nothing usable. Skipped files and what vnetgen does
    not model are listed on standard error."""
    from .factbase import FactError
    from .importer import ImportError_, import_captures, import_live, render_profile, self_check
    from .observe import AuditError
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    try:
        if captures is not None:
            imported = import_captures(captures, host, pm=pm)
        elif len(host) > 1:
            raise ImportError_("a live import reads this machine only: give one --host, or import captures "
                               "with --captures DIR")
        else:
            imported = import_live(host[0] if host else None, pm=pm)
    except (ImportError_, AuditError, FactError) as exc:
        typer.echo(f"vnetgen import: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID)
    text = render_profile(imported)
    for line in imported.messages() + self_check(text, imported, pm):
        typer.echo(f"vnetgen import: {line}", err=True)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        _write_text(output, text)
    except OSError as exc:
        typer.echo(f"vnetgen import: {output}: cannot write: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_INVALID)
    count = len(imported.hosts)
    typer.echo(f"wrote {output} ({count} host{'s' if count != 1 else ''})", err=True)


def _write_text(path: str, text: str) -> None:
    """Replace `path` whole or not at all (a temporary file beside it, then rename)."""
    import tempfile

    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    fd, scratch = tempfile.mkstemp(prefix=".vnetgen-import-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        if os.path.exists(scratch):
            os.unlink(scratch)
        raise


@app.command()
def diff(old: str = typer.Argument(..., metavar="OLD", help="The profile the hosts run now."),
         new: str = typer.Argument(..., metavar="NEW", help="The profile to apply.")) -> None:
    """Say what changes from OLD to NEW, host by host, and its impact (restart, live, host networking)."""
    from .diff import diff_links, diff_plans
    from .plan import plan_profile

    before, pm = _load(old)
    after, _ = _load(new)
    changes = diff_links(before, after) + diff_plans(plan_profile(before, pm), plan_profile(after, pm))
    if not changes:
        typer.echo("no changes")
        return
    host = None
    for change in changes:
        if change.host != host:
            host = change.host
            typer.echo(f"{host}:")
        typer.echo(f"  {change.line()}")
    restarts = sorted({f"{c.host}/{c.object.split(' ', 1)[1]}" for c in changes if c.impact == "restart"})
    typer.echo(f"{len(changes)} change(s); networks that restart: {', '.join(restarts) or 'none'}")


@app.command()
def plugins() -> None:
    """List the modes and targets, and the plugins (package, version) that provide them."""
    from .plugins import describe, get_plugin_manager

    rows = describe(get_plugin_manager())
    header = ("KIND", "NAME", "PLUGIN", "PACKAGE", "VERSION", "DESCRIPTION")
    table = [header] + [(r["kind"], r["name"], r["plugin"], r["package"], r["version"], r["description"])
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


@app.command()
def schema() -> None:
    """Print the JSON Schema of profile v1 (for an editor's YAML language server)."""
    import json

    from .plugins import get_plugin_manager, modes
    from .schema import profile_schema

    typer.echo(json.dumps(profile_schema(modes(get_plugin_manager())), indent=2, sort_keys=True))


@app.command()
def rehearse(profile: str = typer.Argument(..., metavar="PROFILE", help="The profile (YAML)."),
             host: List[str] = typer.Option([], "--host", metavar="HOST", help="Rehearse only this host (repeatable); default: "
                                                               "every host, cabled as the profile's links say.")
             ) -> None:
    """Replay the runbooks in a throw-away lab (needs root and libvirt) and report steps, leases,
    reachability, idempotency, audit and rollback: exit 0 as expected, 1 not, 2 cannot run here."""
    from .lab import rehearse as rehearsal
    from .lab.namespaces import lab_available

    # Before the profile: a machine that cannot run a lab should say so whatever the profile.
    ok, reason = lab_available()
    if not ok:
        typer.echo(rehearsal.unavailable_message(reason), err=True)
        raise typer.Exit(EXIT_INVALID)
    loaded, pm = _load(profile)
    unknown = [h for h in host if h not in loaded.hosts]
    if unknown:
        typer.echo(f"{profile}: no host {', '.join(unknown)} (hosts: {', '.join(loaded.hosts)})", err=True)
        raise typer.Exit(EXIT_INVALID)
    raise typer.Exit(rehearsal.rehearse(loaded, pm, host or None, echo=typer.echo))


def main() -> None:
    try:
        command_app(sys.argv[1:2])()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        gc.freeze()


def command_app(first: List[str]) -> typer.Typer:
    """`app`, or when the arguments start with a command's name, `app` with that command alone: typer
    makes each registered command into a click command at every start (~0.1 ms a command), and
    `vnetgen COMMAND ...` never uses the others' (tests/test_cli.py: it parses, helps and fails
    as the whole app does)."""
    for info in app.registered_commands:
        if first and (info.name or typer.main.get_command_name(info.callback.__name__)) == first[0]:
            one = copy.copy(app)   # the same settings and callback (--version)
            one.registered_commands = [info]
            return one
    return app

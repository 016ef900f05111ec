"""The observed state of one host, read from a capture directory or by running the same commands
live, by the capture layout (vnetgen.capture's table, whose names are imported here as before)."""
from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .api import CaptureFile, CaptureReader, HostNetworking
# The capture table lives in vnetgen.capture (what a build needs of it, without the readers below).
from .capture import (DOMAINS, DOMIFLIST, DOMXML, IP_FORWARD, LAYOUT, LAYOUT_FILE, NET_LIST, NET_XML,  # noqa: F401
                      OS_RELEASE, capture_table, sysctl_file)
from .dataclassc import dataclass
from .factbase import FactError, as_text
from .safeio import CAPTURE_LIMIT, UnsafeInput, excerpt, read_bounded

if TYPE_CHECKING:  # the parsers (vnetgen.facts) are imported where a capture is read: a build needs none
    from .facts import DomainEntry, DomIf, NetListEntry, NetworkDef

# Seconds one live command may take; virsh waits much longer than this for a hung libvirtd.
TIMEOUT = 30.0

# A shell's (and nsenter's) status for "command not found", for runners that go through one.
_NOT_FOUND = 127

# (returncode, stdout, stderr); raises OSError when the program cannot be run, TimeoutExpired on timeout.
Runner = Callable[[Sequence[str], float], Tuple[int, bytes, bytes]]


class AuditError(Exception):
    """Input the audit cannot use (exit 2): a missing capture, virsh absent, libvirtd unreachable, ..."""


@dataclass
class Observed:
    """What one host runs, as its tools report it; None/absent entries were not observed."""

    host: str
    origin: str                                   # the capture directory, or "live"
    layout: int                                   # capture layout version (live: LAYOUT)
    networks: Dict[str, NetListEntry]             # virsh net-list --all, by name
    definitions: Dict[str, NetworkDef]            # net-dumpxml of the networks asked for that exist
    networking: HostNetworking                    # bridges, links, addresses, routes (the target reads them)
    sysctl: Dict[str, str]
    domains: Optional[Dict[str, DomainEntry]] = None        # None: domains were not observed
    interfaces: Dict[str, Tuple[DomIf, ...]] = field(default_factory=dict)  # VMs whose NICs were observed
    not_audited: List[str] = field(default_factory=list)   # "WHAT: WHY", for the report
    extra: Dict[str, Optional[Tuple[str, str]]] = field(default_factory=dict)   # plugins' files: (text, source)
    extra_why: Dict[str, str] = field(default_factory=dict)   # why a plugin's file is None

    @property
    def bridges(self) -> Dict[str, Any]:
        return self.networking.bridges


class _Source(CaptureReader):
    origin = ""
    layout = LAYOUT

    def get(self, name: str, required: bool, status_ok: bool = False) -> Tuple[Optional[Tuple[str, str]], str]:
        raise NotImplementedError  # pragma: no cover

    def read(self, name: str) -> Optional[Tuple[str, str]]:
        return self.get(name, required=False)[0]

    def why(self, name: str) -> str:
        return self.get(name, required=False)[1]

    def require(self, name: str) -> Tuple[str, str]:
        got, _ = self.get(name, required=True)
        assert got is not None
        return got


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return True   # unknown: resolve it


class _Captures(_Source):
    """Files of DIR/<host>/; a missing required one is an AuditError naming it."""

    def __init__(self, root: Path, base: Optional[Path] = None, real_base: Optional[str] = None) -> None:
        self.root = root
        self.base = base if base is not None else root  # no capture file is read from outside it
        # resolved once, not for every file (`real_base`: by the caller, once for every host)
        self.real_base = real_base or os.path.realpath(self.base)
        self.origin = self.dir = str(root)
        # The host directory resolved once: a file below it reached through no symbolic link is
        # inside the capture without resolving its whole path again (_confined).
        if real_base and root.parent == self.base and root.name != ".." and not _is_link(self.dir):
            self.root_inside = True   # DIR/<host>, no link: inside DIR without resolving it again
        else:
            real_root = os.path.realpath(self.dir)
            self.root_inside = real_root == self.real_base or real_root.startswith(self.real_base.rstrip(os.sep) + os.sep)
        self.plain_dirs: Dict[str, bool] = {}
        self.listings: Dict[str, Any] = {}   # directory → {name: os.DirEntry}, or None: not listable
        self.layout = 1
        got = self._read(LAYOUT_FILE)
        if got is not None:
            text = as_text(got).strip()
            if not text.isdigit() or len(text) > 4:
                raise AuditError(f"{root / LAYOUT_FILE}: expected a layout version number, got {excerpt(text)}")
            self.layout = int(text)

    def _path(self, name: str) -> str:
        wrapped = f"/{name}/"
        if "//" in wrapped or "/./" in wrapped:
            return str(self.root / name)   # pathlib drops "." and empty components ("", "//", a leading or trailing "/")
        return self.dir + os.sep + name    # the same, for the thousands of plain names

    def _confined(self, path: str, name: str, link: bool) -> bool:
        """True when `path` (DIR/<host>/`name`, a symbolic link if `link`) is known to lie in the capture
        without resolving it: the host directory does, and no component of `name` is a link."""
        if not self.root_inside or link or path != self.dir + os.sep + name:
            return False
        at = self.dir
        for part in name.split("/")[:-1]:
            at += os.sep + part
            plain = self.plain_dirs.get(at)
            if plain is None:
                try:
                    plain = not stat.S_ISLNK(os.lstat(at).st_mode)
                except OSError:
                    plain = False
                self.plain_dirs[at] = plain
            if not plain:
                return False
        return True

    def _listed(self, path: str) -> Optional[Union[bool, "os.DirEntry[str]"]]:
        """What the listing of `path`'s directory says of it: its entry, False when absent, None when
        that directory cannot be listed. One listing a directory instead of an lstat a file: a host
        has a dozen files and a score of optional ones it usually lacks."""
        directory, _, base = path.rpartition(os.sep)
        entries = self.listings.get(directory, False)
        if entries is False:
            try:
                with os.scandir(directory) as found:
                    entries = {entry.name: entry for entry in found}
            except (OSError, ValueError):
                entries = None
            self.listings[directory] = entries
        if entries is None:
            return None
        return entries.get(base, False)

    def _read(self, name: str, path: Optional[str] = None) -> Optional[bytes]:
        """The bytes of one capture file, None when absent; bounded, and never through a link out of the capture."""
        path = path or self._path(name)
        entry = self._listed(path)
        if entry is False:
            return None
        try:
            # is_symlink: from the listing (d_type), else an lstat, as below
            link = entry.is_symlink() if entry is not None else stat.S_ISLNK(os.lstat(path).st_mode)
        except (OSError, ValueError):
            return None   # as os.path.lexists says
        within = None if self._confined(path, name, link) else str(self.base)
        try:
            return read_bounded(path, CAPTURE_LIMIT, "capture file", within=within, real_within=self.real_base)
        except UnsafeInput as error:
            raise AuditError(str(error)) from None

    def get(self, name: str, required: bool, status_ok: bool = False) -> Tuple[Optional[Tuple[str, str]], str]:
        path = self._path(name)
        data = self._read(name, path)
        if data is None:
            if required:
                raise AuditError(f"{path}: missing; capture.sh writes it (run it again on the host)")
            return None, f"{name} not captured"
        return (as_text(data), str(path)), ""


def run_command(argv: Sequence[str], timeout: float) -> Tuple[int, bytes, bytes]:
    """Run argv without a shell; C locale, because virsh translates its table headers and states."""
    env = dict(os.environ, LC_ALL="C")
    done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
    return done.returncode, done.stdout, done.stderr


class _Live(_Source):
    """The same layout, produced by running each file's command on this machine."""

    def __init__(self, table: Sequence[CaptureFile], uri: Optional[str], runner: Runner, timeout: float) -> None:
        self.table = table
        self.uri = uri
        self.runner = runner
        self.timeout = timeout
        self.origin = "live"
        self.cache: Dict[str, Tuple[Optional[Tuple[str, str]], str]] = {}

    def command(self, name: str) -> List[str]:
        for entry in self.table:
            if entry.each:
                prefix, suffix = entry.name.split("{name}")
                if name.startswith(prefix) and name.endswith(suffix):
                    argv = entry.command(name[len(prefix):len(name) - len(suffix)])
                    break
            elif entry.name == name:
                argv = entry.command()
                break
        else:
            raise AuditError(f"{name}: not a file of the capture layout")
        if argv[0] == "virsh" and self.uri:
            # Without -c, virsh itself honours LIBVIRT_DEFAULT_URI.
            argv = ["virsh", "-c", self.uri, *argv[1:]]
        return argv

    def get(self, name: str, required: bool, status_ok: bool = False) -> Tuple[Optional[Tuple[str, str]], str]:
        if name not in self.cache or (required and self.cache[name][0] is None):
            self.cache[name] = self._run(name, required, status_ok)
        return self.cache[name]

    def _run(self, name: str, required: bool, status_ok: bool) -> Tuple[Optional[Tuple[str, str]], str]:
        argv = self.command(name)
        shown = " ".join(argv)
        try:
            status, out, err = self.runner(argv, self.timeout)
        except FileNotFoundError:
            status, out, err = _NOT_FOUND, b"", b""
        except PermissionError:
            raise AuditError(f"{argv[0]}: permission denied running it") from None
        except OSError as error:
            raise AuditError(f"{shown}: cannot run: {error.strerror or error}") from None
        except subprocess.TimeoutExpired:
            why = f"`{shown}` timed out after {self.timeout:g} s"
            if required or argv[0] != "virsh":
                raise AuditError(why + _hint(argv[0] == "virsh", self.uri, "")) from None
            return None, why
        if status == _NOT_FOUND:
            if argv[0] == "sysctl":
                return self._proc_sysctl(argv[1:])
            why = _missing_tool(argv[0])
            if required:
                raise AuditError(why)
            return None, why
        message = _first_error(err)
        if status != 0 and not (status_ok and out):
            if not required:
                return None, f"`{shown}` failed: {message or f'exit status {status}'}"
            raise AuditError(_command_failed(argv, status, message, self.uri))
        return (as_text(out), f"`{shown}`"), ""

    def _proc_sysctl(self, keys: Sequence[str]) -> Tuple[Optional[Tuple[str, str]], str]:
        # sysctl lives in /sbin, which a user's PATH may lack: the kernel's files say the same.
        lines = []
        for key in keys:
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                lines.append(f"{key} = {Path(path).read_text().strip()}\n")
            except FileNotFoundError:
                continue
            except OSError as error:
                raise AuditError(f"{path}: cannot read: {error.strerror or error}") from None
        return ("".join(lines), "/proc/sys"), ""


_TOOLS = {"virsh": "libvirt's client (libvirt-clients; libvirt-client on RHEL)", "sysctl": "procps"}


def _missing_tool(program: str) -> str:
    package = _TOOLS.get(program, program)
    return (f"{program} not found on this machine: install {package}, or run the bundle's capture.sh on the "
            f"host and audit with --captures DIR")


def _first_error(err: bytes) -> str:
    lines = [line.strip() for line in as_text(err).splitlines() if line.strip()]
    # virsh says "error: failed to connect to the hypervisor" first and the cause on the next line.
    return "; ".join(lines[:3])[:400]


# Searched case-blind in virsh's error (compiled when one is: a build never does).
_PERMISSION = (r"permission denied|authentication (?:unavailable|failed)|access denied|"
               r"not authorized|polkit")
_UNREACHABLE = (r"failed to connect|cannot recv data|no connection driver|"
                r"connection refused|no such file or directory")


def _hint(virsh: bool, uri: Optional[str], message: str) -> str:
    if not virsh:
        return ""
    where = uri or os.environ.get("LIBVIRT_DEFAULT_URI") or "libvirt's default URI"
    if re.search(_PERMISSION, message, re.I):
        return (f"; permission denied by libvirtd ({where}): run as root or as a member of the libvirt "
                f"group")
    if re.search(_UNREACHABLE, message, re.I) or not message:
        return f"; libvirtd is not reachable ({where}): is it running? (systemctl status libvirtd)"
    return ""


def _command_failed(argv: Sequence[str], status: int, message: str, uri: Optional[str]) -> str:
    text = f"`{' '.join(argv)}` failed (exit status {status})"
    if message:
        text += f": {message}"
    return text + _hint(argv[0] == "virsh" and argv[1:2] != ["net-dumpxml"], uri, message)


def read_capture(directory: Union[str, Path], plan: Any, real_directory: Optional[str] = None) -> Observed:
    """Observed state of `plan`'s host from DIR/<host>/ as capture.sh writes it (`real_directory`:
    os.path.realpath(DIR), when the caller resolved it once for many hosts).

    Raises AuditError for a missing required file, FactError ("FILE:LINE: message") for one that
    cannot be read.
    """
    root = Path(directory) / plan.name
    if not root.is_dir():
        raise AuditError(f"{root}: no capture of host {plan.name} (run its capture.sh {directory} on the host)")
    return _observe(_Captures(root, Path(directory), real_directory), plan)


def read_live(plan: Any, uri: Optional[str] = None, runner: Runner = run_command,
              timeout: float = TIMEOUT) -> Observed:
    """Observed state of this machine as `plan`'s host, by running the commands capture.sh runs.

    virsh honours LIBVIRT_DEFAULT_URI unless `uri` is given. Raises AuditError when virsh is
    missing, libvirtd is unreachable, permission is denied or a command fails or hangs.
    """
    return _observe(_Live(capture_table(plan), uri, runner, timeout), plan)


def wanted(plan: Any) -> Tuple[List[str], List[str]]:
    """The networks whose definitions the audit needs, and the VMs whose NICs it needs."""
    return [n.name for n in plan.networks.values() if n.net.state != "absent"], list(plan.host.vms)


def _observe(source: _Source, plan: Any) -> Observed:
    from .facts import NetDumpXml, NetList, Sysctl

    networks, vms = wanted(plan)
    got = source.require(NET_LIST.path())
    listed = {entry.name: entry for entry in NetList().process(*got)}
    parser = NetDumpXml()
    definitions = {name: _definition(source, name, parser) for name in dict.fromkeys(networks) if name in listed}
    networking = plan.target.observe(source)
    sysctl = sysctl_file([s.key for s in plan.sysctl])
    got, _ = source.get(sysctl.path(), required=True, status_ok=True)
    observed = Observed(host=plan.name, origin=source.origin, layout=source.layout, networks=listed,
                        definitions=definitions, networking=networking, sysctl=Sysctl().process(*got),
                        not_audited=list(networking.not_audited))
    if vms:
        _observe_vms(source, observed, list(dict.fromkeys(vms)))
    for entry in plan.plugin_captures:
        got, why = source.get(entry.path(), required=False, status_ok=entry.status_ok)
        observed.extra[entry.path()] = got
        if got is None:
            observed.extra_why[entry.path()] = why
    return observed


def _definition(source: _Source, name: str, parser: Any) -> NetworkDef:
    got = source.require(NET_XML.path(name))
    definition = parser.process(*got)
    if definition.name != name:
        text, where = got
        line = next((n for n, row in enumerate(text.split("\n"), 1) if "<name>" in row), 1)
        raise FactError(where, line, f"holds network {definition.name!r}, expected {name!r}")
    return definition


def _observe_vms(source: _Source, observed: Observed, vms: List[str]) -> None:
    from .facts import DomIfList, VirshList

    got, why = source.get(DOMAINS.path(), required=False)
    if got is None:
        observed.not_audited.append(f"VMs: {why}")
        return
    observed.domains = {entry.name: entry for entry in VirshList().process(*got)}
    for vm in vms:
        if vm not in observed.domains:
            continue
        got, why = source.get(DOMIFLIST.path(vm), required=False)
        if got is None:
            observed.not_audited.append(f"vm/{vm} networks: {why}")
        else:
            observed.interfaces[vm] = DomIfList().process(*got)


def layout_rows(table: Iterable[CaptureFile]) -> List[Tuple[str, str, str]]:
    """(file, command, about) rows of the capture layout, for docs/audit.md."""
    rows = []
    for entry in table:
        name = entry.name.replace("{name}", "<network>" if entry.each == "network" else "<vm>")
        argv = " ".join(w.replace("{name}", "<network>" if entry.each == "network" else "<vm>") for w in entry.argv)
        rows.append((name, argv, entry.about + ("" if entry.owner == "core" else f" ({entry.owner})")))
    return rows

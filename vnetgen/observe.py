"""The observed state of one host, read from a capture directory (SPEC section 5) or from live commands."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .facts import (BridgeInfo, BrctlShow, DomainEntry, DomIf, DomIfList, FactError, NetDumpXml, NetList,
                    NetListEntry, NetworkDef, Sysctl, VirshList, as_text, bridges_from_iproute)

# The capture layout of SPEC section 5 (plus the iproute2 pair capture.sh writes where brctl is absent).
NET_LIST = "virsh-net-list.txt"
BRCTL = "brctl-show.txt"
IP_LINK = "ip-link-bridge.json"
BRIDGE_LINK = "bridge-link.json"
SYSCTL = "sysctl.txt"
DOMAINS = "virsh-list.txt"
IP_FORWARD = "net.ipv4.ip_forward"

# Seconds one live command may take; virsh waits much longer than this for a hung libvirtd.
TIMEOUT = 30.0

# A shell's (and nsenter's) status for "command not found", for runners that go through one.
_NOT_FOUND = 127

# (returncode, stdout, stderr); raises OSError when the program cannot be run, TimeoutExpired on timeout.
Runner = Callable[[Sequence[str], float], Tuple[int, bytes, bytes]]


class AuditError(Exception):
    """Input the audit cannot use (exit 2): a missing capture, virsh absent, libvirtd unreachable, ..."""


def net_file(network: str) -> str:
    return f"net/{network}.xml"


def domiflist_file(vm: str) -> str:
    return f"domiflist/{vm}.txt"


@dataclass
class Observed:
    """What one host runs, as its tools report it; None/absent entries were not observed."""

    host: str
    origin: str                                   # the capture directory, or "live"
    networks: Dict[str, NetListEntry]             # virsh net-list --all, by name
    definitions: Dict[str, NetworkDef]            # net-dumpxml of the networks asked for that exist
    bridges: Dict[str, BridgeInfo]                # host bridges, by name
    bridge_tool: str                              # "brctl" or "ip": what listed them (and what fixes use)
    sysctl: Dict[str, str]
    domains: Optional[Dict[str, DomainEntry]] = None        # None: domains were not observed
    interfaces: Dict[str, Tuple[DomIf, ...]] = field(default_factory=dict)  # VMs whose NICs were observed
    not_audited: List[str] = field(default_factory=list)   # "WHAT: WHY", for the report


class _Captures:
    """Files of DIR/<host>/; a missing required one is an AuditError naming it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.origin = str(root)

    def bridge_tool(self) -> str:
        # brctl-show.txt unless only the iproute2 pair is there; when neither is, reading
        # brctl-show.txt names the missing file.
        if (self.root / BRCTL).exists() or not ((self.root / IP_LINK).exists() or (self.root / BRIDGE_LINK).exists()):
            return "brctl"
        return "ip"

    def read(self, name: str, required: bool) -> Tuple[Optional[Tuple[str, str]], str]:
        """((text, source), "") or (None, why it is absent)."""
        path = self.root / name
        if not path.exists():
            if required:
                raise AuditError(f"{path}: missing; capture.sh writes it (run it again on the host)")
            return None, f"{name} not captured"
        try:
            data = path.read_bytes()
        except OSError as error:
            raise AuditError(f"{path}: cannot read: {error.strerror or error}") from None
        return (as_text(data), str(path)), ""


def run_command(argv: Sequence[str], timeout: float) -> Tuple[int, bytes, bytes]:
    """Run argv without a shell; C locale, because virsh translates its table headers and states."""
    env = dict(os.environ, LC_ALL="C")
    done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
    return done.returncode, done.stdout, done.stderr


class _Live:
    """The same layout, produced by running each file's command on this machine."""

    def __init__(self, uri: Optional[str], runner: Runner, timeout: float) -> None:
        self.uri = uri
        self.runner = runner
        self.timeout = timeout
        self.origin = "live"

    def _virsh(self, *words: str) -> List[str]:
        # Without -c, virsh itself honours LIBVIRT_DEFAULT_URI.
        return ["virsh", *(("-c", self.uri) if self.uri else ()), *words]

    def command(self, name: str) -> List[str]:
        if name == NET_LIST:
            return self._virsh(*NetList().command()[1:])
        if name.startswith("net/"):
            # --network: a name that starts with "-" stays a name.
            return self._virsh("net-dumpxml", "--network", name[len("net/"):-len(".xml")])
        if name == DOMAINS:
            return self._virsh(*VirshList().command()[1:])
        if name.startswith("domiflist/"):
            return self._virsh("domiflist", "--domain", name[len("domiflist/"):-len(".txt")])
        return {BRCTL: ["brctl", "show"], IP_LINK: ["ip", "-j", "-d", "link", "show", "type", "bridge"],
                BRIDGE_LINK: ["bridge", "-j", "link"], SYSCTL: ["sysctl", IP_FORWARD]}[name]

    def bridge_tool(self) -> str:
        # As capture.sh does: brctl where installed, else iproute2.
        try:
            status = self.runner(["brctl", "--version"], self.timeout)[0]
        except (OSError, subprocess.TimeoutExpired):
            return "ip"
        return "ip" if status == _NOT_FOUND else "brctl"

    def read(self, name: str, required: bool) -> Tuple[Optional[Tuple[str, str]], str]:
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
            if name == SYSCTL:
                return self._proc_ip_forward()
            why = _missing_tool(argv[0])
            if required:
                raise AuditError(why)
            return None, why
        message = _first_error(err)
        if status != 0:
            if not required:
                return None, f"`{shown}` failed: {message or f'exit status {status}'}"
            raise AuditError(_command_failed(argv, status, message, self.uri))
        return (as_text(out), f"`{shown}`"), ""

    def _proc_ip_forward(self) -> Tuple[Optional[Tuple[str, str]], str]:
        # sysctl lives in /sbin, which a user's PATH may lack: the kernel's file says the same.
        path = "/proc/sys/net/ipv4/ip_forward"
        try:
            value = Path(path).read_text().strip()
        except OSError as error:
            raise AuditError(f"{path}: cannot read: {error.strerror or error}") from None
        return (f"{IP_FORWARD} = {value}\n", path), ""


_TOOLS = {"virsh": "libvirt's client (libvirt-clients; libvirt-client on RHEL)",
          "brctl": "bridge-utils", "ip": "iproute2", "bridge": "iproute2", "sysctl": "procps"}


def _missing_tool(program: str) -> str:
    package = _TOOLS.get(program, program)
    return (f"{program} not found on this machine: install {package}, or run the bundle's capture.sh on the "
            f"host and audit with --captures DIR")


def _first_error(err: bytes) -> str:
    lines = [line.strip() for line in as_text(err).splitlines() if line.strip()]
    # virsh says "error: failed to connect to the hypervisor" first and the cause on the next line.
    return "; ".join(lines[:3])[:400]


_PERMISSION = re.compile(r"permission denied|authentication (?:unavailable|failed)|access denied|"
                         r"not authorized|polkit", re.I)
_UNREACHABLE = re.compile(r"failed to connect|cannot recv data|no connection driver|"
                          r"connection refused|no such file or directory", re.I)


def _hint(virsh: bool, uri: Optional[str], message: str) -> str:
    if not virsh:
        return ""
    where = uri or os.environ.get("LIBVIRT_DEFAULT_URI") or "libvirt's default URI"
    if _PERMISSION.search(message):
        return (f"; permission denied by libvirtd ({where}): run as root or as a member of the libvirt "
                f"group")
    if _UNREACHABLE.search(message) or not message:
        return f"; libvirtd is not reachable ({where}): is it running? (systemctl status libvirtd)"
    return ""


def _command_failed(argv: Sequence[str], status: int, message: str, uri: Optional[str]) -> str:
    text = f"`{' '.join(argv)}` failed (exit status {status})"
    if message:
        text += f": {message}"
    return text + _hint(argv[0] == "virsh" and argv[1:2] != ["net-dumpxml"], uri, message)


def read_capture(directory: Union[str, Path], host: str, networks: Iterable[str] = (),
                 vms: Iterable[str] = ()) -> Observed:
    """Observed state of `host` from DIR/<host>/ as capture.sh writes it.

    `networks`: the networks whose definition (net/<net>.xml) is needed; `vms`: the VMs whose
    NICs are (domiflist/<vm>.txt, optional). Raises AuditError for a missing required file,
    FactError ("FILE:LINE: message") for one that cannot be read.
    """
    root = Path(directory) / host
    if not root.is_dir():
        raise AuditError(f"{root}: no capture of host {host} (run its capture.sh {directory} on the host)")
    return _observe(_Captures(root), host, networks, vms)


def read_live(host: str, networks: Iterable[str] = (), vms: Iterable[str] = (), uri: Optional[str] = None,
              runner: Runner = run_command, timeout: float = TIMEOUT) -> Observed:
    """Observed state of this machine, by running the commands capture.sh runs (each with a timeout).

    virsh honours LIBVIRT_DEFAULT_URI unless `uri` is given. Raises AuditError when virsh is
    missing, libvirtd is unreachable, permission is denied or a command fails or hangs.
    """
    return _observe(_Live(uri, runner, timeout), host, networks, vms)


def _observe(source, host: str, networks: Iterable[str], vms: Iterable[str]) -> Observed:
    got, _ = source.read(NET_LIST, required=True)
    listed = {entry.name: entry for entry in NetList().process(*got)}
    definitions = {}
    for name in dict.fromkeys(networks):
        if name in listed:
            definitions[name] = _definition(source, name)
    bridges, tool = _bridges(source)
    got, _ = source.read(SYSCTL, required=True)
    observed = Observed(host=host, origin=source.origin, networks=listed, definitions=definitions,
                        bridges=bridges, bridge_tool=tool, sysctl=Sysctl().process(*got))
    vms = list(dict.fromkeys(vms))
    if vms:
        _observe_vms(source, observed, vms)
    return observed


def _definition(source, name: str) -> NetworkDef:
    got, _ = source.read(net_file(name), required=True)
    definition = NetDumpXml().process(*got)
    if definition.name != name:
        text, where = got
        line = next((n for n, row in enumerate(text.split("\n"), 1) if "<name>" in row), 1)
        raise FactError(where, line, f"holds network {definition.name!r}, expected {name!r}")
    return definition


def _bridges(source) -> Tuple[Dict[str, BridgeInfo], str]:
    if source.bridge_tool() == "brctl":
        got, _ = source.read(BRCTL, required=True)
        found, tool = BrctlShow().process(*got), "brctl"
    else:
        (links, links_source), _ = source.read(IP_LINK, required=True)
        (ports, ports_source), _ = source.read(BRIDGE_LINK, required=True)
        found, tool = bridges_from_iproute(links, links_source, ports, ports_source), "ip"
    return {bridge.name: bridge for bridge in found}, tool


def _observe_vms(source, observed: Observed, vms: List[str]) -> None:
    got, why = source.read(DOMAINS, required=False)
    if got is None:
        observed.not_audited.append(f"VMs: {why}")
        return
    observed.domains = {entry.name: entry for entry in VirshList().process(*got)}
    for vm in vms:
        if vm not in observed.domains:
            continue
        got, why = source.read(domiflist_file(vm), required=False)
        if got is None:
            observed.not_audited.append(f"vm/{vm} networks: {why}")
        else:
            observed.interfaces[vm] = DomIfList().process(*got)

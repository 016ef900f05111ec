"""The vocabulary core and plugins share; a plugin imports nothing of vnetgen but this module.

Modes (`Mode`), host targets (`Target`), runbook `Step`s of guarded `Action`s, bundle `Artifact`s,
audit `Check`s of registered `CheckKind`s, the capture layout's `CaptureFile`s, the observed facts a
target returns, and the one quoting function (`cmd`, `q`) every shell word from a profile goes through.
"""
from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, AbstractSet, Any, Dict, List, Optional, Sequence, Tuple

import pluggy

from .dataclassc import dataclass
from .factbase import (FactError, as_text, bridge_ports_command, excerpt, ip_addrs_command, ip_links_command,
                       ip_routes_command, is_ifname, numbered_lines, quick_init)
from .netfields import span   # "START-END" ranges of a profile (NAT addresses and ports)
from .shell import Raw, cmd, here, q, under_root
from .xml import network_element   # the core's <network> of a plan, for a mode that adds to it

if TYPE_CHECKING:  # for annotations only: no import cost at run time
    from .facts import (BridgeInfo, BridgePort, BridgePorts, IpAddrs, IpLinkBridges, IpLinks, IpRoutes, LinkInfo,
                        RouteInfo, bridges_from_iproute, combine)
    from .model import Host, Vm
    from .plan import HostPlan

# The fact parsers and what they return, for a plugin that reads a capture: attributes of this module
# imported from vnetgen.facts on first use (PEP 562), so that a command which parses nothing (build)
# never imports the parsers. `from vnetgen.api import IpLinks` works as for any other name; a plugin's
# capture table uses the *_command functions (the argv each parser's command() returns).
_FACTS = ("BridgeInfo", "BridgePort", "BridgePorts", "IpAddrs", "IpLinkBridges", "IpLinks", "IpRoutes", "LinkInfo",
          "RouteInfo", "bridges_from_iproute", "combine")


def __getattr__(name: str) -> Any:
    if name in _FACTS:
        from . import facts

        value = getattr(facts, name)
        globals()[name] = value   # later lookups find it without this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted({*globals(), *_FACTS})


hookimpl = pluggy.HookimplMarker("vnetgen")

# Runbook phases, in the order SPEC section 3 fixes; a step's order key starts with one.
PREFLIGHT, SYSCTL, HOST_BRIDGES, BACKUP, NETWORKS, PORTS, VMS, VERIFY = 10, 20, 30, 40, 50, 60, 70, 80

__all__ = [
    "BACKUP", "HOST_BRIDGES", "NETWORKS", "PORTS", "PREFLIGHT", "SYSCTL", "VERIFY", "VMS",
    "Action", "Artifact", "BridgeInfo", "BridgePort", "BridgePorts", "CaptureFile", "CaptureReader", "bridge_ports_command",
    "Check", "CheckKind", "FactError", "HookCase", "HostNetworking", "ImportedNetwork", "IpAddrs", "IpLinkBridges", "IpLinks", "IpRoutes", "LinkInfo", "Mode",
    "Raw", "RouteInfo", "Step", "Sysctl", "Target", "as_text", "bridges_from_iproute", "cmd", "combine", "excerpt",
    "here", "hookimpl", "install_file", "ip_addrs_command", "ip_links_command", "ip_routes_command", "is_ifname", "network_element", "numbered_lines", "q", "restore_file",
    "show", "span", "under_root", "virt_install",
]


@dataclass(frozen=True)
class Mode:
    """A libvirt forward mode as the core needs to know it; plugins describe theirs with one."""

    name: str
    description: str
    forward: str = ""              # <forward mode=…>; "" means no <forward> (isolated)
    libvirt_bridge: bool = True    # libvirt creates the bridge (stp, delay, mac, ports apply)
    ip: str = "optional"           # "required" | "optional" | "forbidden"
    forwards_ipv4: bool = False    # routes guests' traffic off the host: needs ip_forward=1
    keys: Tuple[str, ...] = ()     # mode-specific network keys it takes (schema.MODE_KEYS), e.g. nat's "nat"
    importable: bool = True        # `vnetgen import` may give a definition with its <forward mode> this mode


@dataclass(frozen=True)
class ImportedNetwork:
    """What a mode plugin makes of a libvirt network definition for `vnetgen import`: its mode, the
    profile keys it reads (plain values: str, int, bool, lists of them), and the XML items they account
    for (prefixes of the importer's "not modelled" items, e.g. "<forward>", "<virtualport>", "dev")."""

    mode: str
    keys: Tuple[Tuple[str, Any], ...] = ()
    covers: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Sysctl:
    """A kernel setting a host needs, and why (REVIEW.md and the runbook say it)."""

    key: str
    value: str
    why: str


@dataclass(frozen=True)
class Action:
    """One guarded change: `check` is a literal shell test that is true when it is already done."""

    commands: Tuple[str, ...] = ()
    check: str = ""
    done: str = ""     # said instead of running, when the check holds
    record: str = ""   # a marker name for rollback.sh: "this run created it"
    kind: str = "change"   # "require": `check` must hold, or the run stops here; "warn": when it does
                           # not, the run says so (the check prints what and the fix) and goes on
    installs: Tuple[str, ...] = ()   # host paths this action installs or replaces (REVIEW.md lists them)
    removes: Tuple[str, ...] = ()    # host paths it removes


@dataclass(frozen=True)
class Step:
    """A numbered runbook step; `order` sorts steps, so plugin call order never matters."""

    order: Tuple
    title: str
    why: str
    actions: Tuple[Action, ...] = field(default_factory=tuple)
    undo: Tuple[Action, ...] = field(default_factory=tuple)   # for rollback.sh, run in reverse
    skip_flag: str = ""   # a runbook option variable (e.g. NO_VMS) that skips the whole step when 1
    restarts: Tuple[str, ...] = ()   # what this step may restart (a network, a connection), for REVIEW.md


@dataclass(frozen=True)
class HookCase:
    """Lines the bundle's libvirt network hook (hooks/network) runs for one network on one operation.

    `operation` is libvirt's ("started", "stopped", "reconnect", …) or the plugin's own, named
    "vnetgen-…": the runbook and rollback.sh call the bundle's hook with it; the hook then exits with
    the lines' status and never runs the host's chained hook. `lines` are literal bash (every profile
    word quoted with `cmd`); `functions` the generic bash they call (no profile value in it)."""

    operation: str
    network: str
    lines: Tuple[str, ...]
    functions: str = ""


@dataclass(frozen=True)
class Artifact:
    """A file of the bundle, relative to the host's directory."""

    path: str
    text: str
    mode: int = 0o644
    data: Optional[bytes] = None   # binary content (archives); `text` is then ""

    def content(self) -> bytes:
        return self.data if self.data is not None else self.text.encode("utf-8")

    @property
    def binary(self) -> bool:
        """Bytes rather than text (an archive): `content()` is what counts, `text` is ""."""
        return self.data is not None


# --- checks -----------------------------------------------------------------------------


@quick_init   # an audit of 1,000 hosts plans ~125,000 checks
@dataclass(frozen=True)
class Check:
    """One fact that must hold on the host. Its kind (a `CheckKind`, registered by name) knows how the
    audit evaluates it on observed facts; the check itself carries the bash the runbook's verify step
    runs (`test`), the fix the audit suggests, and what holds, in words."""

    kind: str                  # a drift kind (SPEC section 5), the name of its CheckKind
    object: str                # "network/default", "bridge/virbr0", "host", "vm/VM1"
    expected: Any              # JSON-able; None means "absent"
    test: str = ""             # literal bash test, true when in sync ("" = audit only)
    fix: str = ""              # literal command that removes the drift
    severity: str = "error"
    tokens: Tuple[str, ...] = ()   # net-dumpxml line expectations, for net_xml_match
    network: str = ""          # the network (for definition checks), or ""
    skip_flag: str = ""        # runbook option variable that turns this check off (NO_VMS)
    words: str = ""            # what holds when it passes, e.g. "network default is running"
    params: Tuple[Tuple[str, Any], ...] = ()   # kind-specific data (e.g. the sysctl key)

    @property
    def id(self) -> str:
        """The identity runbook verify and the audit both report: "KIND OBJECT"."""
        return f"{self.kind} {self.object}"

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def holds(self) -> str:
        return self.words or f"{self.object}: {self.kind} is {show(self.expected)}"

    def describe(self) -> str:
        """The drift line of the runbook's verify step: the check id and what should hold."""
        return f"{self.id}: expected {self.holds()}"


def show(value: Any) -> str:
    """A value in an administrator's words: yes/no, none, a comma list; never Python's True or []."""
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) if value else "none"
    return str(value)


# --- the capture layout ---------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureFile:
    """One file of the audit capture layout (SPEC section 5): written by capture.sh with exactly
    `argv`, run again by a live audit, read by the audit. `each`: "" (once), "network" (one per
    network libvirt lists, `{name}` in name and argv) or "vm" (one per domain)."""

    name: str
    argv: Tuple[str, ...]
    about: str
    required: bool = True
    each: str = ""
    since: int = 1             # the capture layout version that added it
    owner: str = "core"        # "core" or the target that records it
    status_ok: bool = False    # a non-zero exit still leaves a usable output (sysctl: a key the kernel lacks)

    def path(self, item: str = "") -> str:
        return self.name.replace("{name}", item)

    def command(self, item: str = "") -> List[str]:
        return [word.replace("{name}", item) for word in self.argv]


class CaptureReader:
    """What a target's observation reads through: `read(name)` gives (text, source) or None when the
    file was not captured (or the command could not run live: `why(name)` says why)."""

    def read(self, name: str) -> Optional[Tuple[str, str]]:  # pragma: no cover - interface
        raise NotImplementedError

    def why(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def require(self, name: str) -> Tuple[str, str]:  # pragma: no cover - interface
        """(text, source) of a file the audit cannot do without; raises the audit's error naming it."""
        raise NotImplementedError


@dataclass
class HostNetworking:
    """The host's own networking, as a target's observation reads it from its capture files.

    None means "not observed" (the file was not captured): the audit then says what it could not
    audit, never that it is in sync or drifted."""

    bridges: Dict[str, BridgeInfo] = field(default_factory=dict)
    tool: str = ""                                     # what listed the bridges, for "not audited" lines
    links: Optional[Dict[str, LinkInfo]] = None        # every link, with its addresses when captured
    routes: Optional[Tuple[RouteInfo, ...]] = None     # the main table's routes
    not_audited: List[str] = field(default_factory=list)
    # why "addresses", "routes" or "resolvers" were not observed, for the checks that need them to say
    missing: Dict[str, str] = field(default_factory=dict)
    # interface → the resolvers (DNS servers) its persistent configuration gives the host, as the
    # target's own files or tool hold them; None: not captured
    resolvers: Optional[Dict[str, Tuple[str, ...]]] = None


class CheckKind:
    """A drift kind: what it compares (docs), the capture files that feed it, and how the audit
    evaluates one of its checks on observed facts: `evaluate(check, ev)` calls `ev.drift(check,
    actual)` for drift and `ev.skip(what, why)` when the facts it needs were not observed; `ev.obs`
    is the host's Observed state (`ev.obs.extra[FILE]`: a plugin's own capture files)."""

    name = ""
    summary = ""
    captures: Tuple[str, ...] = ()
    severity = "error"

    def evaluate(self, check: Check, ev: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# --- targets -------------------------------------------------------------------------------


class Target:
    """A host OS family: how host bridges are made live and persisted, how the host is observed.

    A plugin subclasses it and returns an instance from `vnetgen_targets()`. Every host-OS detail
    lives here: the files that persist bridges and ports, the commands that change them live, the
    capture files and parsers that observe them, and the bash helpers the runbook's checks call.
    The core names no target and no host tool.
    """

    name: str = ""
    description: str = ""
    tools: Tuple[str, ...] = ()     # commands its runbooks need on the host
    default: bool = False           # the target of a host that names none (profile v1: el7)
    versions: str = ""              # the OS releases it is for (docs, `vnetgen plugins`)
    persists: str = ""              # what it writes (docs)
    sysctl_path: str = "/etc/sysctl.d/90-vnetgen.conf"
    # Whether a host bridge's forward delay is set (and so checked) with STP off. Without STP the
    # kernel forwards at once whatever the delay; NetworkManager applies it only with STP on.
    delay_without_stp: bool = True
    # Daemons a lab host of this target runs besides libvirtd (`vnetgen rehearse`, the lab tests).
    lab_services: Tuple[str, ...] = ()
    # The /etc/os-release releases it is for, as (ID, major VERSION_ID or "" for any): `vnetgen import`
    # takes the target claiming the host's ID, else the first word of its ID_LIKE one claims; a lab
    # host of this target says the first pair in its /etc/os-release.
    os_release: Tuple[Tuple[str, str], ...] = ()

    # --- live changes: each returns one command line, words quoted with `cmd` ---------------
    def add_bridge(self, bridge: str) -> str:
        raise NotImplementedError

    def delete_bridge(self, bridge: str) -> Tuple[str, ...]:
        raise NotImplementedError

    def set_stp(self, bridge: str, on: bool) -> str:
        raise NotImplementedError

    def set_delay(self, bridge: str, seconds: int) -> str:
        raise NotImplementedError

    def add_port(self, bridge: str, port: str) -> str:
        raise NotImplementedError

    def remove_port(self, bridge: str, port: str) -> str:
        raise NotImplementedError

    def link_up(self, dev: str) -> str:
        raise NotImplementedError

    def add_address(self, dev: str, cidr: str) -> str:
        raise NotImplementedError

    def delete_address(self, dev: str, cidr: str) -> str:
        raise NotImplementedError

    def replace_default_route(self, gateway: str, dev: str) -> str:
        raise NotImplementedError

    def bridge_fix(self, bridge: str) -> Optional[str]:
        """One command that brings a managed host bridge back as persisted (whatever drifted), or
        None: each check then suggests its own live change."""
        return None

    def shell_helpers(self) -> str:
        """Bash functions the runbook's checks and preflight call, defined by every target:
        link_is_up DEV, has_address DEV CIDR, has_default_route GATEWAY DEV, default_routes (prints
        "GATEWAY DEV" lines), routes_overlapping PREFIX (prints "PREFIX DEV" lines), dev_addresses DEV
        (its global IPv4 CIDRs), port_resolvers DEV (resolvers DEV's own configuration gives the host),
        and for bridges made live: remember_routes BRIDGE, routes_remembered BRIDGE, restore_routes BRIDGE."""
        raise NotImplementedError

    def preflight(self, plan: "HostPlan") -> List[Action]:
        """`require` actions the preflight step adds (e.g. "NetworkManager is running")."""
        return []

    # --- observation ------------------------------------------------------------------------
    def capture_files(self) -> Sequence[CaptureFile]:
        """The host-networking files of the capture layout this target records."""
        return ()

    def observe(self, reader: CaptureReader) -> HostNetworking:
        """The host's bridges, links, addresses and routes from the capture files."""
        raise NotImplementedError

    def claims_os(self, os_id: str, version_id: str) -> bool:
        """Whether a host whose /etc/os-release says ID (or ID_LIKE) `os_id` and VERSION_ID
        `version_id` runs this target (default: by `os_release`)."""
        major = version_id.split(".")[0]
        return any(os_id == claimed and (not version or version == major) for claimed, version in self.os_release)

    def recognizes(self, files: AbstractSet[str]) -> bool:
        """`vnetgen import`: whether a host whose capture holds `files` (the capture-layout names
        present, e.g. "brctl-show.txt") is evidently of this target. Default: no evidence (False);
        when no target or several say True, import takes the default target and says it guessed."""
        return False

    # --- the bundle ---------------------------------------------------------------------------
    def host_files(self, plan: "HostPlan") -> List[Artifact]:
        """Files that persist the host's bridges, ports and addresses (ifcfg, keyfiles, netplan)."""
        return []

    def host_steps(self, plan: "HostPlan") -> List[Step]:
        """Runbook steps that make and persist the host bridges (phase HOST_BRIDGES)."""
        return []

    def validate(self, host: "Host", report: Any) -> None:
        """Report what this target cannot express for `host` (report.error(mark, message))."""

    def vm_install(self, vm: "Vm") -> Optional[List[str]]:
        """The argv that installs `vm` on a host of this target, or None to install nothing."""
        return None


# --- helpers for steps ---------------------------------------------------------------------


def virt_install(vm: "Vm", memory: str = "--memory", vcpus: str = "--vcpus", os: Sequence[str] = ()) -> List[str]:
    """The virt-install argv of `vm`; targets differ only in the spelling of the memory and vCPU
    flags (`--ram`/`--vcpu` in virt-install 1.x) and in how the OS is given (`os`, after --graphics)."""
    argv: List[str] = ["virt-install", "--name", vm.name, memory, str(vm.memory), vcpus, str(vm.vcpus)]
    for nic in vm.networks:
        argv += ["--network", f"network={nic.network}" + (f",mac={nic.mac.lower()}" if nic.mac else "")]
    argv += ["--graphics", vm.graphics or "none", *os]
    if vm.disk_path:
        argv += ["--disk", f"path={vm.disk_path}" + (f",size={vm.disk_size}" if vm.disk_size else "")]
    if vm.import_:
        argv.append("--import")
    if vm.location:
        argv += ["--location", vm.location]
    if vm.extra_args:
        argv += ["--extra-args", vm.extra_args]
    # Without it virt-install attaches to the console and the runbook would wait for the guest.
    argv.append("--noautoconsole")
    return argv


def install_file(bundle_path: str, dest: str, mode: str = "0644") -> Action:
    """Install a bundle file under --root, backing up what it replaces; skipped when identical."""
    return Action(commands=(cmd("install_file", here(bundle_path), under_root(dest), mode),),
                  check=cmd("same_file", here(bundle_path), under_root(dest)),
                  done=f"{dest} is up to date", installs=(dest,))


def restore_file(dest: str) -> Action:
    """rollback.sh: put back what install_file replaced, or remove what it added."""
    return Action(commands=(cmd("restore_file", under_root(dest)),), check="! " + cmd("has_backup", under_root(dest)),
                  done=f"{dest}: nothing to restore")

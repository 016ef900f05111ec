"""Observed host state vs the host's plan → drift items (SPEC section 5), and the audit reports."""
from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .checks import AUTOMATIC_PORT_PREFIXES, Check, lease_key, lease_line
from .observe import AuditError, Observed, Runner, read_capture, read_live, run_command
from .shell import cmd

__all__ = ["AuditError", "Drift", "HostAudit", "audit_captures", "audit_host", "audit_live", "evaluate_host",
           "format_text", "make_report"]

# Kinds whose check compares the network's XML definition; their fix redefines the network.
_DEFINITION_KINDS = frozenset({"forward-mode", "bridge-name", "stp", "delay", "mac", "uuid", "ip-address"})


@dataclass(frozen=True)
class Drift:
    """One difference between the profile and the host (SPEC section 5)."""

    kind: str
    object: str
    expected: Any
    actual: Any
    severity: str
    fix: str

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "object": self.object, "expected": self.expected, "actual": self.actual,
                "severity": self.severity, "fix": self.fix}


@dataclass
class HostAudit:
    host: str
    drift: List[Drift] = field(default_factory=list)
    not_audited: List[str] = field(default_factory=list)

    def in_sync(self, strict: bool = False) -> bool:
        """No errors; with `strict`, no warnings either."""
        return not any(d.severity == "error" or strict for d in self.drift)


def audit_host(plan: Any, observed: Observed) -> List[Drift]:
    """Every drift of one host: its plan's checks evaluated on `observed`, plus the networks it does not know.

    The definition of "in sync" is the list of Check objects of vnetgen.checks, the same
    that the runbook's verify step renders as bash; here each is evaluated on parsed facts,
    by meaning rather than text (LIBVIRT-NOTES, "What net-dumpxml adds or rewrites"):

    - uuid and mac are compared only when the profile pins them (only then is there a check);
      the bridge name only when the profile pins `bridge:`. A name libvirt picked itself
      (virbrN) is not drift. Ports are looked for on the bridge libvirt actually made.
    - stp and delay that net-dumpxml leaves out mean libvirt's defaults (on, 0) for the
      bridges libvirt creates; `<nat><port/>`, `connections`, quoting, mac case, element and
      attribute order, netmask vs prefix and IPv6 spelling never matter (the parsers absorb them).
    - The profile speaks IPv4: ip-address, dhcp-range and dhcp-host compare the IPv4 `<ip>`
      elements; an IPv6 `<ip>` is drift only on a network the profile leaves unnumbered.
    - port-extra ignores ports a running host adds by itself (guests' taps, libvirt's
      `<bridge>-nic` dummy: AUTOMATIC_PORT_PREFIXES).
    - Checks that follow from a failed one are not evaluated: nothing more about a network
      that is missing, about the ports of a network that is not running, about a bridge that
      is missing, or about the NICs of a VM that is missing.
    - What the profile does not mention is a warning (it counts only with --strict): a network
      (network-extra) and a guest NIC it does not list (vm-network with expected None). Host
      bridges and domains it does not mention are not reported (no drift kind says "extra" there).
    - An aspect whose capture is absent (virsh-list.txt, domiflist/<vm>.txt, a delay brctl
      does not print) is listed under "not_audited", never reported in sync or drifted.

    Fixes are literal, quoted commands, meant to be run in the order listed, in the host's bundle
    directory (they name its networks/*.xml). DHCP ranges and leases are changed with `virsh
    net-update` (live, no restart); other definition changes redefine the network and restart it if
    it runs; the start of a network that should run is listed after its definition fixes.
    """
    return evaluate_host(plan, observed).drift


def evaluate_host(plan: Any, observed: Observed) -> HostAudit:
    """audit_host, and the aspects that could not be audited (with the reason)."""
    return _Evaluator(plan, observed).run()


class _Evaluator:
    def __init__(self, plan: Any, observed: Observed) -> None:
        self.plan = plan
        self.obs = observed
        self.result = HostAudit(plan.name, not_audited=list(observed.not_audited))
        self.skipped = {line.split(": ", 1)[0] for line in observed.not_audited}
        self.moot_networks: set = set()
        # "net-start NAME", held back until the network's definition fixes (config only) are listed,
        # so that fixes run in the order shown start the network with its corrected definition.
        self.pending: Optional[Drift] = None
        self.moot_objects: set = set()

    # --- driver -----------------------------------------------------------------

    def run(self) -> HostAudit:
        vm_checks: Dict[str, List[Check]] = {}
        for check in self.plan.checks:
            if check.kind == "vm-network":
                vm_checks.setdefault(check.object, []).append(check)
        for check in self.plan.checks:
            if self.pending and check.object != self.pending.object:
                self._flush()
            if check.network in self.moot_networks or check.object in self.moot_objects:
                continue
            if check.kind == "vm-network":
                if check is vm_checks[check.object][0]:
                    self._vm_networks(check.object, vm_checks[check.object])
                continue
            handler = getattr(self, "_" + check.kind.replace("-", "_"))
            handler(check)
        self._flush()
        self._unknown_networks()
        return self.result

    def _flush(self) -> None:
        if self.pending:
            self.result.drift.append(self.pending)
            self.pending = None

    def drift(self, check: Check, actual: Any, expected: Any = None, fix: Optional[str] = None,
              severity: Optional[str] = None, obj: Optional[str] = None) -> None:
        self.result.drift.append(Drift(check.kind, obj or check.object,
                                       check.expected if expected is None else expected, actual,
                                       severity or check.severity, check.fix if fix is None else fix))

    def skip(self, what: str, why: str) -> None:
        """Say once that `what` was not audited, and why."""
        if what not in self.skipped:
            self.skipped.add(what)
            self.result.not_audited.append(f"{what}: {why}")

    # --- networks -----------------------------------------------------------------

    def _network_missing(self, check: Check) -> None:
        if check.network not in self.obs.networks:
            self.drift(check, False)
            self.moot_networks.add(check.network)

    def _network_extra(self, check: Check) -> None:
        entry = self.obs.networks.get(check.network)
        if entry is not None:
            self.drift(check, _state(entry), fix=_removal(entry))

    def _network_inactive(self, check: Check) -> None:
        actual = _state(self.obs.networks[check.network])
        if actual != check.expected:
            self.drift(check, actual)
            if check.expected == "active":
                self.pending = self.result.drift.pop()

    def _network_autostart(self, check: Check) -> None:
        entry = self.obs.networks[check.network]
        if entry.autostart != check.expected:
            fix = check.fix
            if not entry.persistent:  # a transient network has no autostart until it is defined
                fix = cmd("virsh", "net-define", f"networks/{check.network}.xml") + " && " + fix
            self.drift(check, entry.autostart, fix=fix)

    def _definition_check(self, check: Check, actual: Any, equal: bool) -> None:
        if not equal:
            self.drift(check, actual, fix=self._redefine(check))

    def _forward_mode(self, check: Check) -> None:
        actual = self._def(check).forward_mode
        self._definition_check(check, actual, actual == check.expected)

    def _bridge_name(self, check: Check) -> None:
        if self.plan.networks[check.network].net.bridge is None:
            return  # unpinned: whatever virbrN libvirt picked is fine
        actual = self._def(check).bridge
        self._definition_check(check, actual, actual == check.expected)

    def _stp(self, check: Check) -> None:
        if check.network:
            stp = self._def(check).stp
            actual = True if stp is None else stp  # libvirt's default for the bridges it creates
        else:
            bridge = self.obs.bridges[_name(check.object)]
            if bridge.stp is None:
                self.skip(f"{check.object} stp", f"{self.obs.bridge_tool} could not read it")
                return
            actual = bridge.stp
        if actual != check.expected:
            self.drift(check, actual, fix=self._redefine(check) if check.network else self._setting_fix(check))

    def _delay(self, check: Check) -> None:
        if check.network:
            delay = self._def(check).delay
            actual: Any = 0 if delay is None else delay
        else:
            seconds = self.obs.bridges[_name(check.object)].delay
            if seconds is None:
                why = "brctl show does not print it" if self.obs.bridge_tool == "brctl" else "not captured"
                self.skip(f"{check.object} delay", why)
                return
            actual = int(seconds) if float(seconds).is_integer() else seconds
            if abs(seconds - check.expected) < 0.005:  # centiseconds, as the kernel keeps it
                return
        if actual != check.expected:
            self.drift(check, actual, fix=self._redefine(check) if check.network else self._setting_fix(check))

    def _mac(self, check: Check) -> None:
        actual = self._def(check).mac
        self._definition_check(check, actual, (actual or "").lower() == str(check.expected).lower())

    def _uuid(self, check: Check) -> None:
        actual = self._def(check).uuid
        self._definition_check(check, actual, (actual or "").lower() == str(check.expected).lower())

    def _ip_address(self, check: Check) -> None:
        ips = self._def(check).ips
        if check.expected is None:
            found = [str(ip.address.with_prefixlen) for ip in ips]
            self._definition_check(check, _one(found), not found)
            return
        found = [str(ip.address.with_prefixlen) for ip in ips if ip.family == "ipv4"]
        self._definition_check(check, _one(found), found == [check.expected])

    def _dhcp_range(self, check: Check) -> None:
        ranges = [f"{start}-{end}" for ip in self._ipv4(check) for start, end in ip.dhcp_ranges]
        wanted = [] if check.expected is None else [check.expected]
        if sorted(ranges) == wanted:
            return
        net = check.network
        words = [("delete", _range_xml(r)) for r in ranges if r not in wanted]
        words += [("add", _range_xml(r)) for r in wanted if r not in ranges]
        self.drift(check, _one(ranges), fix=self._net_update(net, "ip-dhcp-range", words))

    def _dhcp_host(self, check: Check) -> None:
        hosts = {lease_key(h): h for ip in self._ipv4(check) for h in ip.dhcp_hosts}
        actual = sorted(hosts)
        if actual == check.expected:
            return
        wanted = {lease_key(lease): lease for lease in self._profile_leases(check.network)}
        words = [("delete", lease_line(hosts[k])) for k in actual if k not in wanted]
        words += [("add", lease_line(wanted[k])) for k in sorted(wanted) if k not in hosts]
        self.drift(check, actual, fix=self._net_update(check.network, "ip-dhcp-host", words))

    def _def(self, check: Check) -> Any:
        return self.obs.definitions[check.network]

    def _ipv4(self, check: Check) -> List[Any]:
        return [ip for ip in self._def(check).ips if ip.family == "ipv4"]

    def _profile_leases(self, network: str) -> List[Any]:
        dhcp = self.plan.networks[network].net.dhcp
        return list(dhcp.hosts) if dhcp else []

    def _stays_active(self, network: str) -> bool:
        """Running, and meant to: its fixes change the live network too. A network that is to be
        started gets them in its configuration (net-start, listed after them, applies them); one
        that is to be stopped is stopped by the fix listed before them."""
        return self.obs.networks[network].active and self.plan.networks[network].net.state == "active"

    def _redefine(self, check: Check) -> str:
        """The network's definition from the bundle, and a restart if it runs (the live XML changes only then)."""
        name, entry = check.network, self.obs.networks[check.network]
        net = self.plan.networks[name].net
        define = cmd("virsh", "net-define", f"networks/{name}.xml")
        steps = []
        if check.kind == "uuid":
            # libvirt refuses to redefine a network under another UUID: remove it first.
            steps += [cmd("virsh", "net-destroy", name)] if self._stays_active(name) else []
            steps += [cmd("virsh", "net-undefine", name)] if entry.persistent else []
            steps += [define]
            steps += [cmd("virsh", "net-start", name)] if self._stays_active(name) else []
            steps += [cmd("virsh", "net-autostart", name)] if net.autostart else []
        else:
            steps += [define]
            if self._stays_active(name):
                steps += [cmd("virsh", "net-destroy", name), cmd("virsh", "net-start", name)]
        return " && ".join(steps)

    def _net_update(self, network: str, section: str, changes: Sequence[Tuple[str, str]]) -> str:
        """`virsh net-update`: DHCP changes apply to a running network without a restart."""
        if not self._stays_active(network):
            flags: Tuple[str, ...] = ("--config",)
        else:
            # A transient network has no configuration to update.
            flags = ("--live", "--config") if self.obs.networks[network].persistent else ("--live",)
        return " && ".join(cmd("virsh", "net-update", network, verb, section, xml, *flags) for verb, xml in changes)

    # --- bridges and ports ----------------------------------------------------------

    def _bridge_missing(self, check: Check) -> None:
        if check.expected not in self.obs.bridges:
            self.drift(check, None, fix=self._port_fix(check, "addbr", check.expected))
            self.moot_objects.add(check.object)

    def _port_bridge(self, check: Check) -> Optional[str]:
        """The bridge a port check is about: the one libvirt made for the network, or the host bridge."""
        if not check.network:
            return _name(check.object)
        entry = self.obs.networks[check.network]
        if not entry.active:
            return None  # its bridge exists only while it runs; starting it is the fix reported
        # Where libvirt put the ports, even under a name the profile did not ask for (bridge-name says so).
        return self.obs.definitions[check.network].bridge or self.plan.networks[check.network].bridge

    def _ports_of(self, check: Check, bridge: str) -> Optional[Tuple[str, ...]]:
        info = self.obs.bridges.get(bridge)
        if info is None:
            return ()  # a running network without its bridge: none of its ports is there
        if not info.ports_known:
            self.skip(f"bridge/{bridge} ports", f"{self.obs.bridge_tool} could not list them")
            return None
        return info.ports

    def _port_missing(self, check: Check) -> None:
        bridge = self._port_bridge(check)
        ports = None if bridge is None else self._ports_of(check, bridge)
        if ports is not None and check.expected not in ports:
            self.drift(check, None, obj=f"bridge/{bridge}", fix=self._port_fix(check, "addif", bridge, check.expected))

    def _port_extra(self, check: Check) -> None:
        bridge = self._port_bridge(check)
        ports = None if bridge is None else self._ports_of(check, bridge)
        if ports is None:
            return
        physical = sorted(p for p in ports if not _automatic(p, bridge))
        extra = [p for p in physical if p not in check.expected]
        if extra:
            fix = " && ".join(self._port_fix(check, "delif", bridge, p) for p in extra)
            self.drift(check, physical, obj=f"bridge/{bridge}", fix=fix)

    def _port_fix(self, check: Check, verb: str, bridge: str, port: str = "") -> str:
        if self.obs.bridge_tool == "brctl":
            if verb == "addbr" or (verb == "addif" and bridge == _name(check.object)):
                return check.fix
            return cmd("brctl", verb, bridge, port)
        # A host without brctl (RHEL 8 and later): the same change with iproute2.
        if verb == "addbr":
            return cmd("ip", "link", "add", bridge, "type", "bridge")
        if verb == "addif":
            return cmd("ip", "link", "set", "dev", port, "master", bridge)
        return cmd("ip", "link", "set", "dev", port, "nomaster")

    def _setting_fix(self, check: Check) -> str:
        """A host bridge's stp or delay: the check's brctl command, or iproute2's where brctl is absent."""
        if self.obs.bridge_tool == "brctl":
            return check.fix
        bridge = _name(check.object)
        if check.kind == "stp":
            return cmd("ip", "link", "set", "dev", bridge, "type", "bridge", "stp_state", int(bool(check.expected)))
        return cmd("ip", "link", "set", "dev", bridge, "type", "bridge", "forward_delay", int(check.expected * 100))

    # --- host settings ---------------------------------------------------------------

    def _ip_forward(self, check: Check) -> None:
        value = self.obs.sysctl.get("net.ipv4.ip_forward")
        if value is None:
            self.skip("host ip-forward", "net.ipv4.ip_forward is not in the sysctl capture")
            return
        actual: Any = int(value) if value.isdigit() else value
        if actual != check.expected:
            self.drift(check, actual)

    # --- guests ------------------------------------------------------------------

    def _vm_missing(self, check: Check) -> None:
        if self.obs.domains is None:
            return  # not observed: observe already says so
        if check.expected not in self.obs.domains:
            self.drift(check, None)
            self.moot_objects.add(check.object)

    def _vm_networks(self, obj: str, checks: List[Check]) -> None:
        """A VM's NICs against its profile NICs, matched one to one (pinned MACs first)."""
        vm = _name(obj)
        interfaces = self.obs.interfaces.get(vm)
        if interfaces is None:
            if self.obs.domains is not None and vm in self.obs.domains:
                self.skip(f"{obj} networks", "not captured")
            return
        # Candidates by (network, mac) and by network, each list in the VM's NIC order.
        by_mac: Dict[Tuple[Optional[str], str], Deque[int]] = {}
        by_network: Dict[Optional[str], Deque[int]] = {}
        for position, interface in enumerate(interfaces):
            if interface.type == "network":
                by_mac.setdefault((interface.source, interface.mac), deque()).append(position)
                by_network.setdefault(interface.source, deque()).append(position)
        used = set()

        def claim(candidates: Deque[int]) -> bool:
            while candidates:
                position = candidates.popleft()
                if position not in used:
                    used.add(position)
                    return True
            return False

        nics = self.plan.host.vms[vm].networks
        missing = []
        pinned_first = sorted(range(len(nics)), key=lambda i: nics[i].mac is None)
        for index in pinned_first:
            nic = nics[index]
            mac = nic.mac.lower() if nic.mac else None
            pool = by_mac.get((nic.network, mac), deque()) if mac else by_network.get(nic.network, deque())
            if not claim(pool):
                missing.append((index, mac))
        shown = [_interface(i) for i in interfaces]
        for index, mac in sorted(missing):
            check = checks[index]
            self.drift(check, shown, expected=f"{check.expected} {mac}" if mac else None)
        for position, interface in enumerate(interfaces):
            if position not in used:
                self.result.drift.append(Drift("vm-network", obj, None, _interface(interface), "warning",
                                               cmd("virsh", "detach-interface", vm, interface.type, "--mac",
                                                   interface.mac, "--config")))

    # --- what the profile does not mention ---------------------------------------------

    def _unknown_networks(self) -> None:
        for name, entry in sorted(self.obs.networks.items()):
            if name not in self.plan.networks:
                self.result.drift.append(Drift("network-extra", f"network/{name}", None, _state(entry), "warning",
                                               _removal(entry)))


def _name(obj: str) -> str:
    return obj.split("/", 1)[1]


def _state(entry: Any) -> str:
    return "active" if entry.active else "inactive"


def _removal(entry: Any) -> str:
    """Stop and undefine a network: net-destroy only if it runs, net-undefine only if it is persistent."""
    steps = [cmd("virsh", "net-destroy", entry.name)] if entry.active else []
    steps += [cmd("virsh", "net-undefine", entry.name)] if entry.persistent else []
    return "; ".join(steps)


def _one(values: List[str]) -> Any:
    """A list of observed values as the report shows it: None, the one value, or the list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else sorted(values)


def _range_xml(text: str) -> str:
    start, end = text.split("-", 1)
    return f"<range start='{start}' end='{end}'/>"


def _automatic(port: str, bridge: str) -> bool:
    return port.startswith(AUTOMATIC_PORT_PREFIXES) or port == f"{bridge}-nic"


def _interface(interface: Any) -> str:
    where = interface.source or "-"
    if interface.type != "network":
        where = f"{interface.type}:{where}"
    return f"{where} {interface.mac}"


# --- whole audits --------------------------------------------------------------------


def _profile_and_pm(profile: Any, pm: Any) -> Tuple[Any, Any]:
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    if isinstance(profile, (str, Path)):
        from .profile import load_valid

        profile, _ = load_valid(str(profile), pm)  # raises InvalidProfile
    return profile, pm


def _plans(profile: Any, pm: Any, hosts: Sequence[str]) -> List[Any]:
    from .plan import plan_profile

    return plan_profile(profile, pm, list(hosts))


def _wanted(plan: Any) -> Tuple[List[str], List[str]]:
    networks = [n.name for n in plan.networks.values() if n.net.state != "absent"]
    return networks, list(plan.host.vms)


def _check_hosts(profile: Any, hosts: Iterable[str]) -> List[str]:
    hosts = list(dict.fromkeys(hosts))
    unknown = [h for h in hosts if h not in profile.hosts]
    if unknown:
        raise AuditError(f"no host {', '.join(unknown)} in the profile (hosts: {', '.join(profile.hosts)})")
    return hosts


def audit_captures(profile: Any, captures_dir: Union[str, Path], hosts: Optional[Sequence[str]] = None,
                   strict: bool = False, pm: Any = None) -> Dict[str, Any]:
    """The report (SPEC section 5) of the hosts captured in `captures_dir` (DIR/<host>/, by capture.sh).

    `profile`: a path or a loaded Profile. `hosts`: the hosts to audit; default every host of the
    profile, each of which must then have its directory. Raises InvalidProfile, AuditError
    (a missing directory or file) or FactError (a file that cannot be read: "FILE:LINE: message").
    """
    profile, pm = _profile_and_pm(profile, pm)
    root = Path(captures_dir)
    if not root.is_dir():
        raise AuditError(f"{root}: no such capture directory")
    names = _check_hosts(profile, hosts or profile.hosts)
    absent = [h for h in names if not (root / h).is_dir()]
    if absent:
        captured = sorted(h for h in profile.hosts if (root / h).is_dir())
        hint = f"; audit the others with --host ({', '.join(captured)})" if captured and not hosts else ""
        raise AuditError(f"{root}: no capture of {', '.join(absent)} (run capture.sh {root} on it){hint}")
    audits = []
    for plan in _plans(profile, pm, names):
        networks, vms = _wanted(plan)
        audits.append(evaluate_host(plan, read_capture(root, plan.name, networks, vms)))
    return make_report(audits, strict)


def local_host(profile: Any, hostname: Optional[str] = None) -> str:
    """The profile's host that this machine is: by `hostname` (full or short), else the only host."""
    full = hostname or socket.gethostname()
    for candidate in (full, full.split(".")[0]):
        for name in profile.hosts:
            if name == candidate or name.split(".")[0] == candidate:
                return name
    if len(profile.hosts) == 1:
        return next(iter(profile.hosts))
    raise AuditError(f"this machine ({full}) is none of the profile's hosts ({', '.join(profile.hosts)}): "
                     f"name one with --host")


def audit_live(profile: Any, host: Optional[str] = None, strict: bool = False, uri: Optional[str] = None,
               pm: Any = None, runner: Runner = run_command, timeout: Optional[float] = None) -> Dict[str, Any]:
    """The report of this machine as `host` (default: local_host), from its own virsh, brctl/ip and sysctl.

    virsh honours LIBVIRT_DEFAULT_URI unless `uri` is given; `runner` runs one argv (a lab
    passes one that enters its namespace). Raises InvalidProfile, AuditError or FactError.
    """
    profile, pm = _profile_and_pm(profile, pm)
    name = _check_hosts(profile, [host])[0] if host else local_host(profile)
    plan = _plans(profile, pm, [name])[0]
    networks, vms = _wanted(plan)
    kwargs = {} if timeout is None else {"timeout": timeout}
    observed = read_live(name, networks, vms, uri=uri, runner=runner, **kwargs)
    return make_report([evaluate_host(plan, observed)], strict)


def make_report(audits: Sequence[HostAudit], strict: bool = False) -> Dict[str, Any]:
    """The JSON report: in_sync means no errors (and, with `strict`, no warnings), as the exit code."""
    hosts = {a.host: {"in_sync": a.in_sync(strict), "drift": [d.to_dict() for d in a.drift],
                      "not_audited": list(a.not_audited)} for a in audits}
    return {"in_sync": all(h["in_sync"] for h in hosts.values()), "hosts": hosts}


# --- text ----------------------------------------------------------------------------

_COLOURS = {"error": "31", "warning": "33", "ok": "32", "dim": "2"}
_HEADER = ("SEVERITY", "KIND", "OBJECT", "EXPECTED", "ACTUAL")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


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
        lines.append(f"{host}: {status}")
        if drift:
            rows = [_HEADER] + [(d["severity"], d["kind"], d["object"], _cell(d["expected"]), _cell(d["actual"]))
                                for d in drift]
            widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
            for number, row in enumerate(rows):
                cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
                if number:
                    cells[0] = paint(cells[0], row[0])
                lines.append("  " + "  ".join(cells).rstrip())
                if number:
                    lines.append("  " + " " * widths[0] + "  fix: " + drift[number - 1]["fix"])
        for item in result.get("not_audited", []):
            lines.append("  " + paint(f"not audited: {item}", "dim"))
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

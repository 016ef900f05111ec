"""`vnetgen audit`: plan the hosts, observe them (captures or live), evaluate the plan's checks."""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .checks import Drift, Evaluation, HostAudit, kinds
from .gcpause import paused_gc
from .observe import AuditError, Observed, Runner, read_capture, read_live, run_command
from .report import format_text, make_report

__all__ = ["AuditError", "Drift", "HostAudit", "audit_captures", "audit_host", "audit_live", "audit_profile_captures",
           "evaluate_host", "format_text", "local_host", "make_report"]


def audit_host(plan: Any, observed: Observed, pm: Any = None) -> List[Drift]:
    """Every drift of one host: its plan's checks evaluated on `observed`, plus the networks it does not know.

    "In sync" is the plan's list of checks (vnetgen.checks), the same the runbook's verify step
    runs as bash; here each check's kind evaluates it on parsed facts, by meaning rather than text
    (LIBVIRT-NOTES, "What net-dumpxml adds or rewrites"):

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
      does not print, addresses and routes of a layout-1 capture) is listed under "not_audited",
      never reported in sync or drifted.

    Fixes are literal, quoted commands, meant to be run in the order listed, in the host's bundle
    directory (they name its networks/*.xml); host bridge fixes use the host target's tools.
    """
    return evaluate_host(plan, observed, pm).drift


def evaluate_host(plan: Any, observed: Observed, pm: Any = None) -> HostAudit:
    """audit_host, and the aspects that could not be audited (with the reason)."""
    return Evaluation(plan, observed, kinds(pm)).run()


def _profile_and_pm(profile: Any, pm: Any) -> Tuple[Any, Any]:
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    if isinstance(profile, (str, Path)):
        from .profile import load_valid

        profile, _ = load_valid(str(profile), pm)  # raises InvalidProfile
    return profile, pm


def _plans(profile: Any, pm: Any, hosts: Sequence[str]) -> List[Any]:
    from .plan import plan_profile

    return plan_profile(profile, pm, list(hosts), runbook=False)   # an audit needs no runbook


def _check_hosts(profile: Any, hosts: Iterable[str]) -> List[str]:
    hosts = list(dict.fromkeys(hosts))
    unknown = [h for h in hosts if h not in profile.hosts]
    if unknown:
        raise AuditError(f"no host {', '.join(unknown)} in the profile (hosts: {', '.join(profile.hosts)})")
    return hosts


@paused_gc()   # the profile, plans, checks and parsed captures: many small acyclic objects
def audit_profile_captures(path: str, captures_dir: Union[str, Path], hosts: Optional[Sequence[str]] = None,
                           strict: bool = False, pm: Any = None, jobs: Optional[int] = None,
                           valid: Optional[Callable[[Any], None]] = None) -> Dict[str, Any]:
    """audit_captures of the profile at `path`, which is loaded here as load_valid loads it (raising
    InvalidProfile with every problem), calling `valid(report)` once it is valid (its warnings).

    For a fleet the workers start before the profile's semantic checks (vnetgen.validate, about a
    quarter of a load) and plan and audit its hosts while this process runs them on the other CPU;
    their results are read only once the profile is valid. An invalid profile stops them and raises
    InvalidProfile, whatever they found: what they computed from it is never seen. Validation changes
    nothing in a profile but a default target (validate.default_targets), given before they start.
    """
    from .diagnostics import InvalidProfile
    from .plugins import get_plugin_manager
    from .profile import load, pm_modes
    from .validate import default_targets, validate

    pm = pm or get_plugin_manager()
    root = Path(captures_dir)
    profile, report = load(str(path), modes=pm_modes(pm))
    results, names, problem = None, [], None
    if profile is not None and not report.errors:
        try:
            names = _captured_hosts(profile, root, hosts)
        except AuditError as error:
            problem = error   # raised below, once the profile is known to be valid
        jobs = _jobs(len(names), jobs)
        if jobs > 1:
            default_targets(profile, pm)
            results = _in_workers(_audit_work(profile, pm, root), names, jobs, pm, eager=True)
            next(results)   # the workers run from here on
    try:
        if profile is not None:
            validate(profile, report, pm)
        if profile is None or report.errors:
            raise InvalidProfile(report)
        profile.warnings = report.sorted()
        if valid is not None:
            valid(report)
        if problem is not None:
            raise problem
        if results is None:
            work = _audit_work(profile, pm, root)
            return make_report([work(name) for name in names], strict)
        return make_report(list(results), strict)
    finally:
        if results is not None:
            results.close()   # stops and reaps the workers when their results were not all read


@paused_gc()   # plans, checks and parsed captures: many small acyclic objects beside the loaded profile
def audit_captures(profile: Any, captures_dir: Union[str, Path], hosts: Optional[Sequence[str]] = None,
                   strict: bool = False, pm: Any = None, jobs: Optional[int] = None) -> Dict[str, Any]:
    """The report (SPEC section 5) of the hosts captured in `captures_dir` (DIR/<host>/, by capture.sh).

    `profile`: a path or a loaded Profile. `hosts`: the hosts to audit; default every host of the
    profile, each of which must then have its directory. `jobs`: worker processes for the hosts
    (vnetgen.workers.default_jobs; the report is the same whatever their number). Raises InvalidProfile, AuditError
    (a missing directory or file) or FactError (a file that cannot be read: "FILE:LINE: message").
    """
    profile, pm = _profile_and_pm(profile, pm)
    root = Path(captures_dir)
    names = _captured_hosts(profile, root, hosts)
    work = _audit_work(profile, pm, root)
    jobs = _jobs(len(names), jobs)
    if jobs > 1:
        audits = list(_in_workers(work, names, jobs, pm))
    else:
        audits = [work(name) for name in names]   # a host's plan and capture are let go once evaluated
    return make_report(audits, strict)


def _captured_hosts(profile: Any, root: Path, hosts: Optional[Sequence[str]]) -> List[str]:
    """The hosts to audit, in the profile's order: `hosts` (default: all), each captured in `root`;
    AuditError otherwise."""
    if not root.is_dir():
        raise AuditError(f"{root}: no such capture directory")
    try:
        os.listdir(root)
    except OSError as error:
        raise AuditError(f"{root}: cannot read the capture directory: {error.strerror or error}") from None
    names = _check_hosts(profile, hosts or profile.hosts)

    def is_dir(path: Path) -> bool:
        try:
            return path.is_dir()
        except OSError:
            return False

    absent = [h for h in names if not is_dir(root / h)]
    if absent:
        captured = sorted(h for h in profile.hosts if is_dir(root / h))
        hint = f"; audit the others with --host ({', '.join(captured)})" if captured and not hosts else ""
        raise AuditError(f"{root}: no capture of {', '.join(absent)} (run capture.sh {root} on it){hint}")
    wanted = set(names)
    return [name for name in profile.hosts if name in wanted]


def _jobs(hosts: int, jobs: Optional[int]) -> int:
    from .workers import default_jobs

    return default_jobs(hosts, jobs)


def _audit_work(profile: Any, pm: Any, root: Path) -> Callable[[str], HostAudit]:
    """The audit of one captured host by name, in this process or a worker: the capture directory
    resolved and the check kinds looked up once, not for every host."""
    return functools.partial(_audit_capture, profile, pm, root, os.path.realpath(root), kinds(pm))


def _audit_capture(profile: Any, pm: Any, root: Path, real: str, registry: Dict[str, Any], name: str) -> HostAudit:
    """The audit of one captured host (a HostAudit holds only strings and lists: a worker sends it whole)."""
    from .plan import plan_host

    plan = plan_host(profile, profile.hosts[name], pm, runbook=False)
    return Evaluation(plan, read_capture(root, plan, real), registry).run()


def _in_workers(func: Any, names: List[str], jobs: int, pm: Any, eager: bool = False) -> Iterator[Any]:
    """vnetgen.workers.ordered_map by runs of 16 hosts (a host's audit is small), a worker that died
    reported as an AuditError; a host's FactError or AuditError is raised in its turn, as in a loop."""
    from .workers import WorkerError, ordered_map

    try:
        yield from ordered_map(func, names, jobs, (pm,), block=16, eager=eager)
    except WorkerError as exc:
        raise AuditError(str(exc)) from None


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


@paused_gc()
def audit_live(profile: Any, host: Optional[str] = None, strict: bool = False, uri: Optional[str] = None,
               pm: Any = None, runner: Runner = run_command, timeout: Optional[float] = None) -> Dict[str, Any]:
    """The report of this machine as `host` (default: local_host), from the commands capture.sh runs.

    virsh honours LIBVIRT_DEFAULT_URI unless `uri` is given; `runner` runs one argv (a lab
    passes one that enters its namespace). Raises InvalidProfile, AuditError or FactError.
    """
    profile, pm = _profile_and_pm(profile, pm)
    name = _check_hosts(profile, [host])[0] if host else local_host(profile)
    plan = _plans(profile, pm, [name])[0]
    kwargs = {} if timeout is None else {"timeout": timeout}
    observed = read_live(plan, uri=uri, runner=runner, **kwargs)
    return make_report([evaluate_host(plan, observed, pm)], strict)

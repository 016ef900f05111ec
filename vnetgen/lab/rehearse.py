"""`vnetgen rehearse`: replay a profile's runbooks in a throw-away lab and report what happened.

The lab (this package) runs a real libvirtd and dnsmasq per host inside private namespaces; this
module maps a profile onto it — the profile's NICs become veths into lab LANs or cables between
lab hosts, its VMs become lab VMs on their networks' bridges — runs each host's runbook.sh, and
checks leases, reachability, idempotency, the audit and rollback. Nothing here touches the
machine's own networking: every command runs inside a lab namespace.

The helpers at the top (run_script, capture_and_audit, failed_step) are shared with the lab tests.
"""
from __future__ import annotations

import importlib.util
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import namespaces
from .hosts import LabHost
from .ports import Port, attach_vms, leases
from .probes import Probe, run_probes
from .report import port_line, probe_line, unavailable_message, verdict_lines
from .snapshots import host_state, host_state_ignoring, state_changes
from .wiring import Wiring
from .world import Lab

Echo = Callable[[str], None]

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def run_script(host: LabHost, host_dir: str, script: str, *args: str,
               env: Optional[Dict[str, str]] = None, timeout: float = 300):
    """Run a bundle script (runbook.sh, rollback.sh, capture.sh) of `host_dir` inside the lab host."""
    host.assert_private()
    return host.run(["bash", os.path.join(host_dir, script), *args], env=env, check=False, timeout=timeout)


def audit_available() -> bool:
    """Whether this vnetgen has `vnetgen audit` (vnetgen.audit)."""
    return importlib.util.find_spec("vnetgen.audit") is not None


def capture_and_audit(host: LabHost, host_dir: str, profile: Any, captures: str, pm: Any = None
                      ) -> Tuple[bool, str]:
    """Run the bundle's capture.sh inside the lab host, then audit the capture: (in_sync, report text)."""
    from ..audit import audit_captures, format_text

    result = run_script(host, host_dir, "capture.sh", captures, timeout=120)
    if result.returncode != 0:
        return False, f"capture.sh failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    report = audit_captures(profile, captures, [host.name], pm=pm)
    return bool(report["in_sync"]), format_text(report)


def failed_step(output: str) -> Optional[str]:
    """The step a runbook's failure message names ("FAILED in step N"), or None."""
    for line in output.splitlines():
        if line.startswith("FAILED in step "):
            return line[len("FAILED in step "):].strip()
    return None


class Rehearsal:
    """One lab, the bundle, and everything observed; `run()` drives it and returns the exit code."""

    def __init__(self, profile: Any, pm: Any, hosts: Optional[Sequence[str]] = None,
                 echo: Echo = print, workdir_parent: Optional[str] = None) -> None:
        from ..plan import plan_profile
        from ..review import run_order

        self.profile = profile
        self.pm = pm
        self.echo = echo
        everything = plan_profile(profile, pm)
        wanted = list(hosts) if hosts else list(profile.hosts)
        chosen = [p for p in everything if p.name in wanted]
        order = [name for name, _ in run_order(profile, chosen)]
        self.plans = sorted(chosen, key=lambda p: order.index(p.name))
        self.names = [p.name for p in self.plans]
        self.workdir_parent = workdir_parent
        self.wiring = Wiring(profile, self.plans)
        self.ports: List[Port] = []
        self.probes: List[Probe] = []
        self.problems: List[str] = []

    def wire(self, lab: Lab) -> Dict[str, LabHost]:
        """Lab hosts for the chosen hosts, with their NICs, cables, LANs and an upstream route."""
        return self.wiring.wire(lab)

    # -- the whole rehearsal -------------------------------------------------------------

    def run(self) -> int:
        from ..bundle import build, write

        echo = self.echo
        t0 = time.monotonic()
        profile_file = os.path.basename(self.profile.path or "profile.yaml")
        echo(f"rehearsal of {profile_file}: host{'s' if len(self.names) > 1 else ''} {', '.join(self.names)} "
             "in a throw-away lab (private namespaces; this machine's networking is not touched)")
        with Lab(workdir_parent=self.workdir_parent) as lab:
            bundle_dir = os.path.join(lab.workdir, "bundle")
            write(build(self.profile, self.pm, profile_file=profile_file, hosts=self.names), bundle_dir)
            hosts = self.wire(lab)
            echo("\n== lab")
            echo(f"   router {lab.router().name}, internet host {lab.router().internet_ip}")
            for line in self.wiring.lines:
                echo("   " + line)
            before = {name: host_state(host) for name, host in hosts.items()}
            applied: List[str] = []
            ok = True
            for name in self.names:
                ok = self._apply(hosts[name], os.path.join(bundle_dir, name))
                applied.append(name)
                if not ok:
                    break
            if ok:
                echo("\n== virtual machines (simulated: a namespace per guest interface)")
                self.ports = attach_vms(lab, hosts, self.wiring)
                leases(self.ports)
                for port in self.ports:
                    echo("   " + port_line(port))
                    if port.note and port.how:
                        self.problems.append(f"{port.label}: {port.note}")
                echo("\n== reachability")
                self.probes = run_probes(lab, self.wiring, self.ports)
                for probe in self.probes:
                    echo("   " + probe_line(probe))
                    if not probe.ok:
                        self.problems.append(f"reachability: {probe.what}")
                echo("\n== second run (idempotency)")
                for name in self.names:
                    self._second_run(hosts[name], os.path.join(bundle_dir, name))
                echo("\n== audit")
                for name in self.names:
                    self._audit(hosts[name], os.path.join(bundle_dir, name), os.path.join(lab.workdir, "captures"))
            echo("\n== rollback")
            for name in reversed(applied):
                self._rollback(hosts[name], os.path.join(bundle_dir, name), before[name])
        seconds = time.monotonic() - t0
        for line in verdict_lines(self.problems, seconds):
            echo(line)
        return EXIT_FAILED if self.problems else EXIT_OK

    def _apply(self, host: LabHost, host_dir: str) -> bool:
        echo = self.echo
        echo(f"\n== {host.name}: runbook.sh --no-vms (VMs are simulated by the lab instead)")
        t0 = time.monotonic()
        result = run_script(host, host_dir, "runbook.sh", "--no-vms")
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            echo("   " + line)
        echo(f"   (exit {result.returncode}, {time.monotonic() - t0:.1f} s)")
        if result.returncode != 0:
            step = failed_step(result.stderr)
            self.problems.append(f"{host.name}: runbook.sh failed" + (f" in step {step}" if step else "")
                                 + f" (exit {result.returncode})")
            return False
        return True

    def _second_run(self, host: LabHost, host_dir: str) -> None:
        result = run_script(host, host_dir, "runbook.sh", "--no-vms")
        last = (result.stdout.strip().splitlines() or [""])[-1]
        if result.returncode == 0 and last.startswith("nothing to change"):
            self.echo(f"   ok   {host.name}: {last}")
            return
        self.echo(f"   FAIL {host.name}: exit {result.returncode}: {last}")
        for line in result.stdout.splitlines():
            if line.startswith("   + "):
                self.echo(f"        changed again: {line[5:]}")
        self.problems.append(f"{host.name}: the second run was not a no-op")

    def _audit(self, host: LabHost, host_dir: str, captures: str) -> None:
        if not audit_available():
            self.echo(f"   --   {host.name}: not audited (this vnetgen has no audit command)")
            return
        try:
            in_sync, text = capture_and_audit(host, host_dir, self.profile, captures, pm=self.pm)
        except Exception as exc:  # an unreadable capture is a finding, not a crash of the rehearsal
            in_sync, text = False, f"{type(exc).__name__}: {exc}"
        self.echo(f"   {'ok  ' if in_sync else 'FAIL'} {host.name}: capture.sh + vnetgen audit --captures")
        for line in text.rstrip().splitlines():
            self.echo("        " + line)
        if not in_sync:
            self.problems.append(f"{host.name}: the audit found drift right after the runbook")

    def _rollback(self, host: LabHost, host_dir: str, before: Dict[str, str]) -> None:
        echo = self.echo
        result = run_script(host, host_dir, "rollback.sh")
        if result.returncode != 0:
            echo(f"   FAIL {host.name}: rollback.sh exit {result.returncode}")
            for line in (result.stdout + result.stderr).rstrip().splitlines():
                echo("        " + line)
            self.problems.append(f"{host.name}: rollback.sh failed")
            return
        taps = [vm.host_ifname for vm in host.vms]
        changes = state_changes(host_state_ignoring(before, taps), host_state(host, ignore=taps))
        again = run_script(host, host_dir, "rollback.sh")
        last = (again.stdout.strip().splitlines() or [""])[-1]
        if changes:
            echo(f"   FAIL {host.name}: rollback.sh left the host different from before the runbook:")
            for line in changes:
                echo("        " + line)
            self.problems.append(f"{host.name}: rollback did not restore the state before the runbook")
        else:
            echo(f"   ok   {host.name}: rollback.sh restored the state before the runbook "
                 "(networks, addresses, routes, bridges, sysctl, /etc)")
        if again.returncode == 0 and last == "nothing to undo":
            echo(f"   ok   {host.name}: a second rollback.sh: nothing to undo")
        else:
            echo(f"   FAIL {host.name}: a second rollback.sh: exit {again.returncode}: {last}")
            self.problems.append(f"{host.name}: the second rollback was not a no-op")


def rehearse(profile: Any, pm: Any, hosts: Optional[Sequence[str]] = None, echo: Echo = print,
             workdir_parent: Optional[str] = None) -> int:
    """Rehearse `hosts` of a loaded profile (default: all, in REVIEW.md's run order): the exit code.

    0 everything behaved as the profile implies; 1 something did not (the report says what);
    2 this machine cannot run a lab (no root, no libvirt, no namespaces) — with the reason.
    """
    ok, reason = namespaces.lab_available()
    if not ok:
        echo(unavailable_message(reason))
        return EXIT_UNAVAILABLE
    return Rehearsal(profile, pm, hosts, echo, workdir_parent).run()


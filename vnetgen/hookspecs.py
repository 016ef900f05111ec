"""Every hook a vnetgen plugin can implement, with when it is called and what it returns.

Hooks are called with keyword arguments only. A hook marked firstresult stops at the first plugin
that returns something other than None; the others collect every plugin's result in a list. Modes
and targets are described by objects (`vnetgen.api.Mode`, `vnetgen.api.Target`); a target's host-OS
behaviour is the methods of its Target object, not hooks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import pluggy

if TYPE_CHECKING:
    from lxml.etree import _Element

    from .api import (Artifact, CaptureFile, Check, CheckKind, HookCase, ImportedNetwork, Mode, Step, Sysctl,
                      Target)
    from .facts import NetworkDef
    from .diagnostics import Report
    from .model import Host, Network
    from .plan import HostPlan, NetworkPlan

hookspec = pluggy.HookspecMarker("vnetgen")


# --- what a plugin provides -------------------------------------------------------------

@hookspec
def vnetgen_modes() -> List["Mode"]:
    """Return the libvirt modes this plugin provides. Called once per plugin manager, when the
    profile is loaded; a mode name claimed by an earlier plugin stays with it."""


@hookspec
def vnetgen_targets() -> List["Target"]:
    """Return the host targets (OS families) this plugin provides, as `Target` subclass instances.
    Called once per plugin manager. Exactly one target of all should say `default = True`: the
    target of a host that names none."""


@hookspec
def vnetgen_check_kinds() -> List["CheckKind"]:
    """Return new drift kinds (`vnetgen.checks.CheckKind` subclass instances): each evaluates its
    checks on observed facts for `vnetgen audit`. A name the core already has is ignored."""


# --- validation ------------------------------------------------------------------------

@hookspec
def vnetgen_validate_network(host: "Host", network: "Network", report: "Report") -> None:
    """Check one network of `host` after the core's checks; report problems with
    `report.error(network.at(key), message)`. Called for every network of a known mode: a
    plugin checks only networks whose `network.mode` is its own. Returns nothing, and changes
    nothing in the profile: an audit of captured fleets plans its hosts while validation runs."""


@hookspec
def vnetgen_validate_host(host: "Host", report: "Report") -> None:
    """Check one host after the core's checks (called for every host, after its target's own
    `Target.validate`). Returns nothing, and changes nothing in the profile (as above)."""


# --- artifacts, steps and checks ------------------------------------------------------------

@hookspec(firstresult=True)
def vnetgen_network_xml(host: "Host", network: "NetworkPlan", plan: "HostPlan") -> Optional["_Element"]:
    """Return the lxml `<network>` element of `network`, or None when the network's mode is not
    this plugin's (the core then builds it from the Mode). The first non-None result wins."""


@hookspec
def vnetgen_sysctl(host: "Host", network: "NetworkPlan") -> List["Sysctl"]:
    """Return the kernel settings `network` needs on its host (called for every network); the
    core writes them to the drop-in, sets them live and checks them."""


@hookspec
def vnetgen_host_artifacts(host: "Host", plan: "HostPlan") -> List["Artifact"]:
    """Return extra files for the bundle of `host` (paths relative to its directory). Called once
    per host after its checks are made; every plugin's files are kept."""


@hookspec
def vnetgen_steps(host: "Host", plan: "HostPlan") -> List["Step"]:
    """Return extra runbook steps for `host`. Steps carry their own order key (a phase of
    `vnetgen.api` first), so plugin call order never matters; every plugin's steps are kept."""


@hookspec
def vnetgen_checks(host: "Host", plan: "HostPlan") -> List["Check"]:
    """Return extra checks of `host`: the runbook's verify step runs their bash tests, and the
    audit evaluates them with the CheckKind of their `kind` (see vnetgen_check_kinds). When
    `plan.runbook` is False (an audit's plan) no runbook is made: their `test` may be left ""."""


@hookspec
def vnetgen_capture_files(host: "Host", plan: "HostPlan") -> List["CaptureFile"]:
    """Return extra files of the host's capture layout (optional ones: `required=False`): capture.sh
    records them, a live audit runs their commands, and the audit's check kinds read them from
    `Observed.extra[NAME]` as (text, source), or None with the reason in `Observed.extra_why[NAME]`."""


@hookspec(firstresult=True)
def vnetgen_import_network(definition: "NetworkDef") -> Optional["ImportedNetwork"]:
    """Claim a libvirt network definition (`vnetgen.facts.NetworkDef`, parsed net-dumpxml) for a mode
    whose `<forward mode>` alone does not tell it (`Mode.importable = False`): return an
    `ImportedNetwork`, or None. The first plugin that claims it wins; unclaimed, the importer picks the
    mode by `<forward mode>` as before."""


@hookspec
def vnetgen_shell_helpers(host: "Host", plan: "HostPlan") -> str:
    """Return bash functions the runbook's and rollback's checks of this plugin call (generic: no
    profile value in them; every call site writes its arguments literally)."""


@hookspec
def vnetgen_network_hook(host: "Host", plan: "HostPlan") -> List["HookCase"]:
    """Return what the bundle's libvirt network hook (hooks/network) runs for the networks of `host`
    (called once per host, before its steps are made). Any case makes the bundle carry the hook and the
    runbook install it (chaining the host's own); every plugin's cases are kept, in call order."""

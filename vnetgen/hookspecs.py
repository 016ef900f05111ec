"""Every hook a vnetgen plugin can implement. Hooks are called with keyword arguments only."""
from __future__ import annotations

from typing import Any, List, Optional

import pluggy

hookspec = pluggy.HookspecMarker("vnetgen")


# --- what a plugin provides -------------------------------------------------------------

@hookspec
def vnetgen_modes() -> List[Any]:
    """Return the `vnetgen.api.Mode`s this plugin provides. Called once per plugin manager."""


@hookspec
def vnetgen_targets() -> List[Any]:
    """Return the `vnetgen.api.Target`s (host OS families) this plugin provides."""


# --- validation ------------------------------------------------------------------------

@hookspec
def vnetgen_validate_network(host: Any, network: Any, report: Any) -> None:
    """Check one network of `host` after the core's checks; report problems with
    `report.error(network.at(key), message)`. Called for every network: a plugin
    checks only networks whose `network.mode` is its own."""


@hookspec
def vnetgen_validate_host(host: Any, report: Any) -> None:
    """Check one host as its target sees it (called for every host; a target plugin
    checks only hosts whose `host.target` is its own)."""


# --- artifacts and steps ---------------------------------------------------------------

@hookspec(firstresult=True)
def vnetgen_network_xml(host: Any, network: Any, plan: Any) -> Optional[Any]:
    """Return the lxml `<network>` element of `network` (a NetworkPlan), or None when
    the network's mode is not this plugin's. The first non-None result wins."""


@hookspec
def vnetgen_sysctl(host: Any, network: Any) -> List[Any]:
    """Return the `Sysctl` settings `network` (a NetworkPlan) needs on its host."""


@hookspec
def vnetgen_host_artifacts(host: Any, plan: Any) -> List[Any]:
    """Return extra `Artifact`s for `host` (e.g. a target's ifcfg files). All results are kept."""


@hookspec
def vnetgen_steps(host: Any, plan: Any) -> List[Any]:
    """Return runbook `Step`s for `host`. Steps carry their own order key; all results are kept."""


@hookspec(firstresult=True)
def vnetgen_vm_install(host: Any, vm: Any, plan: Any) -> Optional[List[str]]:
    """Return the argv that installs `vm` on a host of this plugin's target, or None."""


@hookspec(firstresult=True)
def vnetgen_sysctl_path(host: Any) -> Optional[str]:
    """Return where the host's sysctl drop-in is installed (absolute path), or None."""

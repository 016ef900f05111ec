"""What the modes direct, hostdev and ovs share: their runbook's preflight `require`, and a drift kind of
a part of the network's definition that libvirt shows in net-dumpxml. Speaks only `vnetgen.api`."""
from __future__ import annotations

from typing import Any, Callable, Tuple

from vnetgen.api import PREFLIGHT, Action, Check, CheckKind, Step, cmd


def requires(network: Any, what: str, checks: Tuple[str, ...]) -> Step:
    """A preflight step of `network`: each check must hold before anything changes."""
    return Step((PREFLIGHT, 1, network.name), f"network {network.name}: {what}",
                f"mode {network.mode.name} uses what the host already has; the run stops before any change "
                "when it is not there", tuple(Action(check=check, kind="require") for check in checks))


def definition(kind: str, network: str, expected: Any, tokens: Tuple[str, ...], words: str) -> Check:
    """A check of the network's definition: the runbook matches net-dumpxml lines, the fix redefines it."""
    return Check(kind, f"network/{network}", expected, cmd("net_xml_match", network, *tokens),
                 cmd("virsh", "net-define", f"networks/{network}.xml"), tokens=tokens, network=network, words=words)


class DefinitionKind(CheckKind):
    """A drift kind comparing `observe(NetworkDef)` with the check's expected value."""

    captures = ("net/<network>.xml",)

    def __init__(self, name: str, summary: str, observe: Callable[[Any], Any]) -> None:
        self.name, self.summary, self.observe = name, summary, observe

    def evaluate(self, check: Check, ev: Any) -> None:
        actual = self.observe(ev.obs.definitions[check.network])
        if actual != check.expected:
            ev.drift(check, actual, fix=ev.redefine(check))   # and a restart, when it runs


def networks_of(plan: Any, mode: Any) -> list:
    """The networks of `plan` in `mode` that are (to be) defined."""
    return [n for n in plan.networks.values() if n.mode.name == mode.name and n.net.state != "absent"]

"""The small vocabulary that core and plugins share: modes, targets, steps, artifacts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import pluggy

hookimpl = pluggy.HookimplMarker("vnetgen")

# Runbook phases, in the order SPEC section 3 fixes; a step's order key starts with one.
PREFLIGHT, SYSCTL, HOST_BRIDGES, BACKUP, NETWORKS, PORTS, VMS, VERIFY = 10, 20, 30, 40, 50, 60, 70, 80


@dataclass(frozen=True)
class Mode:
    """A libvirt forward mode as the core needs to know it; plugins describe theirs with one."""

    name: str
    description: str
    forward: str = ""              # <forward mode=…>; "" means no <forward> (isolated)
    libvirt_bridge: bool = True    # libvirt creates the bridge (stp, delay, mac, ports apply)
    ip: str = "optional"           # "required" | "optional" | "forbidden"
    forwards_ipv4: bool = False    # routes guests' traffic off the host: needs ip_forward=1


@dataclass(frozen=True)
class Target:
    """A host OS family: how host bridges are made live and persisted (el7: brctl + ifcfg)."""

    name: str
    description: str
    tools: Tuple[str, ...] = ()   # commands its runbook steps need on the host


@dataclass(frozen=True)
class Sysctl:
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
    kind: str = "change"   # "require": `check` must hold, or the run stops here


@dataclass(frozen=True)
class Step:
    """A numbered runbook step; `order` sorts steps, so plugin call order never matters."""

    order: Tuple
    title: str
    why: str
    actions: Tuple[Action, ...] = field(default_factory=tuple)
    undo: Tuple[Action, ...] = field(default_factory=tuple)   # for rollback.sh, run in reverse
    skip_flag: str = ""   # a runbook option variable (e.g. NO_VMS) that skips the whole step when 1


@dataclass(frozen=True)
class Artifact:
    """A file of the bundle, relative to the host's directory."""

    path: str
    text: str
    mode: int = 0o644
    data: Optional[bytes] = None   # binary content (archives); `text` is then ""

    def content(self) -> bytes:
        return self.data if self.data is not None else self.text.encode("utf-8")

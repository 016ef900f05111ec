"""Snapshots of a lab host (`ip -j`, virsh, sysctl, /etc): what rollback.sh must restore, and the
differences between two snapshots. Shared by `vnetgen rehearse` and the lab tests."""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import stat
from typing import Dict, Iterable, Iterator, List, Sequence

from .hosts import LabHost

_STATE_SCRIPT = r"""
echo '### virsh net-list --all'; virsh net-list --all
echo '### addresses'; ip -j addr show
echo '### links'; ip -j link show
echo '### ip route'; ip route
echo '### bridges'; ip -j -d link show type bridge
echo '### sysctl'
for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/bridge/bridge-nf-call-*; do
  if [ -e "$f" ]; then echo "$f = $(cat "$f")"; fi
done
"""



def host_state(host: LabHost, ignore: Sequence[str] = ()) -> Dict[str, str]:
    """What rollback.sh must restore on a lab host: libvirt's networks, addresses, links (admin
    state, master), routes, bridges, forwarding sysctls, and the /etc files that differ from the
    machine's own.

    What the kernel changes by itself is left out, or a snapshot would depend on its timing:
    operational state (carrier comes a moment after a cable), IPv6 link-local addresses and the
    routes' `linkdown` flag. `ignore`: interfaces to leave out — lab VMs' taps, which (like real
    guests) outlive a rollback.
    """
    out = host.run(["bash", "-c", _STATE_SCRIPT], timeout=60).stdout
    raw: Dict[str, List[str]] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith("### "):
            key = line[4:]
            raw[key] = []
        elif key:
            raw[key].append(line.rstrip())
    skip = set(ignore)
    state = {"virsh net-list --all": _lines(raw.get("virsh net-list --all", [])),
             "ip route": _lines(line.replace(" linkdown", "") for line in raw.get("ip route", [])),
             "sysctl": _lines(raw.get("sysctl", []))}
    # iproute2's JSON, not its tables: each field by name.
    addrs = []
    for link in json.loads("\n".join(raw.get("addresses", [])) or "[]"):
        name = link.get("ifname", "")
        if name and name not in skip:
            kept = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info", ())
                    if not str(a.get("local", "")).lower().startswith("fe80:")]
            addrs.append(" ".join([name] + kept))
    state["ip -br addr"] = _lines(addrs)
    links = []
    for link in json.loads("\n".join(raw.get("links", [])) or "[]"):
        name = link.get("ifname", "")
        if name and name not in skip:
            up = "UP" in link.get("flags", ())
            master = link.get("master")
            links.append(f"{name} {'up' if up else 'down'}" + (f" master {master}" if master else ""))
    state["links"] = _lines(links)
    state["bridges"] = _lines(_bridges("\n".join(raw.get("bridges", []))))  # their ports: "links" (master)
    state["/etc"] = _lines(f"{path} {digest}" for path, digest in _etc_changes(host).items())
    return state


def _bridges(text: str) -> Iterator[str]:
    """`ip -j -d link show type bridge` as "NAME stp S delay D" lines (JSON, not a table's layout)."""
    for link in json.loads(text or "[]"):
        info = link.get("linkinfo", {}).get("info_data", {})
        yield f"{link.get('ifname')} stp {info.get('stp_state')} delay {info.get('forward_delay')}"


def _lines(lines: Iterable[str]) -> str:
    return "".join(line.rstrip("\n") + "\n" for line in lines)


def _digest(path: str) -> str:
    try:
        info = os.lstat(path)
    except OSError:
        return "absent"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    if stat.S_ISLNK(info.st_mode):
        return "symlink:" + os.readlink(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return "unreadable"
    return f"{hashlib.sha256(data).hexdigest()[:16]} mode {stat.S_IMODE(info.st_mode):o}"


def _etc_changes(host: LabHost) -> Dict[str, str]:
    """/etc paths whose content (as the host sees it) differs from this machine's: a file the
    runbook wrote and rollback.sh restored byte for byte stays in the overlay, yet is no change."""
    changes = {}
    for path in host.changed_files():
        if not path.startswith("/etc/"):
            continue
        seen = _digest(host.root_path(path))
        if seen != _digest(path):
            changes[path] = seen
    return changes


def state_changes(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    """Human-readable differences between two host_state() snapshots ([] when equal)."""
    lines: List[str] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, ""), after.get(key, "")
        if old == new:
            continue
        lines.append(f"{key}:")
        for line in difflib.ndiff(old.splitlines(), new.splitlines()):
            if line[:1] in "+-":
                lines.append("  " + line)
    return lines

def host_state_ignoring(state: Dict[str, str], ignore: Sequence[str]) -> Dict[str, str]:
    """A host_state() snapshot as if taken with `ignore` (for a snapshot taken before the taps existed)."""
    skip = set(ignore)
    copy = dict(state)
    for key in ("ip -br addr", "links"):
        copy[key] = _lines(line for line in state.get(key, "").splitlines() if line.split()[0] not in skip)
    return copy

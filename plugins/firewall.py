"""Firewall coexistence, the breakage libvirt users report most: an iptables FORWARD policy of DROP
(Docker sets it) that drops guests' traffic once libvirt's rules are not in iptables (libvirt 10.4+
defaults to its nftables backend; `open` networks get no rules at all), and firewalld without the
`libvirt` zone libvirt puts its bridges in, or a libvirt bridge in another zone.

The runbook warns before it changes anything and goes on; the audit reports warnings with their fix.
Nothing here changes the host's firewall: that is the administrator's call.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from vnetgen.api import PREFLIGHT, Action, CaptureFile, Check, CheckKind, Step, cmd, hookimpl

IPTABLES_FORWARD = "iptables-forward.txt"
NETWORK_CONF = "libvirt-network.conf"
DAEMON_VERSION = "libvirt-version.txt"
FIREWALLD_ZONES = "firewalld-zones.txt"
NFTABLES_FROM = (10, 4, 0)   # libvirt's network driver prefers nftables from this version on

CAPTURES = [
    CaptureFile(IPTABLES_FORWARD, ("iptables", "-S", "FORWARD"), "the iptables FORWARD chain and its policy",
                required=False, since=3, owner="firewall"),
    CaptureFile(NETWORK_CONF, ("cat", "/etc/libvirt/network.conf"), "libvirt's network driver settings "
                "(firewall_backend)", required=False, since=3, owner="firewall"),
    CaptureFile(DAEMON_VERSION, ("virsh", "version", "--daemon"), "libvirt's version (its default firewall "
                "backend)", required=False, since=3, owner="firewall"),
    CaptureFile(FIREWALLD_ZONES, ("firewall-cmd", "--get-active-zones"), "firewalld's zones and their "
                "interfaces (when firewalld runs)", required=False, since=3, owner="firewall"),
]

HELPERS = r"""
libvirt_firewall_backend() {  # libvirt_firewall_backend: iptables or nftables, as libvirt's network driver picks it
  local value version
  value=$(sed -n 's/^[[:space:]]*firewall_backend[[:space:]]*=[[:space:]]*"\([a-z]*\)".*/\1/p' \
    /etc/libvirt/network.conf 2>/dev/null | tail -n 1)
  if [ -n "$value" ]; then echo "$value"; return 0; fi
  version=$(virsh version --daemon 2>/dev/null | sed -n 's/^Running against daemon: *//p')
  if [ -n "$version" ] && [ "$(printf '%s\n10.4.0\n' "$version" | sort -V | head -n 1)" = 10.4.0 ] \
    && command -v nft >/dev/null 2>&1; then
    echo nftables
  else
    echo iptables
  fi
}

forward_policy_ok() {  # forward_policy_ok [--open BRIDGE...] [--ruled BRIDGE...]: no FORWARD policy of DROP drops these guests
  local policy backend open=() ruled=() list=ruled bridge
  while [ $# -gt 0 ]; do
    case "$1" in --open) list=open ;; --ruled) list=ruled ;; *) if [ "$list" = open ]; then open+=("$1"); else ruled+=("$1"); fi ;; esac
    shift
  done
  policy=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p') || policy=""
  [ "$policy" = DROP ] || return 0
  backend=$(libvirt_firewall_backend)
  # With the iptables backend libvirt's own ACCEPT rules come first in FORWARD; with nftables they do not.
  if [ "$backend" = iptables ]; then ruled=(); fi
  [ "${#open[@]}" -gt 0 ] || [ "${#ruled[@]}" -gt 0 ] || return 0
  printf '   the iptables FORWARD policy is DROP (Docker sets it) and libvirt uses %s: guests on %s are dropped there\n' \
    "$backend" "${open[*]} ${ruled[*]}"
  for bridge in "${open[@]}" "${ruled[@]}"; do
    printf '   fix: iptables -I FORWARD -i %s -j ACCEPT; iptables -I FORWARD -o %s -j ACCEPT (in DOCKER-USER where Docker runs)\n' \
      "$bridge" "$bridge"
  done
  return 1
}

firewalld_zone_ok() {  # firewalld_zone_ok: firewalld, when it runs, has the zone libvirt puts its bridges in
  command -v firewall-cmd >/dev/null 2>&1 || return 0
  [ "$(firewall-cmd --state 2>/dev/null)" = running ] || return 0
  if firewall-cmd --info-zone=libvirt >/dev/null 2>&1; then return 0; fi
  printf "   firewalld runs without a 'libvirt' zone (firewalld older than 0.7): libvirt's bridges land in the default zone, which may block guests' DHCP and DNS\n"
  printf '   fix: upgrade firewalld, or firewall-cmd --permanent --zone=trusted --add-interface=BRIDGE for each libvirt bridge\n'
  return 1
}
"""


def _forwarding(plan) -> Dict[str, List[str]]:
    """Bridges of the running networks whose guests' traffic crosses FORWARD: "open" ones libvirt
    writes no rules for, "ruled" ones it does (NAT, routed)."""
    found: Dict[str, List[str]] = {"open": [], "ruled": []}
    for net in plan.networks.values():
        if net.net.state != "active" or not net.mode.forwards_ipv4 or not net.bridge:
            continue
        found["open" if net.mode.forward == "open" else "ruled"].append(net.bridge)
    return found


def _libvirt_bridges(plan) -> List[str]:
    return [n.bridge for n in plan.networks.values()
            if n.net.state == "active" and n.mode.libvirt_bridge and n.bridge]


@hookimpl
def vnetgen_capture_files(host, plan) -> List[CaptureFile]:
    return list(CAPTURES) if plan.networks else []


@hookimpl
def vnetgen_shell_helpers(host, plan) -> str:
    return HELPERS if plan.networks else ""


@hookimpl
def vnetgen_steps(host, plan) -> List[Step]:
    forwarding = _forwarding(plan)
    actions = []
    if forwarding["open"] or forwarding["ruled"]:
        words = (["--open", *forwarding["open"]] if forwarding["open"] else []) + \
                (["--ruled", *forwarding["ruled"]] if forwarding["ruled"] else [])
        actions.append(Action(check=cmd("forward_policy_ok", *words), kind="warn"))
    if _libvirt_bridges(plan):
        actions.append(Action(check="firewalld_zone_ok", kind="warn"))
    if not actions:
        return []
    return [Step((PREFLIGHT, 50), "firewall coexistence",
                 "a FORWARD policy of DROP (Docker) or firewalld without its libvirt zone silently cuts "
                 "guests off; said here with the fix, never changed by vnetgen", tuple(actions))]


@hookimpl
def vnetgen_checks(host, plan) -> List[Check]:
    checks: List[Check] = []
    forwarding = _forwarding(plan)
    if forwarding["open"] or forwarding["ruled"]:
        bridges = forwarding["open"] + forwarding["ruled"]
        fix = "; ".join(f"iptables -I FORWARD -i {b} -j ACCEPT; iptables -I FORWARD -o {b} -j ACCEPT" for b in bridges)
        checks.append(Check("forward-policy", "host", "guests' traffic is forwarded", fix=fix, severity="warning",
                            words="no FORWARD policy of DROP drops guests' traffic",
                            params=(("open", tuple(forwarding["open"])), ("ruled", tuple(forwarding["ruled"])))))
    for bridge in _libvirt_bridges(plan):
        checks.append(Check("firewall-zone", f"bridge/{bridge}", "libvirt",
                            fix=f"firewall-cmd --zone=libvirt --change-interface={bridge}", severity="warning",
                            words=f"firewalld has {bridge} in zone libvirt"))
    return checks


def _backend(ev) -> Optional[str]:
    conf = ev.obs.extra.get(NETWORK_CONF)
    if conf is not None:
        found = re.findall(r'^\s*firewall_backend\s*=\s*"([a-z]+)"', conf[0], re.M)
        if found:
            return found[-1]
    version = ev.obs.extra.get(DAEMON_VERSION)
    if version is None:
        return None
    match = re.search(r"Running against daemon:\s*(\d+)\.(\d+)\.(\d+)", version[0])
    if not match:
        return None
    # nftables when libvirt is new enough (and nft installed, which a capture cannot tell: assumed)
    return "nftables" if tuple(int(x) for x in match.groups()) >= NFTABLES_FROM else "iptables"


class ForwardPolicy(CheckKind):
    name = "forward-policy"
    summary = "no iptables FORWARD policy of DROP (Docker's) drops the guests' traffic libvirt does not ACCEPT itself"
    captures = (IPTABLES_FORWARD, NETWORK_CONF, DAEMON_VERSION)
    severity = "warning"

    def evaluate(self, check: Check, ev) -> None:
        got = ev.obs.extra.get(IPTABLES_FORWARD)
        if got is None:
            # No iptables on the host (nftables-only), or a capture older than layout 3: there is no
            # iptables policy to report. A warning-level heuristic, so nothing is listed as not audited.
            return
        policy = re.findall(r"^-P FORWARD (\S+)", got[0], re.M)
        if policy != ["DROP"]:
            return
        backend = _backend(ev)
        dropped = list(check.param("open"))
        if backend != "iptables":   # nftables, or unknown: libvirt's ACCEPT rules are not in FORWARD
            dropped += list(check.param("ruled"))
        if dropped:
            ev.drift(check, f"FORWARD policy DROP; libvirt's firewall backend {backend or 'unknown'}; "
                            f"guests on {', '.join(dropped)} are dropped")


class FirewallZone(CheckKind):
    name = "firewall-zone"
    summary = "where firewalld runs, each libvirt bridge is in its zone libvirt"
    captures = (FIREWALLD_ZONES,)
    severity = "warning"

    def evaluate(self, check: Check, ev) -> None:
        got = ev.obs.extra.get(FIREWALLD_ZONES)
        if got is None:
            return  # firewalld not running (firewall-cmd fails) or not installed: nothing to say
        bridge = check.object.split("/", 1)[1]
        zone = None
        current = None
        for line in got[0].splitlines():
            if line and not line[0].isspace():
                current = line.split()[0]
            elif line.strip().startswith("interfaces:") and bridge in line.split(":", 1)[1].split():
                zone = current
        if zone is not None and zone != "libvirt":
            ev.drift(check, zone)


@hookimpl
def vnetgen_check_kinds() -> List[CheckKind]:
    return [ForwardPolicy(), FirewallZone()]

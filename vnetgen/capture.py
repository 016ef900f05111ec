"""The capture layout: the files capture.sh writes, in order, and the commands that write them (one
table: capture.sh, vnetgen.observe's readers and docs/audit.md come from it). Apart from the readers
so that a build, which writes capture.sh, does not import them."""
from __future__ import annotations

from typing import Any, List, Sequence

from .api import CaptureFile
from .factbase import (dom_dumpxml_command, domiflist_command, net_dumpxml_command, net_list_command, sysctl_command,
                       virsh_list_command)

# The capture layout version capture.sh writes into LAYOUT_FILE; a capture without it is layout 1
# (SPEC section 5 as first written: no iproute2 addresses or routes, only ip_forward in sysctl.txt).
# Layout 4 adds domxml/<vm>.xml (what `vnetgen import` needs of a VM); layout 5 adds os-release.txt and
# each target's file of the resolvers its configuration gives (import's target and bridges' dns).
# Earlier layouts read as before.
LAYOUT = 5
LAYOUT_FILE = "capture-layout.txt"

NET_LIST = CaptureFile("virsh-net-list.txt", tuple(net_list_command()), "every network, its state and autostart")
# --network: a name that starts with "-" stays a name.
NET_XML = CaptureFile("net/{name}.xml", tuple(net_dumpxml_command("{name}")),
                      "the live definition of each network listed", each="network")
DOMAINS = CaptureFile("virsh-list.txt", tuple(virsh_list_command()), "the domains (optional: VMs are then "
                      "not audited)", required=False)
DOMIFLIST = CaptureFile("domiflist/{name}.txt", tuple(domiflist_command("{name}")),
                        "each domain's NICs (optional: that VM's NICs are then not audited)", required=False,
                        each="vm")
DOMXML = CaptureFile("domxml/{name}.xml", tuple(dom_dumpxml_command("{name}")),
                     "each domain's persistent definition: memory, vCPUs, disks, NICs (optional: `vnetgen "
                     "import` then keeps that VM as a comment)", required=False, each="vm")
OS_RELEASE = CaptureFile("os-release.txt", ("cat", "/etc/os-release"), "the host's OS (optional: `vnetgen import` "
                         "picks the target that claims its ID, else guesses)", required=False, since=5)
IP_FORWARD = "net.ipv4.ip_forward"


def sysctl_file(keys: Sequence[str]) -> CaptureFile:
    """sysctl.txt: the keys a host's plan sets (a key the kernel lacks, e.g. bridge-nf-call-* without
    br_netfilter, is left out of the output and sysctl exits non-zero: the rest is still good)."""
    keys = tuple(dict.fromkeys((IP_FORWARD, *keys)))
    return CaptureFile("sysctl.txt", tuple(sysctl_command(keys)), "the kernel settings the drop-in sets",
                       status_ok=True)


def capture_table(plan: Any) -> List[CaptureFile]:
    """Every file of a host's capture, in the order capture.sh writes them: libvirt's, then the target's."""
    keys = [s.key for s in plan.sysctl]
    return [NET_LIST, NET_XML, *plan.target.capture_files(), sysctl_file(keys), DOMAINS, DOMIFLIST, DOMXML,
            OS_RELEASE, *plan.plugin_captures]

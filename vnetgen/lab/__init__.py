"""Throw-away libvirtd + dnsmasq labs in private namespaces, for running generated runbooks for real,
and `vnetgen rehearse`, which maps a profile onto one.

The lab (this package's face re-exports its public names):
  errors.py      LabError, NotPrivateError, LabCommandError
  namespaces.py  namespace identity, the safety check (in_private_netns), lab_available, require_lab
  processes.py   running commands inside namespaces, process holders, wait_until
  nodes.py       LabNode: a private netns and the commands run in it
  hosts.py       LabHost: a simulated KVM host with its own libvirtd (and NetworkManager), and
                 lab_os_release: the /etc/os-release it says for its target
  guests.py      LabVm, Lease, dhcp_all: guests on a host's bridge and their DHCP leases
  upstream.py    LabRouter, LabLan: the router, its "internet" host and LANs
  world.py       Lab: owns every namespace, process and temp file; builds and tears down

The rehearsal (imported by name, not from here: it pulls in the planner):
  rehearse.py    Rehearsal and rehearse(): the bundle applied, checked and rolled back in a lab
  wiring.py      the profile's NICs, cables and LANs stood in for by lab LANs and cables
  ports.py       the profile's VM interfaces as lab VMs, statically addressed or leased
  probes.py      reachability probes with the outcome the profile implies
  snapshots.py   host_state: what rollback.sh must restore, and the differences between two
  report.py      the lines of the rehearsal's report
"""

from .errors import LabCommandError, LabError, NotPrivateError
from .guests import LabVm, Lease, dhcp_all
from .hosts import LIBVIRT_URI, LabHost, lab_os_release
from .namespaces import in_private_netns, lab_available, netns_inode, require_lab
from .nodes import LabNode
from .processes import wait_until
from .upstream import LabLan, LabRouter
from .world import Lab

__all__ = [
    "LIBVIRT_URI",
    "Lab",
    "LabCommandError",
    "LabError",
    "LabHost",
    "LabLan",
    "LabNode",
    "LabRouter",
    "LabVm",
    "Lease",
    "NotPrivateError",
    "dhcp_all",
    "in_private_netns",
    "lab_available",
    "lab_os_release",
    "netns_inode",
    "require_lab",
    "wait_until",
]

"""Namespace identity, the safety check every lab command passes (`in_private_netns`), and whether
this machine can run a lab at all (`lab_available`, `require_lab`)."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from typing import Optional, Tuple, Union

# Tools the lab cannot work without; each is looked up on PATH.
REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "libvirtd", "virsh", "dnsmasq", "busybox", "bash", "env")

# Where distributions install libvirtd's loadable drivers.
_DRIVER_DIR_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver",
    "/usr/lib64/libvirt/connection-driver",
    "/usr/lib/libvirt/connection-driver",
)
NETWORK_DRIVER = "libvirt_driver_network.so"


# ---------------------------------------------------------------------------------------------
# Namespace identity and the safety check
# ---------------------------------------------------------------------------------------------


def _ns_link(pid: Union[int, str], kind: str = "net") -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def netns_inode(pid: Union[int, str]) -> int:
    """Inode number of the network namespace of process ``pid``."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[-1].split()[1])


def _outer_netns() -> Tuple[Optional[str], set]:
    """(our netns, every netns that counts as "the machine's").

    PID 1's namespace links may be unreadable even for root (some sandboxes' init is protected by
    an LSM). kthreadd (PID 2) is a kernel thread and kernel threads always sit in the initial
    netns, so it stands in for PID 1; our ancestors are added too, for good measure.
    """
    try:
        ours = _ns_link("self")
    except OSError:
        return None, set()
    outer = {ours}
    system_ref = False
    try:
        outer.add(_ns_link(1))
        system_ref = True
    except OSError:
        pass
    try:
        with open("/proc/2/comm") as fh:
            if fh.read().strip() == "kthreadd":
                outer.add(_ns_link(2))
                system_ref = True
    except OSError:
        pass
    pid = os.getpid()
    for _ in range(64):
        try:
            pid = _ppid(pid)
            if pid <= 1:
                break
            outer.add(_ns_link(pid))
        except (OSError, ValueError, IndexError):
            break
    return (ours if system_ref else None), outer


def in_private_netns(pid: int) -> bool:
    """True only if ``pid`` lives in a network namespace other than ours and other than PID 1's.

    Anything that cannot be proven private (unreadable links, a vanished process, no readable
    reference for the machine's own namespace) counts as not private, so callers refuse.
    """
    ours, outer = _outer_netns()
    if ours is None:
        return False
    try:
        target = _ns_link(pid)
    except OSError:
        return False
    return target not in outer


# ---------------------------------------------------------------------------------------------
# Availability (for pytest skip / fail)
# ---------------------------------------------------------------------------------------------


def connection_driver_dir() -> Optional[str]:
    candidates = list(_DRIVER_DIR_CANDIDATES) + sorted(glob.glob("/usr/lib/*/libvirt/connection-driver"))
    for cand in candidates:
        if os.path.isfile(os.path.join(cand, NETWORK_DRIVER)):
            return cand
    return None


@functools.lru_cache(maxsize=None)
def lab_available() -> Tuple[bool, str]:
    """Whether this machine can run a lab, and if not, why (cached: probes run once per process)."""
    if os.uname().sysname != "Linux":
        return False, "the lab needs Linux namespaces"
    if os.geteuid() != 0:
        return False, "the lab needs root (network, mount and PID namespaces)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return False, "missing tools: " + ", ".join(missing)
    if connection_driver_dir() is None:
        return False, f"libvirt's {NETWORK_DRIVER} not found (package libvirt-daemon)"
    # A live probe: namespaces may be forbidden (unprivileged container, seccomp) even for root.
    # The veth pair is created inside the probe's own fresh netns and dies with it.
    probe = [
        "unshare", "-n", "-m", "-p", "-u", "--fork", "--mount-proc", "--propagation", "private",
        "ip", "link", "add", "labprobe0", "type", "veth", "peer", "name", "labprobe1",
    ]
    try:
        res = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"namespace probe failed: {exc}"
    if res.returncode != 0:
        return False, "namespace/veth probe failed: " + (res.stderr.strip() or f"exit {res.returncode}")
    return True, "ok"


def require_lab() -> None:
    """Fixture helper: return if the lab can run; else skip, or fail when CI=true.

    In CI a missing tool must not turn the real-stack tests into silent skips.
    """
    ok, reason = lab_available()
    if ok:
        return
    import pytest  # only callers inside pytest reach this line; the module stays stdlib-only

    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"lab unavailable but CI=true: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")

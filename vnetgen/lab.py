"""Throw-away libvirtd + dnsmasq labs in private namespaces, for running generated runbooks for real."""

from __future__ import annotations

import atexit
import dataclasses
import functools
import glob
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

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
    "netns_inode",
    "require_lab",
]

# Every libvirt call inside a lab host goes to the host's own libvirtd, which serves networks only.
LIBVIRT_URI = "network:///system"

# Tools the lab cannot work without; each is looked up on PATH.
REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "libvirtd", "virsh", "dnsmasq", "busybox", "bash", "env")

# Where distributions install libvirtd's loadable drivers.
_DRIVER_DIR_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver",
    "/usr/lib64/libvirt/connection-driver",
    "/usr/lib/libvirt/connection-driver",
)
_NETWORK_DRIVER = "libvirt_driver_network.so"

# Names the kernel accepts for an interface: at most 15 bytes, no '/', ':' or whitespace.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Lab object names end up in file names and hostnames.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Cmd = Union[str, Sequence[str]]


class LabError(RuntimeError):
    """The lab could not build or reach what was asked."""


class NotPrivateError(LabError):
    """A target process is not in a private network namespace: refusing to touch it."""


class LabCommandError(subprocess.CalledProcessError):
    """A command inside the lab failed; the message carries its output, unlike CalledProcessError."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                if isinstance(data, bytes):
                    data = data.decode("utf-8", "replace")
                text += f"\n--- {label} (last 2000 chars) ---\n{data[-2000:]}"
        return text


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


def _connection_driver_dir() -> Optional[str]:
    candidates = list(_DRIVER_DIR_CANDIDATES) + sorted(glob.glob("/usr/lib/*/libvirt/connection-driver"))
    for cand in candidates:
        if os.path.isfile(os.path.join(cand, _NETWORK_DRIVER)):
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
    if _connection_driver_dir() is None:
        return False, f"libvirt's {_NETWORK_DRIVER} not found (package libvirt-daemon)"
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


# ---------------------------------------------------------------------------------------------
# Process plumbing
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _prctl():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl


def _make_preexec():
    # PR_SET_PDEATHSIG: if the Python process dies hard (SIGKILL, crash), the kernel kills our
    # namespace holders, and with them every namespace, so nothing outlives a crashed test run.
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        pass
    # Kernels without CONFIG_PROC_CHILDREN: scan parents instead.
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _run(
    argv: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    check: bool = True,
    timeout: float = 60,
    input: Optional[str] = None,
    cwd: Optional[str] = None,
) -> subprocess.CompletedProcess:
    """subprocess.run with text output and a timeout that also kills what nsenter forked."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        text=True,
        errors="replace",
        # Own process group: on timeout the whole group dies, including nsenter's child that
        # lives in the lab's PID namespace (killing nsenter alone would orphan it).
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err) from None
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    if check and proc.returncode != 0:
        raise LabCommandError(proc.returncode, list(argv), out, err)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _shell_argv(cmd: Cmd) -> List[str]:
    if isinstance(cmd, str):
        return ["bash", "-c", cmd]
    argv = [str(a) for a in cmd]
    if not argv:
        raise ValueError("empty command")
    return argv


def _check_ifname(name: str) -> str:
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise ValueError(f"invalid interface name {name!r}")
    return name


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid {what} name {name!r}")
    return name


def _derive_mac(*parts: str) -> str:
    # Deterministic, locally administered, in libvirt's 52:54:00 prefix like real guests.
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])


def _wait_until(pred, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Nodes: anything with a private netns
# ---------------------------------------------------------------------------------------------


class LabNode:
    """A bare network namespace held open by a sleeper process (router, internet host, VM)."""

    kind = "node"

    def __init__(self, lab: "Lab", name: str, pid: int) -> None:
        self.lab = lab
        self.name = name
        self.pid = pid  # outer PID of a process living in the namespace

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    def netns_id(self) -> int:
        """Inode of this node's network namespace."""
        return netns_inode(self.pid)

    def assert_private(self) -> None:
        """Raise NotPrivateError unless this node's netns is neither ours nor PID 1's."""
        if not _alive(self.pid):
            raise NotPrivateError(f"{self.kind} {self.name}: process {self.pid} is gone")
        if not in_private_netns(self.pid):
            raise NotPrivateError(
                f"{self.kind} {self.name}: pid {self.pid} is not in a private network namespace; refusing"
            )

    def _nsenter(self) -> List[str]:
        return self._nsenter_net_only()

    def _env(self, env: Optional[Mapping[str, str]]) -> Dict[str, str]:
        merged = dict(os.environ)
        # A legacy-iptables lock belongs to the machine's /run; keep ours in the lab's workdir.
        merged["XTABLES_LOCKFILE"] = os.path.join(self.lab.workdir, "xtables.lock")
        if env:
            merged.update(env)
        return merged

    def run(
        self,
        cmd: Cmd,
        env: Optional[Mapping[str, str]] = None,
        check: bool = True,
        timeout: float = 60,
        input: Optional[str] = None,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` (argv list, or a bash string) inside this node's network namespace."""
        self.assert_private()
        return _run(
            self._nsenter() + _shell_argv(cmd),
            env=self._env(env),
            check=check,
            timeout=timeout,
            input=input,
            cwd=cwd,
        )

    def ip(self, *args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
        """Run ``ip ARGS`` in this node's netns (netns only: outer /proc, so PIDs are ours)."""
        self.assert_private()
        return _run(self._nsenter_net_only() + ["ip", *args], check=check, timeout=timeout)

    def _nsenter_net_only(self) -> List[str]:
        # Enter only the netns: the mount namespace stays ours, so every path (and /proc with
        # outer PIDs) means the same as in the test process.
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--"]

    def interfaces(self) -> List[str]:
        """Interface names in this node's netns."""
        out = self.ip("-o", "link", "show").stdout
        names = []
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) >= 2:
                names.append(parts[1].strip().split("@", 1)[0])
        return names

    def addresses(self, ifname: Optional[str] = None) -> List[str]:
        """IPv4 addresses (CIDR) in this netns, optionally of one interface."""
        args = ["-o", "-4", "addr", "show"] + (["dev", ifname] if ifname else [])
        out = self.ip(*args).stdout
        return [m.group(1) for m in re.finditer(r"\binet (\S+)", out)]

    def ping(self, addr: str, count: int = 1, timeout: float = 2) -> bool:
        """True if ``count`` echo replies from ``addr`` arrive within ``timeout`` seconds.

        Keeps trying until then: a bridge port still in STP learning drops the first packets
        and ARP, and iputils ping gives up early on "Destination Host Unreachable".
        """
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            wait = max(1, int(-(-left // 1)))  # ping -w takes whole seconds
            res = self.run(
                ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", str(wait), str(addr)],
                check=False,
                timeout=wait + 10,
            )
            if res.returncode == 0:
                return True
            if time.monotonic() + 0.2 >= end:
                return False
            time.sleep(0.2)


class LabHost(LabNode):
    """A simulated KVM host: private net/mount/PID/UTS namespaces running its own libvirtd."""

    kind = "host"

    def __init__(self, lab: "Lab", name: str, pid: int, proc: subprocess.Popen, hostdir: str) -> None:
        super().__init__(lab, name, pid)
        self.proc = proc  # the unshare process; self.pid is its child, PID 1 of the namespace
        self.hostdir = hostdir
        self.vms: List["LabVm"] = []
        self.startup_seconds = 0.0
        self._vnet = 0

    def _nsenter(self) -> List[str]:
        # Mount namespace too (libvirt's socket, the tmpfs state and overlays live there), and
        # PID namespace so `ps`/pgrep see the host's own processes only.
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-p", "-u", "--"]

    def _env(self, env: Optional[Mapping[str, str]]) -> Dict[str, str]:
        merged = dict(os.environ)
        merged["LIBVIRT_DEFAULT_URI"] = LIBVIRT_URI
        if env:
            merged.update(env)
        return merged

    def root_path(self, path: str) -> str:
        """Outer path of ``path`` as the host sees it (its tmpfs mounts and overlays)."""
        return f"/proc/{self.pid}/root/{path.lstrip('/')}"

    def run(
        self,
        cmd: Cmd,
        env: Optional[Mapping[str, str]] = None,
        check: bool = True,
        timeout: float = 120,
        input: Optional[str] = None,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` (argv list or bash string) inside the host, with LIBVIRT_DEFAULT_URI set.

        The working directory defaults to ours; the host's mount namespace is a private copy, so
        /work and /tmp look the same there (only /run, /sys, and the /etc, /var overlays differ).
        """
        self.assert_private()
        explicit = cwd is not None
        cwd = os.path.abspath(cwd if explicit else os.getcwd())
        if not os.path.isdir(self.root_path(cwd)):
            if explicit:
                raise LabError(f"{cwd} is not visible inside host {self.name}")
            cwd = "/"
        # env -C: the directory is resolved inside the host's mount namespace.
        argv = self._nsenter() + ["env", "-C", cwd] + _shell_argv(cmd)
        return _run(argv, env=self._env(env), check=check, timeout=timeout, input=input)

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """``virsh ARGS`` against this host's libvirtd."""
        return self.run(["virsh", *args], check=check, timeout=timeout)

    def restart_libvirtd(self, timeout: float = 20) -> None:
        """Restart the host's libvirtd, as `systemctl restart libvirtd` would (there is no systemd
        in a lab host; the machine's systemd is unreachable behind the private /run).

        Running networks survive, as on a real host; libvirtd re-reads its hooks on start.
        """
        conf = os.path.join(self.hostdir, "libvirtd.conf")
        script = (
            'pid=$(cat /run/libvirt/libvirtd.pid 2>/dev/null || :)\n'
            'if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then\n'
            '    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done\n'
            'fi\n'
            'rm -f /run/libvirt/libvirt-sock\n'
            'libvirtd -d -f "$1" -p /run/libvirt/libvirtd.pid >/dev/null 2>&1\n'
            'for _ in $(seq 400); do [ -S /run/libvirt/libvirt-sock ] && exit 0; sleep 0.05; done\n'
            'echo "libvirtd socket did not come back" >&2; exit 1\n'
        )
        self.run(["sh", "-c", script, "restart-libvirtd", conf], timeout=timeout)
        self.virsh("-q", "net-list", "--all", timeout=timeout)

    def start_networkmanager(self, timeout: float = 30) -> None:
        """Start a real NetworkManager (and the system D-Bus it talks over) inside the host.

        Its D-Bus socket lives in the host's private /run, so nmcli here reaches only this one. It
        runs in a mount namespace of its own with a read-only sysfs: NetworkManager then manages
        devices without udev (it would otherwise wait for udev to announce each one), and no udevd
        is started, since one would act on this machine's own devices. Its state directory is a
        tmpfs of that namespace; keyfiles are read from the host's /etc overlay like any host's.
        """
        conf = os.path.join(self.hostdir, "NetworkManager.conf")
        with open(conf, "w") as fh:
            fh.write(_NM_CONF)
        log = os.path.join(self.hostdir, "NetworkManager.log")
        script = (
            'mkdir -p /run/dbus /etc/NetworkManager/system-connections\n'
            '[ -S /run/dbus/system_bus_socket ] || dbus-daemon --system --fork\n'
            'unshare -m --propagation private sh -c \'mount -o remount,bind,ro /sys && '
            'mount -t tmpfs -o mode=0755 tmpfs /var/lib/NetworkManager && '
            'exec NetworkManager --config="$1" --no-daemon\' nm "$1" >"$2" 2>&1 </dev/null &\n'
        )
        self.run(["sh", "-c", script, "start-nm", conf, log], timeout=timeout)

        def running() -> bool:
            out = self.run(["nmcli", "-t", "-f", "RUNNING", "general"], check=False, timeout=10)
            return out.returncode == 0 and out.stdout.strip() == "running"

        if not _wait_until(running, timeout, interval=0.1):
            try:
                with open(log, errors="replace") as fh:
                    tail = fh.read()[-3000:]
            except OSError:
                tail = ""
            raise LabError(f"host {self.name}: NetworkManager did not start\n{tail}")

    def nm_adopt(self, ifname: str, timeout: float = 30) -> None:
        """Give `ifname` a NetworkManager profile holding its current IPv4 addresses and default route,
        as an installer leaves a RHEL host ("System IFNAME"), and activate it."""
        _check_ifname(ifname)
        addrs = [a for a in self.addresses(ifname) if ":" not in a]
        route = self.run(["ip", "-4", "route", "show", "default", "dev", ifname], check=False).stdout.split()
        argv = ["nmcli", "connection", "add", "type", "ethernet", "ifname", ifname, "con-name", f"System {ifname}",
                "ipv6.method", "ignore"]
        if addrs:
            argv += ["ipv4.method", "manual", "ipv4.addresses", ",".join(addrs)]
            if "via" in route:
                argv += ["ipv4.gateway", route[route.index("via") + 1]]
        else:
            argv += ["ipv4.method", "disabled"]
        self.run(argv, timeout=timeout)
        self.run(["nmcli", "-w", str(int(timeout)), "connection", "up", "id", f"System {ifname}"], timeout=timeout + 5)

    def set_os_release(self, text: str) -> None:
        """The host's /etc/os-release (as `lab_os_release` words it): written into its /etc overlay,
        never through the symlink /etc/os-release usually is (that would reach this machine's /usr)."""
        fstype = self.run(["stat", "-f", "-c", "%T", "/etc"], timeout=10).stdout.strip()
        if fstype != "overlayfs":
            raise LabError(f"host {self.name}: /etc is {fstype or 'unknown'}, not the lab's overlay: refusing")
        self.run(["sh", "-c", 'rm -f /etc/os-release && cat > /etc/os-release'], input=text, timeout=10)
        if not os.path.isfile(self.root_path("/run/lab/etc-upper/os-release")):
            raise LabError(f"host {self.name}: /etc/os-release did not land in the lab's overlay")

    def libvirtd_log(self) -> str:
        try:
            with open(self.root_path("/var/log/libvirt/libvirtd.log"), errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def changed_files(self) -> List[str]:
        """Files the host wrote or deleted under /etc and /var (outside libvirt's tmpfs dirs).

        They live in the host's private overlays; this machine's /etc and /var never change.
        """
        changed = []
        for top in ("etc", "var"):
            upper = self.root_path(f"/run/lab/{top}-upper")
            for root, _dirs, files in os.walk(upper):
                for fname in files:
                    changed.append(f"/{top}/" + os.path.relpath(os.path.join(root, fname), upper))
        return sorted(changed)

    def _next_vnet(self) -> str:
        existing = set(self.interfaces())
        while True:
            name = f"vnet{self._vnet}"
            self._vnet += 1
            if name not in existing:
                return name


class LabVm(LabNode):
    """A simulated guest: a netns whose eth0 is a veth plugged into a bridge of its host."""

    kind = "vm"

    def __init__(self, lab: "Lab", name: str, pid: int, host: LabHost, bridge: str, mac: str, host_ifname: str) -> None:
        super().__init__(lab, name, pid)
        self.host = host
        self.bridge = bridge
        self.mac = mac
        self.host_ifname = host_ifname
        self.lease: Optional[Lease] = None

    def dhcp(self, timeout: float = 20) -> "Lease":
        """Get a lease on eth0 with busybox udhcpc; apply it (address and default route).

        With libvirt's stp='on' the kernel keeps a new port out of forwarding for 2 x forward_delay
        (libvirt asks for 0, the kernel's minimum with STP is 2 s), and libvirt's dnsmasq pings an
        address for ~3 s before offering it: a first lease takes about 7 s. Use dhcp_all() for
        several VMs.
        """
        script = self.lab._udhcpc_script()
        leasefile = os.path.join(self.lab.workdir, f"lease-{self.name}.env")
        try:
            os.unlink(leasefile)
        except FileNotFoundError:
            pass
        deadline = time.monotonic() + timeout
        log = ""
        # udhcpc -n gives up as soon as its 3 REQUESTs go unanswered, which happens when dnsmasq
        # is busy with another client's ping check: so retry until the deadline.
        while True:
            tries = max(1, int(deadline - time.monotonic()))
            argv = ["busybox", "udhcpc", "-i", "eth0", "-f", "-n", "-q", "-t", str(tries), "-T", "1",
                    "-s", script]
            if re.match(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", self.name):
                argv += ["-x", f"hostname:{self.name}"]
            res = self.run(argv, env={"LAB_LEASE_FILE": leasefile}, check=False, timeout=tries * 2 + 10)
            log += res.stdout + res.stderr
            if res.returncode == 0 and os.path.exists(leasefile):
                break
            if time.monotonic() >= deadline:
                raise LabError(
                    f"vm {self.name}: no DHCP lease on {self.host.name}/{self.bridge} within {timeout}s\n"
                    + log[-3000:]
                )
        self.lease = Lease.from_env_file(leasefile)
        return self.lease

    def set_static(self, ip_cidr: str, gw: Optional[str] = None) -> None:
        """Configure eth0 statically (routed-mode guests get no DHCP)."""
        iface = ipaddress.ip_interface(ip_cidr)
        self.ip("-4", "addr", "flush", "dev", "eth0")
        self.ip("addr", "add", str(iface), "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        if gw:
            self.ip("route", "replace", "default", "via", str(ipaddress.ip_address(gw)), "dev", "eth0")


def dhcp_all(vms: Sequence[LabVm], timeout: Optional[float] = None) -> List["Lease"]:
    """Lease for every VM, concurrently, so their STP waits (~4 s) overlap.

    libvirt's dnsmasq still serialises its ~3 s ping check per new client, hence the default
    timeout grows with the number of VMs.
    """
    import concurrent.futures

    if not vms:
        return []
    if timeout is None:
        timeout = max(20.0, 8.0 + 4.0 * len(vms))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(vms)) as pool:
        return list(pool.map(lambda vm: vm.dhcp(timeout), vms))


class LabRouter(LabNode):
    """The upstream router: owns the LAN bridges and a link to the "internet" node."""

    kind = "router"

    def __init__(self, lab: "Lab", name: str, pid: int) -> None:
        super().__init__(lab, name, pid)
        self.internet: Optional[LabNode] = None
        self.internet_ip: Optional[str] = None
        self.lans: Dict[str, LabLan] = {}

    def add_route(self, dest: str, via: str) -> None:
        """Static route on the router, e.g. routed mode: 192.168.132.0/24 via the host."""
        self.ip("route", "replace", str(ipaddress.ip_network(dest, strict=False)), "via",
                str(ipaddress.ip_address(via)))


@dataclasses.dataclass
class LabLan:
    """An upstream L2 segment: a bridge in the router's netns, optionally with a DHCP server."""

    name: str
    router: LabRouter
    subnet: ipaddress.IPv4Network
    gateway_ip: str
    dhcp_range: Optional[Tuple[str, str]]
    leasefile: str
    ports: int = 0

    @property
    def bridge(self) -> str:
        return self.name

    def leases(self) -> List[Dict[str, str]]:
        """dnsmasq's lease file: [{'mac', 'ip', 'hostname'}]."""
        out = []
        try:
            with open(self.leasefile) as fh:
                for line in fh:
                    f = line.split()
                    if len(f) >= 4:
                        out.append({"mac": f[1], "ip": f[2], "hostname": f[3]})
        except OSError:
            pass
        return out


@dataclasses.dataclass
class Lease:
    """What udhcpc was given."""

    ip: str
    prefix: int
    router: Optional[str]
    server: Optional[str] = None
    dns: List[str] = dataclasses.field(default_factory=list)
    lease_time: Optional[int] = None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix}"

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.cidr)

    @classmethod
    def from_env_file(cls, path: str) -> "Lease":
        values: Dict[str, str] = {}
        with open(path) as fh:
            for line in fh:
                key, sep, val = line.rstrip("\n").partition("=")
                if sep:
                    values[key] = val
        mask = values.get("mask", "")
        if mask.isdigit():
            prefix = int(mask)
        else:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{values.get('subnet', '255.255.255.255')}").prefixlen
        router = values.get("router", "").split()
        return cls(
            ip=values["ip"],
            prefix=prefix,
            router=router[0] if router else None,
            server=values.get("serverid") or None,
            dns=values.get("dns", "").split(),
            lease_time=int(values["lease"]) if values.get("lease", "").isdigit() else None,
        )


# ---------------------------------------------------------------------------------------------
# Scripts run inside namespaces
def lab_os_release(target: object) -> str:
    """The /etc/os-release a lab host of `target` says: the first release the target claims (ID and
    VERSION_ID), named as the lab's, so no capture of it passes for a real host's."""
    claimed = getattr(target, "os_release", ())
    if not claimed:
        return ""
    os_id, version = claimed[0]
    lines = [f'NAME="vnetgen lab host ({getattr(target, "name", "")})"', f"ID={os_id}"]
    if version:
        lines.append(f'VERSION_ID="{version}"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------

# PID 1 of a lab host. $1 driver copy dir, $2 real connection-driver dir, $3 libvirtd.conf, $4 name.
_HOST_INIT = r"""
set -eu
drv="$1"; conndir="$2"; conf="$3"; name="$4"
echo "$name" > /proc/sys/kernel/hostname
# A fresh sysfs: the inherited one shows the machine's interfaces, not this netns's
# (brctl show and libvirt read /sys/class/net).
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
# Private /run: hides the machine's D-Bus (a firewalld there would get our rules), pid files and
# the xtables lock. The /etc overlay's upper layer lives here too, readable from outside.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/libvirt /run/lock
# Runbooks write /etc/sysctl.d, ifcfg files, hooks, maybe backups under /var: all of it must land
# in the lab, not on this machine. Writes go to the overlays' upper layers, in the private /run.
for top in etc var; do
    mkdir -p "/run/lab/$top-upper" "/run/lab/$top-work"
    mount -t overlay overlay \
        -o "lowerdir=/$top,upperdir=/run/lab/$top-upper,workdir=/run/lab/$top-work" "/$top"
done
# libvirt's own state starts empty in every host (no default network from this machine).
# mkdir is safe here: it writes into the overlays.
for d in /etc/libvirt/qemu /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0755 tmpfs "$d"
done
# Only the network driver: the QEMU driver would fail here (no libvirt-qemu user, no KVM).
mount --bind "$drv" "$conndir"
ip link set lo up
libvirtd -d -f "$conf" -p /run/libvirt/libvirtd.pid
echo "lab-host-ready" > /run/lab/ready
trap 'exit 0' TERM INT
# Stay PID 1 and reap: daemons (libvirtd, dnsmasq) re-parent to us when they fork.
while :; do sleep 3600 & wait $! || :; done
"""

_LIBVIRTD_CONF = """\
# vnetgen lab: a private libvirtd serving networks only, reachable only inside its namespaces.
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# A lab host's NetworkManager: keyfiles only, no automatic profiles, resolv.conf left alone (the lab
# compares /etc before and after a run; DNS goes into the connection profiles all the same).
_NM_CONF = """\
[main]
plugins=keyfile
no-auto-default=*
dns=none
rc-manager=unmanaged
# NetworkManager would set the hostname from /etc/hostname, this machine's: the lab host keeps its own.
hostname-mode=none

[logging]
level=INFO
"""

_UDHCPC_SCRIPT = r"""#!/bin/sh
# busybox udhcpc event script for lab VMs: apply the lease and record it for the harness.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "${router:-}" ]; then
        ip route replace default via "${router%% *}" dev "$interface"
    fi
    if [ -n "${LAB_LEASE_FILE:-}" ]; then
        {
            echo "ip=$ip"; echo "mask=${mask:-}"; echo "subnet=${subnet:-}"
            echo "router=${router:-}"; echo "dns=${dns:-}"; echo "serverid=${serverid:-}"
            echo "lease=${lease:-}"
        } > "$LAB_LEASE_FILE.tmp" && mv "$LAB_LEASE_FILE.tmp" "$LAB_LEASE_FILE"
    fi
    ;;
esac
exit 0
"""


# ---------------------------------------------------------------------------------------------
# The lab
# ---------------------------------------------------------------------------------------------

_OPEN_LABS: "weakref.WeakSet[Lab]" = weakref.WeakSet()
_ATEXIT_REGISTERED = False
_ATEXIT_LOCK = threading.Lock()


def _close_open_labs() -> None:
    for lab in list(_OPEN_LABS):
        try:
            lab.close()
        except Exception:
            pass


class Lab:
    """Context manager owning every namespace, process and temp file of one lab.

    Nothing is created until asked; ``close()`` (or leaving the ``with``) kills every process the
    lab started, which destroys its namespaces, and with them their interfaces, mounts, iptables
    rules and dnsmasq instances; then it removes the temp dir.
    """

    def __init__(self, workdir_parent: Optional[str] = None, startup_timeout: float = 20) -> None:
        self._workdir_parent = workdir_parent
        self._workdir: Optional[str] = None
        self.startup_timeout = startup_timeout
        self.hosts: Dict[str, LabHost] = {}
        self.nodes: Dict[str, LabNode] = {}  # every named thing: hosts, VMs, router, internet
        self._router: Optional[LabRouter] = None
        self._procs: List[subprocess.Popen] = []
        self._closed = False
        self._lanport = 0

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() still tears down
        try:
            if not self._closed and (self._procs or self._workdir):
                self.close()
        except Exception:
            pass

    @property
    def workdir(self) -> str:
        """The lab's temp dir (created on first use; visible inside hosts)."""
        self._check_open()
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="vnetgen-lab-", dir=self._workdir_parent)
        return self._workdir

    def _check_open(self) -> None:
        if self._closed:
            raise LabError("lab is closed")

    def pids(self) -> List[int]:
        """Outer PIDs of the processes the lab started (namespace holders, host inits, LAN dnsmasq)."""
        return [p.pid for p in self._procs] + [h.pid for h in self.hosts.values()]

    def close(self) -> None:
        """Tear everything down; safe to call twice and after a half-built lab."""
        if self._closed:
            return
        self._closed = True
        _OPEN_LABS.discard(self)
        # PID 1 of each host namespace first: the kernel then kills everything in it (libvirtd,
        # its dnsmasq, commands still running), and the netns with its interfaces goes away.
        # Killing only unshare would do the same, but asynchronously: we could not wait for it.
        inits = [h.pid for h in self.hosts.values()]
        for pid in inits:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # unshare reaps the dead init and exits by itself: waiting for it (rather than killing
        # it) leaves no zombie behind for PID 1 to collect.
        for host in self.hosts.values():
            try:
                host.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # A dying PID-namespace init turns zombie only after the kernel has reaped every other
        # process of its namespace, so "not alive" means the whole namespace is empty.
        for pid in inits:
            _wait_until(lambda p=pid: not _alive(p), 10)
        self._procs.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- spawning --------------------------------------------------------------------------

    def _register(self) -> None:
        global _ATEXIT_REGISTERED
        _OPEN_LABS.add(self)
        with _ATEXIT_LOCK:
            if not _ATEXIT_REGISTERED:
                atexit.register(_close_open_labs)
                _ATEXIT_REGISTERED = True

    def _spawn(self, argv: Sequence[str], log: Optional[str] = None) -> subprocess.Popen:
        self._check_open()
        self._register()
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_make_preexec(),
                start_new_session=True,  # a Ctrl-C on the terminal is for pytest, not for them
                close_fds=True,
            )
        finally:
            if log:
                out.close()
        self._procs.append(proc)
        return proc

    def _claim_name(self, name: str, what: str) -> str:
        _check_name(name, what)
        if name in self.nodes:
            raise LabError(f"name {name!r} already used by {self.nodes[name]!r}")
        return name

    def _sleeper(self, name: str, cls=LabNode, **kw) -> LabNode:
        """A process in a new netns doing nothing but holding it open."""
        proc = self._spawn(["unshare", "-n", "--", "sleep", "infinity"])
        # Until unshare(2) has run, the process is still in *our* netns: wait for the switch,
        # because anything entered before it would land on this machine's network.
        if not _wait_until(lambda: in_private_netns(proc.pid) or proc.poll() is not None, 10):
            raise LabError(f"{name}: netns holder did not start")
        if proc.poll() is not None:
            raise LabError(f"{name}: `unshare -n` failed (exit {proc.returncode})")
        node = cls(self, name, proc.pid, **kw)
        node.assert_private()
        node.ip("link", "set", "lo", "up")
        self.nodes[name] = node
        return node

    def _driver_copy(self) -> str:
        # A directory holding only the network driver, bind-mounted over libvirt's driver dir.
        # A copy, not a symlink: the link would point into the very directory we cover.
        dst = os.path.join(self.workdir, "connection-driver")
        if not os.path.isdir(dst):
            src = _connection_driver_dir()
            if src is None:
                raise LabError(f"{_NETWORK_DRIVER} not found")
            os.makedirs(dst)
            shutil.copy2(os.path.join(src, _NETWORK_DRIVER), dst)
        return dst

    def _udhcpc_script(self) -> str:
        path = os.path.join(self.workdir, "udhcpc.sh")
        if not os.path.exists(path):
            with open(path, "w") as fh:
                fh.write(_UDHCPC_SCRIPT)
            os.chmod(path, 0o755)
        return path

    # -- hosts -----------------------------------------------------------------------------

    def host(self, name: str) -> LabHost:
        """Start a lab host running its own libvirtd; returns once virsh answers."""
        self._claim_name(name, "host")
        t0 = time.monotonic()
        hostdir = os.path.join(self.workdir, "hosts", name)
        os.makedirs(hostdir)
        conf = os.path.join(hostdir, "libvirtd.conf")
        with open(conf, "w") as fh:
            fh.write(_LIBVIRTD_CONF)
        init = os.path.join(hostdir, "init.sh")
        with open(init, "w") as fh:
            fh.write(_HOST_INIT)
        conndir = _connection_driver_dir()
        log = os.path.join(hostdir, "init.log")
        proc = self._spawn(
            [
                "unshare", "-n", "-m", "-p", "-u", "--fork", "--mount-proc", "--propagation", "private",
                "--kill-child",  # if unshare dies, so does PID 1 and the whole namespace
                "--", "sh", init, self._driver_copy(), conndir, conf, name,
            ],
            log=log,
        )

        def init_log() -> str:
            try:
                with open(log, errors="replace") as fh:
                    return fh.read()[-3000:]
            except OSError:
                return ""

        # unshare forks PID 1 of the new PID namespace; that child is what we enter.
        children: List[int] = []

        def forked() -> bool:
            children[:] = _children(proc.pid)
            return bool(children) or proc.poll() is not None

        _wait_until(forked, self.startup_timeout)
        if not children:
            raise LabError(f"host {name}: unshare did not start (exit {proc.poll()})\n{init_log()}")
        host = LabHost(self, name, children[0], proc, hostdir)
        self.nodes[name] = host
        self.hosts[name] = host
        host.assert_private()
        sock = host.root_path("/run/libvirt/libvirt-sock")
        if not _wait_until(lambda: os.path.exists(sock) or proc.poll() is not None, self.startup_timeout):
            raise LabError(f"host {name}: libvirtd socket did not appear\n{init_log()}\n{host.libvirtd_log()}")
        if proc.poll() is not None:
            raise LabError(f"host {name}: init failed (exit {proc.returncode})\n{init_log()}")
        # The socket exists before libvirtd's drivers are up; a first call waits for them.
        host.virsh("-q", "net-list", "--all", timeout=self.startup_timeout)
        host.startup_seconds = time.monotonic() - t0
        return host

    # -- wiring ----------------------------------------------------------------------------

    def link(self, a: LabNode, ifname_a: str, b: LabNode, ifname_b: str,
             mac_a: Optional[str] = None, mac_b: Optional[str] = None) -> Tuple[str, str]:
        """A cable: a veth pair with ``ifname_a`` in ``a`` and ``ifname_b`` in ``b``, both up."""
        self._check_open()
        _check_ifname(ifname_a)
        _check_ifname(ifname_b)
        a.assert_private()
        b.assert_private()
        mac_a = mac_a or _derive_mac("link", a.name, ifname_a)
        mac_b = mac_b or _derive_mac("link", b.name, ifname_b)
        # Created inside a's netns with the peer placed straight into b's: no interface ever
        # exists in this machine's own netns, not even for a moment.
        a.ip("link", "add", ifname_a, "address", mac_a, "type", "veth",
             "peer", "name", ifname_b, "address", mac_b, "netns", str(b.pid))
        a.ip("link", "set", ifname_a, "up")
        b.ip("link", "set", ifname_b, "up")
        return ifname_a, ifname_b

    def router(self, name: str = "router", router_ip: str = "203.0.113.1/24",
               internet_ip: str = "203.0.113.10/24", internet_name: str = "internet") -> LabRouter:
        """The upstream router and an "internet" host behind it (created once; later calls return it).

        Defaults come from TEST-NET-3 (RFC 5737): nothing here can reach a real network.
        """
        if self._router is not None:
            return self._router
        self._claim_name(name, "router")
        self._claim_name(internet_name, "internet")
        rtr = self._sleeper(name, LabRouter)
        assert isinstance(rtr, LabRouter)
        inet = self._sleeper(internet_name)
        r_if = ipaddress.ip_interface(router_ip)
        i_if = ipaddress.ip_interface(internet_ip)
        self.link(rtr, "wan0", inet, "eth0")
        rtr.ip("addr", "add", str(r_if), "dev", "wan0")
        inet.ip("addr", "add", str(i_if), "dev", "eth0")
        inet.ip("route", "replace", "default", "via", str(r_if.ip))
        # /proc/sys/net is per netns: this enables forwarding in the router only.
        rtr.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], timeout=10)
        rtr.internet = inet
        rtr.internet_ip = str(i_if.ip)
        self._router = rtr
        return rtr

    def lan(self, name: str = "lan0", subnet: str = "10.10.10.0/24", dhcp: bool = True,
            gateway_ip: Optional[str] = None, dhcp_range: Optional[Tuple[str, str]] = None) -> LabLan:
        """An upstream LAN: a bridge on the router holding the gateway address, plus optional DHCP."""
        _check_ifname(name)
        rtr = self.router()
        if name in rtr.lans or name in ("wan0", "lo"):
            raise LabError(f"LAN name {name!r} already in use on the router")
        net = ipaddress.IPv4Network(subnet, strict=False)
        gw = ipaddress.IPv4Address(gateway_ip) if gateway_ip else net.network_address + 1
        if gw not in net:
            raise ValueError(f"gateway {gw} outside {net}")
        rng: Optional[Tuple[str, str]] = None
        if dhcp:
            if dhcp_range:
                rng = (str(ipaddress.IPv4Address(dhcp_range[0])), str(ipaddress.IPv4Address(dhcp_range[1])))
            else:
                n = net.num_addresses
                lo, hi = (100, 199) if n >= 256 else (n // 2, n - 2)
                rng = (str(net.network_address + lo), str(net.network_address + hi))
        # STP off and no forward delay: a plain switch, ports forward at once.
        rtr.ip("link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        rtr.ip("addr", "add", f"{gw}/{net.prefixlen}", "dev", name)
        rtr.ip("link", "set", name, "up")
        leasefile = os.path.join(self.workdir, f"lan-{name}.leases")
        lan = LabLan(name, rtr, net, str(gw), rng, leasefile)
        rtr.lans[name] = lan
        if rng:
            self._start_lan_dhcp(lan)
        return lan

    def _start_lan_dhcp(self, lan: LabLan) -> None:
        assert lan.dhcp_range
        log = os.path.join(self.workdir, f"lan-{lan.name}.log")
        open(lan.leasefile, "a").close()
        lan.router.assert_private()
        argv = lan.router._nsenter_net_only() + [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--port=0",  # no DNS: only DHCP is needed, and no port 53 clash with anything
            f"--interface={lan.name}", "--bind-interfaces", "--except-interface=lo",
            f"--dhcp-range={lan.dhcp_range[0]},{lan.dhcp_range[1]},{lan.subnet.netmask},1h",
            f"--dhcp-option=option:router,{lan.gateway_ip}",
            "--dhcp-authoritative",
            "--no-ping",  # our upstream knows its LAN: skip the 3 s "address in use?" probe
            # Every file in the lab's workdir: the defaults (/var/lib/misc, /run) are the machine's.
            f"--dhcp-leasefile={lan.leasefile}",
            f"--pid-file={os.path.join(self.workdir, f'lan-{lan.name}.pid')}",
            f"--log-facility={log}", "--log-dhcp",
            "--user=root", "--group=root",  # workdir files stay writable after dropping privileges
        ]
        proc = self._spawn(argv)

        def ready() -> bool:
            try:
                with open(log, errors="replace") as fh:
                    return "DHCP, IP range" in fh.read()
            except OSError:
                return False

        if not _wait_until(lambda: ready() or proc.poll() is not None, 10) or proc.poll() is not None:
            text = open(log, errors="replace").read() if os.path.exists(log) else ""
            raise LabError(f"LAN {lan.name}: dnsmasq did not start\n{text[-2000:]}")

    def nic(self, host: LabNode, ifname: str, lan: LabLan, mac: Optional[str] = None,
            ip: Optional[str] = None, gateway: Optional[str] = None, up: bool = True) -> str:
        """Plug a host NIC ``ifname`` into ``lan``; optionally give it an address and default route."""
        self._check_open()
        _check_ifname(ifname)
        self._lanport += 1
        port = f"lanp{self._lanport}"
        self.link(host, ifname, lan.router, port, mac_a=mac or _derive_mac("nic", host.name, ifname))
        lan.router.ip("link", "set", port, "master", lan.bridge, "up")
        lan.ports += 1
        if ip:
            host.ip("addr", "add", str(ipaddress.ip_interface(ip)), "dev", ifname)
        if not up:
            host.ip("link", "set", ifname, "down")
        if gateway:
            host.ip("route", "replace", "default", "via", str(ipaddress.ip_address(gateway)), "dev", ifname)
        return ifname

    # -- VMs -------------------------------------------------------------------------------

    def vm(self, host: LabHost, name: str, bridge: str, mac: Optional[str] = None) -> LabVm:
        """A guest plugged into ``bridge`` of ``host`` like libvirt does it: vnetN on the host, eth0 inside."""
        self._claim_name(name, "vm")
        host.assert_private()
        mac = (mac or _derive_mac("vm", host.name, name)).lower()
        if not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", mac):
            raise ValueError(f"invalid MAC {mac!r}")
        holder = self._sleeper(name)
        ifname = host._next_vnet()
        # libvirt gives the tap the guest MAC with a 0xfe first byte, which keeps the bridge's own
        # (lowest) MAC, and so its bridge id, unchanged.
        tap_mac = "fe" + mac[2:]
        try:
            host.ip("link", "add", ifname, "address", tap_mac, "type", "veth",
                    "peer", "name", "eth0", "address", mac, "netns", str(holder.pid))
            host.ip("link", "set", ifname, "master", bridge, "up")
        except LabCommandError:
            host.ip("link", "del", ifname, check=False)
            del self.nodes[name]
            raise
        vm = LabVm(self, name, holder.pid, host, bridge, mac, ifname)
        self.nodes[name] = vm
        host.vms.append(vm)
        # Up now, so the bridge port starts its STP listening/learning while other work goes on.
        vm.ip("link", "set", "eth0", "up")
        return vm

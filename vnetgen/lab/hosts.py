"""A lab host: a simulated KVM host in private net/mount/PID/UTS namespaces running its own libvirtd
(and a real NetworkManager when its target needs one); the init script and configuration it starts from."""

from __future__ import annotations

import os
import subprocess
from typing import Dict, List, Mapping, Optional

from .errors import LabError
from .nodes import LabNode, Owner, check_ifname
from .processes import Cmd, run_command, shell_argv, wait_until

# Every libvirt call inside a lab host goes to the host's own libvirtd, which serves networks only.
LIBVIRT_URI = "network:///system"


class LabHost(LabNode):
    """A simulated KVM host: private net/mount/PID/UTS namespaces running its own libvirtd."""

    kind = "host"

    def __init__(self, lab: Owner, name: str, pid: int, proc: subprocess.Popen, hostdir: str) -> None:
        super().__init__(lab, name, pid)
        self.proc = proc  # the unshare process; self.pid is its child, PID 1 of the namespace
        self.hostdir = hostdir
        self.vms: List[LabNode] = []  # its guests (guests.LabVm), as Lab.vm plugs them in
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
        argv = self._nsenter() + ["env", "-C", cwd] + shell_argv(cmd)
        return run_command(argv, env=self._env(env), check=check, timeout=timeout, input=input)

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

        if not wait_until(running, timeout, interval=0.1):
            try:
                with open(log, errors="replace") as fh:
                    tail = fh.read()[-3000:]
            except OSError:
                tail = ""
            raise LabError(f"host {self.name}: NetworkManager did not start\n{tail}")

    def nm_adopt(self, ifname: str, timeout: float = 30) -> None:
        """Give `ifname` a NetworkManager profile holding its current IPv4 addresses and default route,
        as an installer leaves a RHEL host ("System IFNAME"), and activate it."""
        check_ifname(ifname)
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


# PID 1 of a lab host. $1 driver copy dir, $2 real connection-driver dir, $3 libvirtd.conf, $4 name.
HOST_INIT = r"""
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

LIBVIRTD_CONF = """\
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

"""The lab itself: one context manager owning every namespace, process and temp file; it builds
hosts, the router and its LANs, cables and VMs, and tears everything down."""

from __future__ import annotations

import atexit
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
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import LabCommandError, LabError
from .guests import LabVm
from .hosts import HOST_INIT, LIBVIRTD_CONF, LabHost
from .namespaces import NETWORK_DRIVER, connection_driver_dir, in_private_netns
from .nodes import LabNode, check_ifname
from .processes import alive, child_pids, make_preexec, wait_until
from .upstream import LabLan, LabRouter

# Lab object names end up in file names and hostnames.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid {what} name {name!r}")
    return name


def _derive_mac(*parts: str) -> str:
    # Deterministic, locally administered, in libvirt's 52:54:00 prefix like real guests.
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])


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
        self._macvtap = 0

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
            wait_until(lambda p=pid: not alive(p), 10)
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
                preexec_fn=make_preexec(),
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
        if not wait_until(lambda: in_private_netns(proc.pid) or proc.poll() is not None, 10):
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
            src = connection_driver_dir()
            if src is None:
                raise LabError(f"{NETWORK_DRIVER} not found")
            os.makedirs(dst)
            shutil.copy2(os.path.join(src, NETWORK_DRIVER), dst)
        return dst

    # -- hosts -----------------------------------------------------------------------------

    def host(self, name: str) -> LabHost:
        """Start a lab host running its own libvirtd; returns once virsh answers."""
        self._claim_name(name, "host")
        t0 = time.monotonic()
        hostdir = os.path.join(self.workdir, "hosts", name)
        os.makedirs(hostdir)
        conf = os.path.join(hostdir, "libvirtd.conf")
        with open(conf, "w") as fh:
            fh.write(LIBVIRTD_CONF)
        init = os.path.join(hostdir, "init.sh")
        with open(init, "w") as fh:
            fh.write(HOST_INIT)
        conndir = connection_driver_dir()
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
            children[:] = child_pids(proc.pid)
            return bool(children) or proc.poll() is not None

        wait_until(forked, self.startup_timeout)
        if not children:
            raise LabError(f"host {name}: unshare did not start (exit {proc.poll()})\n{init_log()}")
        host = LabHost(self, name, children[0], proc, hostdir)
        self.nodes[name] = host
        self.hosts[name] = host
        host.assert_private()
        sock = host.root_path("/run/libvirt/libvirt-sock")
        if not wait_until(lambda: os.path.exists(sock) or proc.poll() is not None, self.startup_timeout):
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
        check_ifname(ifname_a)
        check_ifname(ifname_b)
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
        check_ifname(name)
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

        if not wait_until(lambda: ready() or proc.poll() is not None, 10) or proc.poll() is not None:
            text = open(log, errors="replace").read() if os.path.exists(log) else ""
            raise LabError(f"LAN {lan.name}: dnsmasq did not start\n{text[-2000:]}")

    def nic(self, host: LabNode, ifname: str, lan: LabLan, mac: Optional[str] = None,
            ip: Optional[str] = None, gateway: Optional[str] = None, up: bool = True) -> str:
        """Plug a host NIC ``ifname`` into ``lan``; optionally give it an address and default route."""
        self._check_open()
        check_ifname(ifname)
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
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
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

    def vm_direct(self, host: LabHost, name: str, dev: str, mode: str = "bridge", mac: Optional[str] = None) -> LabVm:
        """A guest on host NIC ``dev`` as libvirt's direct mode puts one: where libvirt's QEMU driver
        creates a macvtap device of ``dev`` in ``mode`` for QEMU to read through its tap character
        device, the lab's guest (a namespace, not QEMU) gets a macvlan device of ``dev`` in ``mode``
        (macvtap is a macvlan with that character device added), moved into its namespace as eth0."""
        self._claim_name(name, "vm")
        check_ifname(dev)
        if mode not in ("bridge", "vepa", "private", "passthru"):
            raise ValueError(f"invalid macvlan mode {mode!r}")
        host.assert_private()
        mac = (mac or _derive_mac("vm", host.name, name)).lower()
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
            raise ValueError(f"invalid MAC {mac!r}")
        holder = self._sleeper(name)
        self._macvtap += 1
        ifname = f"macvtap{self._macvtap}"   # its name in the host only until it moves
        try:
            host.ip("link", "add", "link", dev, "name", ifname, "address", mac, "type", "macvlan", "mode", mode)
            host.ip("link", "set", ifname, "netns", str(holder.pid))
        except LabCommandError:
            host.ip("link", "del", ifname, check=False)
            del self.nodes[name]
            raise
        holder.ip("link", "set", ifname, "name", "eth0")
        vm = LabVm(self, name, holder.pid, host, dev, mac, ifname)
        self.nodes[name] = vm
        vm.ip("link", "set", "eth0", "up")
        return vm

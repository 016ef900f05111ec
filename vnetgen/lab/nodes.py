"""A lab node: a private network namespace held open by a process, and the commands run inside it."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Dict, List, Mapping, Optional, Protocol

from .errors import NotPrivateError
from .namespaces import in_private_netns, netns_inode
from .processes import Cmd, alive, run_command, shell_argv

# Names the kernel accepts for an interface: at most 15 bytes, no '/', ':' or whitespace.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def check_ifname(name: str) -> str:
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"invalid interface name {name!r}")
    return name


class Owner(Protocol):
    """What a node needs of the lab that owns it (world.Lab): a directory for its files."""

    @property
    def workdir(self) -> str: ...


class LabNode:
    """A bare network namespace held open by a sleeper process (router, internet host, VM)."""

    kind = "node"

    def __init__(self, lab: Owner, name: str, pid: int) -> None:
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
        if not alive(self.pid):
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
        return run_command(
            self._nsenter() + shell_argv(cmd),
            env=self._env(env),
            check=check,
            timeout=timeout,
            input=input,
            cwd=cwd,
        )

    def ip(self, *args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
        """Run ``ip ARGS`` in this node's netns (netns only: outer /proc, so PIDs are ours)."""
        self.assert_private()
        return run_command(self._nsenter_net_only() + ["ip", *args], check=check, timeout=timeout)

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

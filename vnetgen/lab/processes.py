"""Running commands for the lab: a timeout that kills what nsenter forked, holders that die with
their owner, and waiting for a state (never for a time)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from typing import List, Mapping, Optional, Sequence, Union

from .errors import LabCommandError

Cmd = Union[str, Sequence[str]]


@functools.lru_cache(maxsize=None)
def _prctl():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl


def make_preexec():
    # PR_SET_PDEATHSIG: if the Python process dies hard (SIGKILL, crash), the kernel kills our
    # namespace holders, and with them every namespace, so nothing outlives a crashed test run.
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def child_pids(pid: int) -> List[int]:
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


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def run_command(
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


def shell_argv(cmd: Cmd) -> List[str]:
    if isinstance(cmd, str):
        return ["bash", "-c", cmd]
    argv = [str(a) for a in cmd]
    if not argv:
        raise ValueError("empty command")
    return argv


def wait_until(pred, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

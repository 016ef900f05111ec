"""Lab tests this machine's kernel cannot run, run inside a throw-away QEMU VM (test-only, not vnetgen).

The VM boots Debian's own kernel (the `linux-image-amd64` package, unpacked by tests/run.sh into
tests/vm/cache/, never installed) from an initramfs built here: a static busybox, the kernel modules
the lab needs (802.1Q, macvlan/macvtap, bridge, veth, netfilter, 9p, overlay) and tests/vm/init.sh.
The init mounts this machine's / read-only over virtio-9p, as virtme-ng does, gives the VM writable
tmpfs and overlays where the lab writes, switches root into it and runs pytest on the given lab tests with
this worktree's .venv (the VM sees the same paths), writing junit.xml and the pytest log into a
second, writable 9p share: the only thing the VM can change outside itself. It has no network
device (`-nic none`). Under TCG (this machine's /dev/kvm does not work), so it is slow: see
tests/test_vm_lab.py for the times.
"""
from __future__ import annotations

import glob
import io
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "tests" / "vm" / "cache"
INIT = ROOT / "tests" / "vm" / "init.sh"
QEMU = "qemu-system-x86_64"

# What the lab needs of the kernel beyond what Debian builds in; their dependencies come along.
MODULES = (
    "9p", "9pnet_virtio", "virtio_pci", "overlay",   # this machine's / over virtio-9p, overlays
    "8021q", "macvlan", "macvtap", "tun", "bridge", "veth", "dummy",
    # libvirt's firewall through iptables-nft (Debian 12's default iptables); crc32c first: libcrc32c
    # (nf_tables needs it) asks the crypto API for it, which would need a modprobe the VM has not
    "crc32c_generic", "nf_tables", "nft_compat", "nft_chain_nat", "nft_ct", "nft_masq", "nft_reject_inet",
    "nf_nat", "nf_conntrack", "xt_conntrack", "xt_MASQUERADE", "xt_CHECKSUM", "xt_comment",
    "xt_tcpudp", "xt_addrtype", "xt_mark", "xt_state", "ipt_REJECT", "ip6t_REJECT",
    "iptable_filter", "iptable_nat", "iptable_mangle", "ip6table_filter", "ip6table_nat", "ip6table_mangle",
)


def kernel() -> Tuple[Optional[Path], Optional[Path], str]:
    """(vmlinuz, its modules directory, why not) from the cache tests/run.sh fills."""
    images = sorted(glob.glob(str(CACHE / "linux" / "boot" / "vmlinuz-*")))
    if not images:
        return None, None, f"no Debian kernel in {CACHE}/linux (as root, tests/run.sh fetches linux-image-amd64 there)"
    image = Path(images[-1])
    moddir = CACHE / "linux" / "lib" / "modules" / image.name[len("vmlinuz-"):]
    if not moddir.is_dir():
        return None, None, f"{image} has no modules in {moddir}"
    return image, moddir, ""


def busybox() -> Optional[Path]:
    path = CACHE / "busybox" / "bin" / "busybox"
    return path if path.is_file() else None


def available() -> Tuple[bool, str]:
    """Whether this machine can boot the VM, and if not, why."""
    if shutil.which(QEMU) is None:
        return False, f"needs {QEMU} (package qemu-system-x86; tests/run.sh installs it as root)"
    image, _, why = kernel()
    if image is None:
        return False, why
    if busybox() is None:
        return False, f"no static busybox in {CACHE}/busybox (tests/run.sh unpacks busybox-static there)"
    return True, "ok"


# --- modules --------------------------------------------------------------------------------------

def _modname(path: str) -> str:
    base = os.path.basename(path)
    return base.split(".ko", 1)[0].replace("-", "_")


def _read_ko(path: str) -> bytes:
    if path.endswith(".xz"):
        import lzma
        return lzma.decompress(Path(path).read_bytes())
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dcq", path], capture_output=True, check=True).stdout
    if path.endswith(".gz"):
        import gzip
        return gzip.decompress(Path(path).read_bytes())
    return Path(path).read_bytes()


def _depends(blob: bytes) -> List[str]:
    """The `depends=` of a module's .modinfo section (what depmod reads)."""
    at = blob.find(b"\0depends=")
    if at < 0:
        return []
    value = blob[at + len(b"\0depends="):blob.index(b"\0", at + 1)].decode()
    return [name.replace("-", "_") for name in value.split(",") if name]


def resolve_modules(moddir: Path, wanted: Iterable[str]) -> List[Tuple[str, bytes]]:
    """(name, uncompressed .ko) of `wanted` and their dependencies, each after what it depends on.
    The Debian package carries no modules.dep (depmod writes it on install): read each .modinfo."""
    paths: Dict[str, str] = {}
    for path in glob.glob(str(moddir / "kernel" / "**" / "*.ko*"), recursive=True):
        paths.setdefault(_modname(path), path)
    builtin = set()
    if (moddir / "modules.builtin").is_file():
        builtin = {_modname(line) for line in (moddir / "modules.builtin").read_text().split()}
    order: List[Tuple[str, bytes]] = []
    seen = set()

    def visit(name: str, chain: Tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name not in paths:
            raise FileNotFoundError(f"module {name} (needed by {' <- '.join(chain) or 'the VM'}) not in {moddir}")
        seen.add(name)
        blob = _read_ko(paths[name])
        for dep in _depends(blob):
            visit(dep, chain + (name,))
        order.append((name, blob))

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


# --- initramfs ------------------------------------------------------------------------------------

def _cpio_entry(out: io.BufferedIOBase, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """One member of a newc cpio archive (the format the kernel unpacks an initramfs from)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(out: Path, run_script: str) -> List[str]:
    """Write the VM's initramfs (uncompressed newc cpio: no gunzip under emulation) to `out`;
    returns the modules it loads, in order. `run_script` is what init runs once switched into this machine's /."""
    image, moddir, why = kernel()
    bb = busybox()
    if image is None or moddir is None or bb is None:
        raise FileNotFoundError(why or "no static busybox")
    modules = resolve_modules(moddir, MODULES)
    dirs = ("bin", "dev", "proc", "sys", "modules", "newroot")
    with open(out, "wb") as fh:
        ino = 1
        for d in dirs:
            _cpio_entry(fh, ino, d, stat.S_IFDIR | 0o755)
            ino += 1
        for name, data, mode in (
            ("bin/busybox", bb.read_bytes(), 0o755),
            ("init", INIT.read_bytes(), 0o755),
            ("run.sh", run_script.encode(), 0o755),
            ("modules.list", "".join(f"{n}\n" for n, _ in modules).encode(), 0o644),
        ) + tuple((f"modules/{n}.ko", blob, 0o644) for n, blob in modules):
            _cpio_entry(fh, ino, name, stat.S_IFREG | mode, data)
            ino += 1
        _cpio_entry(fh, 0, "TRAILER!!!", 0)
    return [n for n, _ in modules]


# --- the run ---------------------------------------------------------------------------------------

def inner_script(tests: Iterable[str], results: str = "/run/vmlab") -> str:
    """What init runs once switched into this machine's /: pytest on `tests` with this worktree's .venv."""
    python = ROOT / ".venv" / "bin" / "python"
    # Only the plugin the suite's conftest needs (syrupy): under emulation hypothesis's plugin alone
    # cost 17 s (it imports hypothesis), and every plugin's modules are assertion-rewritten anew on
    # each run, since no cache can be written on a read-only /.
    argv = [str(python), "-m", "pytest", "-p", "syrupy", "-p", "no:cacheprovider", "-q", "-rA", "--durations=0",
            f"--junitxml={results}/junit.xml", *tests]
    return (
        "#!/bin/sh\n"
        "# runs in this machine's / (read-only; tmpfs and overlays where the lab writes)\n"
        f"cd {shlex.quote(str(ROOT))} || exit 97\n"
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8\n"
        "export CI=true PYTHONDONTWRITEBYTECODE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 TMPDIR=/tmp\n"
        f"{shlex.join(argv)} > {results}/pytest.log 2>&1\n"
        f"echo $? > {results}/exitcode\n"
    )


def _opt(path: Path) -> str:
    return str(path).replace(",", ",,")   # QEMU's escape for a comma inside an option value


def qemu_argv(initramfs: Path, results: Path, console: Path, memory: int = 1024, cpus: int = 1) -> List[str]:
    """QEMU's command line. TCG unless VNETGEN_VM_ACCEL says otherwise (this machine's /dev/kvm
    exists but a KVM guest never prints a line); one vCPU: with two, multi-threaded TCG ran the VLAN
    lab test in 150-200 s instead of 80 s."""
    image, _, why = kernel()
    if image is None:
        raise FileNotFoundError(why)
    return [
        QEMU, "-accel", os.environ.get("VNETGEN_VM_ACCEL", "tcg"), "-cpu", "max", "-m", str(memory), "-smp", str(cpus),
        "-display", "none", "-monitor", "none", "-serial", f"file:{_opt(console)}",
        "-no-reboot", "-nic", "none",
        "-kernel", str(image), "-initrd", str(initramfs),
        "-append", "console=ttyS0 panic=-1 quiet mitigations=off",
        # this machine's / read-only, and the one directory the VM may write
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={_opt(results)},mount_tag=results,security_model=none",
    ]


def start(tests: Iterable[str], workdir: Path, memory: int = 1024, cpus: int = 1) -> subprocess.Popen:
    """Boot a VM running `tests` (results in workdir/results, the console in workdir/console.log)."""
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    initramfs = workdir / "initramfs.cpio"
    build_initramfs(initramfs, inner_script(tests))
    argv = qemu_argv(initramfs, results, workdir / "console.log", memory, cpus)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(vm: subprocess.Popen, timeout: float) -> Tuple[Optional[int], str]:
    """(QEMU's exit status, its own output) once the VM powered off; None if killed at `timeout`."""
    try:
        out, _ = vm.communicate(timeout=timeout)
        return vm.returncode, out
    except subprocess.TimeoutExpired:
        vm.kill()
        out, _ = vm.communicate()
        return None, out


if __name__ == "__main__":   # python tests/vmlab.py TEST... : a manual run, results in a temp dir
    import tempfile
    import time

    where = Path(tempfile.mkdtemp(prefix="vmlab-"))
    t0 = time.monotonic()
    status, _ = finish(start(sys.argv[1:], where), timeout=900)
    print(f"qemu exit {status} after {time.monotonic() - t0:.1f} s; results in {where}")

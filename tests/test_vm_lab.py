"""Lab proofs that need kernel features this machine's kernel lacks, run for real in a throw-away QEMU
VM booting Debian's own kernel (tests/vmlab.py, tests/vm/init.sh): this machine's / shared read-only
over virtio-9p, tmpfs and overlays where the lab writes, no network device. Inside, the lab tests
run as everywhere else (private namespaces, each checked before a runbook runs), with CI=true so a
missing tool fails instead of skipping; here their junit.xml must say PASSED, not skipped.

- tests/test_vlanports_lab.py: VLAN sub-interfaces (802.1Q) as bridge ports between two lab hosts
  (this machine's kernel has no 802.1Q: there it skips). More files may join INNER: each runs in a
  VM of its own, side by side.

Under TCG (/dev/kvm does not work here) a process start costs ~100 ms and Python's ~1 s, hence the
generous timeout."""
from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import vmlab
from conftest import IN_CI, require_root

pytestmark = pytest.mark.lab

INNER = {
    "tests/test_vlanports_lab.py": ("test_vlan_ports_carry_tagged_frames_between_two_hosts",),
}
TIMEOUT = int(os.environ.get("VNETGEN_VM_TIMEOUT", "900"))


def _tail(path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path.name} missing)"


def _outcomes(junit) -> dict:
    """{(classname, name): passed | failure | error | skipped} of a junit.xml."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        verdicts = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[(case.get("classname"), case.get("name"))] = verdicts[0] if verdicts else "passed"
    return outcomes


def test_vlan_lab_proof_passes_in_a_vm_with_debians_kernel(tmp_path):
    require_root()
    ok, why = vmlab.available()
    if not ok:
        if IN_CI:
            pytest.fail(f"the VM lab cannot run: {why} — CI must have it", pytrace=False)
        pytest.skip(f"the VM lab cannot run: {why}")
    # One VM per test file, side by side: each lab test runs one command after another, so a VM
    # uses about one core, and two VMs take the time of the longer test instead of the sum.
    t0 = time.monotonic()
    vms = {path: vmlab.start([path], tmp_path / Path(path).stem) for path in INNER}
    deadline = t0 + TIMEOUT
    ends = {path: vmlab.finish(vm, max(1.0, deadline - time.monotonic())) for path, vm in vms.items()}
    took = time.monotonic() - t0
    for path, names in INNER.items():
        workdir = tmp_path / Path(path).stem
        results = workdir / "results"
        status, qemu_out = ends[path]
        shown = (f"VM of {path}: qemu exit {status} ({'killed at the timeout' if status is None else 'powered off'}),"
                 f" {took:.0f} s for all\n{qemu_out[-2000:]}\n--- inner pytest ---\n{_tail(results / 'pytest.log')}"
                 f"\n--- console ---\n{_tail(workdir / 'console.log')}")
        assert (results / "exitcode").is_file(), "the VM never finished the inner run\n" + shown
        assert (results / "junit.xml").is_file(), shown
        outcomes = _outcomes(results / "junit.xml")
        module = path[:-len(".py")].replace("/", ".")
        for name in names:
            assert outcomes.get((module, name)) == "passed", f"{path}::{name}: {outcomes.get((module, name))}\n{shown}"
        assert (results / "exitcode").read_text().strip() == "0", shown
    print(f"VM lab: {len(INNER)} VMs, their tests passed in {took:.0f} s")

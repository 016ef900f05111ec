"""End to end in a lab host (vnetgen.lab): define a profile's network for real, capture, audit, perturb, audit, fix."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ROOT
from vnetgen.audit import audit_captures, audit_live

pytestmark = pytest.mark.lab

# nat-default, plus the seed's trunk NIC as a port of virbr0 (so that a port can go missing).
TRUNK = (("networks:\n  default:\n", "nics:\n  ens2: {}\nnetworks:\n  default:\n    ports: [ens2]\n"),)


def variant(tmp_path: Path) -> Path:
    text = (ROOT / "profiles" / "nat-default.yaml").read_text()
    for old, new in TRUNK:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / "nat-default.yaml"
    path.write_text(text)
    return path


def lab_runner(host):
    """audit_live's runner: each command inside the lab host (its virsh talks to its own libvirtd)."""
    def run(argv, timeout):
        done = host.run(list(argv), check=False, timeout=timeout)
        return done.returncode, done.stdout.encode(), done.stderr.encode()
    return run


def kinds(report, host="caldera02"):
    return [(d["kind"], d["object"]) for d in report["hosts"][host]["drift"]]


def test_capture_audit_perturb_audit_fix(lab, tmp_path, build_bundle):
    from vnetgen.bundle import write

    profile = variant(tmp_path)
    bundle = tmp_path / "bundle"
    write(build_bundle(profile), str(bundle))
    hostdir = str(bundle / "caldera02")
    host = lab.host("caldera02")
    host.ip("link", "add", "ens2", "type", "veth", "peer", "name", "ens2-peer")
    host.ip("link", "set", "ens2", "up")
    for command in ("virsh net-define networks/default.xml", "virsh net-start default",
                    "virsh net-autostart default", "brctl addif virbr0 ens2", "sysctl -qw net.ipv4.ip_forward=1"):
        host.run(command, cwd=hostdir)

    def capture_and_audit(name: str):
        captures = tmp_path / name
        host.run(["bash", os.path.join(hostdir, "capture.sh"), str(captures)])
        report = audit_captures(profile, captures)
        live = audit_live(profile, "caldera02", runner=lab_runner(host))
        # Live and captured agree on the drift (not_audited names the file or the command).
        assert live["hosts"]["caldera02"]["drift"] == report["hosts"]["caldera02"]["drift"]
        return report

    report = capture_and_audit("in-sync")
    assert report["in_sync"] and kinds(report) == [], report
    # The lab's libvirtd has no domain driver: the VMs are not audited, and the report says so.
    assert report["hosts"]["caldera02"]["not_audited"] == ["VMs: virsh-list.txt not captured"]

    old_range, new_range = ("<range start='192.168.122.2' end='192.168.122.254'/>",
                            "<range start='192.168.122.2' end='192.168.122.99'/>")
    host.run(["brctl", "delif", "virbr0", "ens2"])
    host.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    host.run(["virsh", "net-update", "default", "delete", "ip-dhcp-range", old_range, "--live", "--config"])
    host.run(["virsh", "net-update", "default", "add", "ip-dhcp-range", new_range, "--live", "--config"])
    report = capture_and_audit("perturbed")
    assert kinds(report) == [("dhcp-range", "network/default"), ("port-missing", "bridge/virbr0"),
                             ("ip-forward", "host")]

    host.run("virsh net-destroy default")
    report = capture_and_audit("stopped")
    # A network that does not run has no bridge: its ports are not judged until it is started. It is
    # started after its configuration is fixed, so that it starts with the corrected definition.
    assert kinds(report) == [("dhcp-range", "network/default"), ("network-inactive", "network/default"),
                             ("ip-forward", "host")]

    # The printed fixes, run as printed in the bundle's host directory, bring the host back.
    rounds = 0
    while report["hosts"]["caldera02"]["drift"] and rounds < 3:
        for item in report["hosts"]["caldera02"]["drift"]:
            host.run(item["fix"], cwd=hostdir)
        rounds += 1
        report = capture_and_audit(f"fixed-{rounds}")
    # Two rounds: ens2's absence shows only once the network runs again.
    assert report["in_sync"] and kinds(report) == [] and rounds == 2, report

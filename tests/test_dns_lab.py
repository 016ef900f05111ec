"""A DNS host entry resolved by the network's dnsmasq from a VM, for real (issue 14): the runbook
defines a NAT network with `domain: example.lan` and a DNS host `db` on a static lease's address; a lab
VM takes that lease and asks the network's dnsmasq (busybox nslookup against the bridge address) for
`db` and `db.example.lan`; the audit is in sync; a DNS host removed by hand (`virsh net-update … delete
dns-host`) is drift `dns-host` and no longer resolves; its printed fix brings it back live; rollback.sh
restores the host. Only namespaces the lab made."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import labkit as kit
from vnetgen.lab import in_private_netns
from vnetgen.lab.processes import wait_until

pytestmark = pytest.mark.lab

DB_MAC, DB_IP, GATEWAY = "52:54:00:d0:5e:01", "192.168.100.10", "192.168.100.1"

PROFILE = f"""\
vnetgen: 1
host: caldera02
networks:
  lab:
    mode: nat
    bridge: virbr5
    ip: {GATEWAY}/24
    domain: example.lan
    dhcp:
      start: 192.168.100.100
      end: 192.168.100.199
      hosts:
        - {{mac: "{DB_MAC}", ip: {DB_IP}, name: vm-db}}
    dns:
      hosts:
        - {{ip: {DB_IP}, names: [db]}}
"""

DNS_HOST = f"<host ip='{DB_IP}'><hostname>db</hostname></host>"


def _answer(vm, name: str) -> str:
    """What the network's dnsmasq answers `vm` for `name`'s A record (busybox nslookup's output; '' on
    failure). Only A: the lab has no upstream resolver, so dnsmasq refuses the AAAA query it would forward."""
    result = vm.run(["busybox", "nslookup", "-type=a", name, GATEWAY], check=False, timeout=10)
    return result.stdout if result.returncode == 0 else ""


def _resolves(vm, name: str) -> bool:
    return f"Address: {DB_IP}" in _answer(vm, name)


def _drift(profile, captures) -> list:
    audit = subprocess.run([sys.executable, "-m", "vnetgen", "audit", str(profile), "--captures", str(captures),
                            "--host", "caldera02", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert audit.returncode in (0, 1), audit.stdout + audit.stderr
    return json.loads(audit.stdout)["hosts"]["caldera02"]["drift"]


def test_a_dns_host_resolves_from_a_vm_and_its_removal_is_drift(lab, tmp_path):
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)

    kit.apply(host, bundle)
    dumped = host.virsh("net-dumpxml", "lab").stdout
    assert "<domain name='example.lan'/>" in dumped and f"<host ip='{DB_IP}'>" in dumped, dumped

    vm = lab.vm(host, "VM1", "virbr5", mac=DB_MAC)
    lease = vm.dhcp(timeout=30)
    assert lease.ip == DB_IP and lease.router == GATEWAY, lease
    for name in ("db", "db.example.lan"):
        assert wait_until(lambda: _resolves(vm, name), timeout=20), \
            vm.run(["busybox", "nslookup", "-type=a", name, GATEWAY], check=False)
    assert not _resolves(vm, "nosuch.example.lan")   # the test can fail: only the listed name answers
    kit.assert_second_run_changes_nothing(host, bundle)
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")

    # By hand, live and in the config: the name is gone from dnsmasq and the audit says so.
    host.virsh("net-update", "lab", "delete", "dns-host", DNS_HOST, "--live", "--config")
    assert wait_until(lambda: not _resolves(vm, "db"), timeout=20), _answer(vm, "db")
    captures = tmp_path / "drifted"
    assert kit.run_script(host, str(bundle / "caldera02"), "capture.sh", str(captures)).returncode == 0
    drift = _drift(profile, captures)
    assert [(d["kind"], d["object"]) for d in drift] == [("dns-host", "network/lab")], drift

    # The printed fix, run in the bundle's host directory, puts the name back without a restart.
    for item in drift:
        host.run(item["fix"], cwd=str(bundle / "caldera02"))
    assert wait_until(lambda: _resolves(vm, "db.example.lan"), timeout=20), _answer(vm, "db.example.lan")
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "fixed")

    kit.assert_rollback_restores(host, bundle, before)
    assert "lab" not in host.virsh("net-list", "--all", "--name").stdout.split()

"""runbook.sh --confirm-timeout: a change that is not confirmed in time rolls itself back (lab)."""
from __future__ import annotations

import threading

import pytest

from conftest import ROOT

pytestmark = pytest.mark.lab

STATE = "/var/lib/vnetgen/caldera02"


@pytest.fixture
def bridged_lab(tmp_path, build_bundle):
    from vnetgen.bundle import write
    from vnetgen.lab import Lab, require_lab

    require_lab()
    out = tmp_path / "bundle"
    write(build_bundle(ROOT / "profiles" / "bridged.yaml"), str(out))
    with Lab() as lab:
        host = lab.host("caldera02")
        lan = lab.lan("lan0", "10.10.10.0/24")
        lab.nic(host, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
        host.assert_private()
        yield host, out / "caldera02"


def _state(host):
    return host.run("ip -br -4 addr show; ip route; virsh net-list --all --name").stdout


def test_unconfirmed_change_rolls_back(bridged_lab):
    host, bundle = bridged_lab
    before = _state(host)
    result = host.run(["bash", f"{bundle}/runbook.sh", "--no-vms", "--confirm-timeout", "2"], check=False,
                      timeout=180)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no confirmation within 2 s: rolling back" in result.stdout
    assert _state(host) == before
    assert "10.10.10.98/24" in host.run("ip -br -4 addr show dev enp0s25").stdout


def test_confirmed_change_stays(bridged_lab):
    host, bundle = bridged_lab
    results = {}

    def apply():
        results["run"] = host.run(["bash", f"{bundle}/runbook.sh", "--no-vms", "--confirm-timeout", "60"],
                                  check=False, timeout=180)

    worker = threading.Thread(target=apply)
    worker.start()
    try:
        for _ in range(600):
            if host.run(["test", "-e", f"{STATE}/confirm-pending"], check=False).returncode == 0:
                break
            worker.join(0.1)
        confirm = host.run(["bash", f"{bundle}/runbook.sh", "--confirm"], check=False)
        assert confirm.returncode == 0, confirm.stderr
    finally:
        worker.join(180)
    result = results["run"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "confirmed: the change stays" in result.stdout
    assert "10.10.10.98/24" in host.run("ip -br -4 addr show dev mybridge0").stdout


def test_confirm_without_a_waiting_run_fails(bridged_lab):
    host, bundle = bridged_lab
    result = host.run(["bash", f"{bundle}/runbook.sh", "--confirm"], check=False)
    assert result.returncode == 1 and "no run is waiting" in result.stderr

"""The firewall plugin: an iptables FORWARD policy of DROP (Docker's) and firewalld zones, warned about
by the runbook before any change and reported by the audit as warnings, never changed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import labkit as kit
from conftest import ROOT
from vnetgen.audit import audit_captures

FIXTURES = ROOT / "tests" / "fixtures" / "audit"


def _capture(tmp_path: Path, files: dict, name: str = "nat-default") -> Path:
    """The recorded in-sync capture, with these firewall files added (FILE: text)."""
    out = tmp_path / "captures"
    shutil.copytree(FIXTURES / "insync" / name, out)
    for file, text in files.items():
        assert file in {"iptables-forward.txt", "libvirt-version.txt", "libvirt-network.conf", "firewalld-zones.txt"}
        (out / "caldera02" / file).write_text(text)
    return out


def _drift(report):
    return [(d["kind"], d["object"], d["severity"]) for d in report["hosts"]["caldera02"]["drift"]]


NAT = ROOT / "profiles" / "nat-default.yaml"
DROP = "-P FORWARD DROP\n-N DOCKER-USER\n-A FORWARD -j DOCKER-USER\n"


@pytest.mark.parametrize("version, conf, warned", [
    ("Running against daemon: 10.6.0\n", None, True),      # libvirt 10.4+: nftables, its rules not in FORWARD
    ("Running against daemon: 9.0.0\n", None, False),      # iptables backend: libvirt's ACCEPTs come first
    ("Running against daemon: 10.6.0\n", 'firewall_backend = "iptables"\n', False),
    ("Running against daemon: 9.0.0\n", '# comment\nfirewall_backend = "nftables"\n', True),
])
def test_forward_policy_drop_is_a_warning_where_libvirts_rules_do_not_apply(tmp_path, version, conf, warned):
    files = {"iptables-forward.txt": DROP, "libvirt-version.txt": version}
    if conf is not None:
        files["libvirt-network.conf"] = conf
    report = audit_captures(NAT, _capture(tmp_path, files))
    assert _drift(report) == ([("forward-policy", "host", "warning")] if warned else [])
    assert report["in_sync"]  # a warning: only --strict fails on it
    if warned:
        item = report["hosts"]["caldera02"]["drift"][0]
        assert "guests on virbr0 are dropped" in item["actual"]
        assert item["fix"] == "iptables -I FORWARD -i virbr0 -j ACCEPT; iptables -I FORWARD -o virbr0 -j ACCEPT"
        assert not audit_captures(NAT, _capture(tmp_path / "again", files), strict=True)["in_sync"]


def test_an_accept_policy_or_no_iptables_is_no_warning(tmp_path):
    report = audit_captures(NAT, _capture(tmp_path, {"iptables-forward.txt": "-P FORWARD ACCEPT\n",
                                                    "libvirt-version.txt": "Running against daemon: 10.6.0\n"}))
    assert _drift(report) == [] and report["hosts"]["caldera02"]["not_audited"] == []
    # an nftables-only host (no iptables, so no file): nothing to report, and nothing said missing
    report = audit_captures(NAT, _capture(tmp_path / "b", {"libvirt-version.txt": "Running against daemon: 10.6.0\n"}))
    assert _drift(report) == [] and report["hosts"]["caldera02"]["not_audited"] == []


def test_a_libvirt_bridge_outside_firewalld_zone_libvirt_is_a_warning(tmp_path):
    zones = "public\n  interfaces: enp0s25 virbr0\nlibvirt\n  interfaces: virbr9\n"
    report = audit_captures(NAT, _capture(tmp_path, {"firewalld-zones.txt": zones}))
    assert _drift(report) == [("firewall-zone", "bridge/virbr0", "warning")]
    item = report["hosts"]["caldera02"]["drift"][0]
    assert (item["expected"], item["actual"]) == ("libvirt", "public")
    assert item["fix"] == "firewall-cmd --zone=libvirt --change-interface=virbr0"
    zones = "libvirt\n  interfaces: virbr0\npublic\n  interfaces: enp0s25\n"
    assert _drift(audit_captures(NAT, _capture(tmp_path / "b", {"firewalld-zones.txt": zones}))) == []


def test_isolated_networks_get_no_forward_warning(build_bundle):
    bundle = build_bundle(ROOT / "profiles" / "isolated.yaml")
    runbook = next(f.text for path, f in bundle.files.items() if path.endswith("runbook.sh"))
    assert "forward_policy_ok" not in runbook.split("verify_all() {")[1]  # only defined, never called
    assert "advise firewalld_zone_ok" in runbook


@pytest.mark.lab
def test_the_runbook_warns_of_a_drop_policy_and_goes_on(lab, tmp_path):
    """A host where Docker left FORWARD at DROP and libvirt is configured for nftables: the runbook says
    so with the fix, before any change, and completes; the host's firewall is left as it was."""
    host = lab.host("caldera02")
    host.assert_private()
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=False, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
    host.run(["iptables", "-P", "FORWARD", "DROP"])
    conf = Path(host.root_path("/etc/libvirt/network.conf"))
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('firewall_backend = "nftables"\n')
    bundle = kit.build(NAT, tmp_path / "bundle")
    out = kit.apply(host, bundle, "--no-vms")
    assert "the iptables FORWARD policy is DROP (Docker sets it) and libvirt uses nftables" in out
    assert "fix: iptables -I FORWARD -i virbr0 -j ACCEPT" in out
    assert "warning: forward_policy_ok --ruled virbr0 does not hold (the run goes on)" in out
    assert out.index("warning: forward_policy_ok") < out.index("== step 3")
    assert "-P FORWARD DROP" in host.run(["iptables", "-S", "FORWARD"]).stdout  # never changed by vnetgen

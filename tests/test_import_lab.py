"""`vnetgen import` in the lab: each scenario of profiles/ (el7, el9, ubuntu) applied once by its
runbook (hosts wired as `vnetgen rehearse` wires them), captured by the bundle's capture.sh, imported;
the imported profile builds, validates without warnings, and auditing the same captures against it is
in sync with --strict."""
from __future__ import annotations

import pytest

import labkit as kit
from vnetgen.audit import audit_captures
from vnetgen.bundle import build
from vnetgen.importer import import_captures, render_profile, self_check
from vnetgen.plugins import get_plugin_manager
from vnetgen.profile import load_valid
from vnetgen.lab.rehearse import Rehearsal

pytestmark = pytest.mark.lab

SCENARIOS = ["nat-default", "bridged", "nat-and-bridged", "routed", "isolated", "two-hosts", "bridged-el9",
             "bridged-ubuntu"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_applied_scenario_imports_builds_and_audits_in_sync(lab, tmp_path, scenario):
    pm = get_plugin_manager()
    source = kit.profile_path(scenario)
    profile, _ = load_valid(str(source), pm)
    hosts = Rehearsal(profile, pm).wire(lab)
    bundle = kit.build(source, tmp_path / "bundle")
    captures = tmp_path / "captures"
    for name in kit.run_order(bundle):
        kit.apply(hosts[name], bundle)
    for name in profile.hosts:
        hosts[name].assert_private()
        done = kit.run_script(hosts[name], str(bundle / name), "capture.sh", str(captures))
        assert done.returncode == 0, done.stdout + done.stderr

    imported = import_captures(captures, pm=pm)
    text = render_profile(imported)
    assert self_check(text, imported, pm) == [], text
    path = tmp_path / "imported.yaml"
    path.write_text(text)
    again, report = load_valid(str(path), pm)
    assert report.sorted() == []                                   # validates without warnings
    assert sorted(again.hosts) == sorted(profile.hosts)
    built = build(again, pm, profile_file=path.name)
    assert {f"{h}/runbook.sh" for h in profile.hosts} <= set(built.files)
    result = audit_captures(again, captures, strict=True, pm=pm)
    for name, host in result["hosts"].items():
        assert host["drift"] == [], (name, host["drift"], text)
    assert result["in_sync"]
    # what the profile gave every network of the source is in the imported one (uuid, bridge, mode)
    for name, host in profile.hosts.items():
        plan_nets = {n.name: n for n in again.hosts[name].networks.values()}
        for net in host.networks.values():
            if net.state == "absent":
                continue
            assert plan_nets[net.name].mode == net.mode and plan_nets[net.name].uuid == net.uuid, net.name
    # the target is the one the lab host's /etc/os-release names (Rehearsal.wire writes it)
    for name, host in profile.hosts.items():
        assert again.hosts[name].target == host.target, name
    assert "from the host's /etc/os-release" in text
    # build --against the source: only what no lab capture can hold (VMs: the lab's libvirtd has no
    # domain driver); the resolvers come from the ifcfg files the runbook installed
    from vnetgen.diff import diff_links, diff_plans
    from vnetgen.plan import plan_profile

    changes = diff_links(profile, again) + diff_plans(plan_profile(profile, pm), plan_profile(again, pm))
    left = [c.line() for c in changes if not (c.object.startswith("vm ") and c.impact == "removed")]
    assert left == [], left

"""`vnetgen diff` and REVIEW.md's Changes: every kind of change, with its impact."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

BASE = (ROOT / "profiles" / "two-hosts.yaml").read_text()


def changes(tmp_path, pm, new_text, old_text=BASE):
    from vnetgen.diff import diff_links, diff_plans
    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    (tmp_path / "old.yaml").write_text(old_text)
    (tmp_path / "new.yaml").write_text(new_text)
    old, _ = load_valid(str(tmp_path / "old.yaml"), pm)
    new, _ = load_valid(str(tmp_path / "new.yaml"), pm)
    return [(c.host, c.object, c.what, c.impact) for c in
            diff_links(old, new) + diff_plans(plan_profile(old, pm), plan_profile(new, pm))]


@pytest.mark.parametrize("old, new, expected", [
    ("dhcp: {start: 192.168.122.2, end: 192.168.122.254}", "dhcp: {start: 192.168.122.10, end: 192.168.122.254}",
     ("caldera02", "network default", "DHCP range 192.168.122.2–192.168.122.254 → 192.168.122.10–192.168.122.254",
      "live")),
    ("dhcp: {start: 192.168.122.2, end: 192.168.122.254}",
     "dhcp: {start: 192.168.122.2, end: 192.168.122.254, hosts: [{mac: '52:54:00:00:00:09', ip: 192.168.122.9}]}",
     ("caldera02", "network default", "static lease added: <host mac='52:54:00:00:00:09' ip='192.168.122.9'/>",
      "live")),
    ("ip: 192.168.122.1/24\n        dhcp", "ip: 192.168.122.1/23\n        dhcp",
     ("caldera02", "network default", "address 192.168.122.1/24 → 192.168.122.1/23", "restart")),
    ("        ports: [ens2]\n    vms:\n      VM1: &vm", "        ports: [ens2]\n        stp: false\n    vms:\n      VM1: &vm",
     ("caldera02", "network default", "stp on → off", "restart")),
    ("mode: nat", "mode: route", ("caldera02", "network default", "mode nat → route", "restart")),
    ("        ports: [ens2]\n    vms:\n      VM1: &vm",
     "        ports: [ens2]\n        autostart: false\n    vms:\n      VM1: &vm",
     ("caldera02", "network default", "autostart on → off", "live")),
    ("        ports: [ens2]\n    vms:\n      VM1: &vm",
     "        ports: [ens2]\n        state: inactive\n    vms:\n      VM1: &vm",
     ("caldera02", "network default", "state active → inactive", "live")),
    ("memory: 2048", "memory: 4096", ("caldera02", "vm VM1", "definition changed", "manual")),
])
def test_each_kind_of_change(tmp_path, pm, old, new, expected):
    assert BASE.count(old) >= 1, old
    found = changes(tmp_path, pm, BASE.replace(old, new, 1))
    assert expected in found, found


BRIDGED = (ROOT / "profiles" / "bridged.yaml").read_text()


@pytest.mark.parametrize("old, new, changed", [
    # the delay the bundle writes: unset is 0 without STP, 2 s with it
    ("    stp: false\n    delay: 0\n", "    stp: false\n", False),
    ("    stp: false\n    delay: 0\n", "    stp: false\n    delay: 2\n", True),
    ("    stp: false\n    delay: 0\n", "    stp: true\n    delay: 2\n", True),   # stp itself changed
])
def test_bridge_delay_is_compared_as_the_bundle_writes_it(tmp_path, pm, old, new, changed):
    found = [c for c in changes(tmp_path, pm, BRIDGED.replace(old, new), BRIDGED) if c[2].startswith("delay")]
    assert bool(found) == changed, found


@pytest.mark.parametrize("old, new, changed", [
    # how an existing VM was installed is no change of it: the runbook never reinstalls it
    ("    location: /tmp/ubuntu-14.04.1-server-amd64.iso\n    extra_args: console=ttyS0,115200n8 serial\n"
     "    os_variant: ubuntu14.04\n", "    import: true\n", False),
    ("disk: {path: /data/vm-images/vm3.img, size: 10}", "disk: {path: /data/vm-images/vm3.img}", False),
    ("    graphics: none\n", "", False),                        # none is the default
    ("    graphics: none\n", "    graphics: vnc\n", True),
    ("disk: {path: /data/vm-images/vm3.img, size: 10}", "disk: {path: /data/vm-images/other.img, size: 10}", True),
    ("    vcpus: 2\n", "    vcpus: 4\n", True),
    ("networks: [bridged_network]", 'networks: [{network: bridged_network, mac: "52:54:00:c6:9e:78"}]', False),
])
def test_vm_changes_are_what_its_domain_holds(tmp_path, pm, old, new, changed):
    assert BRIDGED.count(old) == 1, old
    found = [c for c in changes(tmp_path, pm, BRIDGED.replace(old, new), BRIDGED) if c[1] == "vm VM3"]
    assert found == ([("caldera02", "vm VM3", "definition changed", "manual")] if changed else []), found


def test_a_pinned_vm_mac_that_changes_is_a_change(tmp_path, pm):
    pinned = BRIDGED.replace("networks: [bridged_network]", 'networks: [{network: bridged_network, mac: "52:54:00:c6:9e:78"}]')
    found = changes(tmp_path, pm, pinned.replace("9e:78", "9e:79"), pinned)
    assert found == [("caldera02", "vm VM3", "definition changed", "manual")]


def test_no_changes(tmp_path, pm):
    assert changes(tmp_path, pm, BASE) == []


def test_added_and_removed_objects(tmp_path, pm):
    new = BASE.replace("  caldera03:\n", "  caldera04:\n    networks: {n: {mode: isolated}}\n  caldera03:\n")
    found = changes(tmp_path, pm, new)
    assert ("caldera04", "host", "new host", "new") in found
    removed = changes(tmp_path, pm, BASE, old_text=new)
    assert any(c[0] == "caldera04" and c[3] == "removed" for c in removed)


def test_link_change(tmp_path, pm):
    new = BASE.replace("links:\n  - [caldera02:ens2, caldera03:ens2]\n", "")
    found = changes(tmp_path, pm, new)
    assert ("fleet", "link", "caldera02:ens2 ↔ caldera03:ens2 removed", "host") in found


def test_bridge_change(tmp_path, pm):
    old = (ROOT / "profiles" / "bridged.yaml").read_text()
    found = changes(tmp_path, pm, old.replace("gateway: 10.10.10.1", "gateway: 10.10.10.254"), old_text=old)
    assert ("caldera02", "bridge mybridge0", "gateway 10.10.10.1 → 10.10.10.254", "host") in found


def test_cli_diff_and_review_changes(tmp_path):
    (tmp_path / "new.yaml").write_text(BASE.replace("mode: nat", "mode: route"))
    result = CliRunner().invoke(app, ["diff", str(ROOT / "profiles" / "two-hosts.yaml"), str(tmp_path / "new.yaml")])
    assert result.exit_code == 0
    assert "network default: mode nat → route (network restarts" in result.output
    assert "networks that restart: caldera02/default" in result.output
    out = tmp_path / "b"
    result = CliRunner().invoke(app, ["build", str(tmp_path / "new.yaml"), "-o", str(out), "--against",
                                      str(ROOT / "profiles" / "two-hosts.yaml")])
    assert result.exit_code == 0, result.output
    review = (out / "REVIEW.md").read_text()
    assert "## Changes since two-hosts.yaml" in review and "mode nat → route" in review
    assert "Networks that restart (their guests lose connectivity briefly): network default." in review


def test_live_dhcp_steps_only_with_against(tmp_path, pm):
    from vnetgen.bundle import build
    from vnetgen.profile import load_valid

    new_text = BASE.replace("end: 192.168.122.254", "end: 192.168.122.250")
    (tmp_path / "new.yaml").write_text(new_text)
    old, _ = load_valid(str(ROOT / "profiles" / "two-hosts.yaml"), pm)
    new, _ = load_valid(str(tmp_path / "new.yaml"), pm)
    plain = build(new, pm, "new.yaml").files["caldera02/runbook.sh"].text
    against = build(new, pm, "new.yaml", against=old).files["caldera02/runbook.sh"].text
    assert "run net_update" not in plain
    assert "run net_update default delete ip-dhcp-range \"<range start='192.168.122.2' end='192.168.122.254'/>\"" \
        in against
    # a restart-worthy change is never turned into a live update
    restart = build(load_valid(str(_write(tmp_path, BASE.replace("mode: nat", "mode: route"))), pm)[0], pm, "x",
                    against=old).files["caldera02/runbook.sh"].text
    assert "run net_update" not in restart


def _write(tmp_path, text):
    path = tmp_path / "other.yaml"
    path.write_text(text)
    return path

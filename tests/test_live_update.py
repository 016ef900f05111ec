"""build --against: DHCP range and lease changes reach a running network without a restart (lab)."""
from __future__ import annotations

import pytest

from conftest import ROOT

pytestmark = pytest.mark.lab

NEW_DHCP = """
      end: 192.168.122.200
      hosts:
        - {mac: '52:54:00:6d:33:55', ip: 192.168.122.201, name: VM1}
"""


def test_dhcp_change_applies_live(tmp_path, pm):
    from vnetgen.bundle import build, write
    from vnetgen.lab import Lab, require_lab
    from vnetgen.profile import load_valid

    require_lab()
    old_path = ROOT / "profiles" / "nat-default.yaml"
    new_path = tmp_path / "new.yaml"
    new_path.write_text(old_path.read_text().replace("      end: 192.168.122.254\n", NEW_DHCP))
    old, _ = load_valid(str(old_path), pm)
    new, _ = load_valid(str(new_path), pm)
    write(build(old, pm, "nat-default.yaml"), str(tmp_path / "old"))
    write(build(new, pm, "new.yaml", against=old), str(tmp_path / "new"))
    with Lab() as lab:
        host = lab.host("caldera02")
        host.assert_private()
        host.run(["bash", str(tmp_path / "old" / "caldera02" / "runbook.sh"), "--no-vms"], timeout=120)
        ifindex = host.run("cat /sys/class/net/virbr0/ifindex").stdout
        result = host.run(["bash", str(tmp_path / "new" / "caldera02" / "runbook.sh"), "--no-vms"], timeout=120)
        assert "net_update default delete ip-dhcp-range" in result.stdout
        assert "net_update default add ip-dhcp-host" in result.stdout
        assert "net-destroy" not in result.stdout  # no restart
        assert host.run("cat /sys/class/net/virbr0/ifindex").stdout == ifindex  # same bridge: never recreated
        live = host.virsh("net-dumpxml", "default").stdout
        assert "end='192.168.122.200'" in live and "ip='192.168.122.201'" in live
        again = host.run(["bash", str(tmp_path / "new" / "caldera02" / "runbook.sh"), "--no-vms"], timeout=120)
        assert "nothing to change" in again.stdout
        # The same new bundle on a host that never ran the old one simply defines the network.
        fresh = lab.host("fresh")
        # another machine (its hostname is "fresh"), told that it stands in for caldera02
        first = fresh.run(["bash", str(tmp_path / "new" / "caldera02" / "runbook.sh"), "--no-vms",
                           "--host-is", "caldera02"], timeout=120)
        assert "every check holds" in first.stdout, first.stdout

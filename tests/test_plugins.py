"""Plugins: the built-in modes load through entry points; a third-party mode plugs in the same way."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from vnetgen.api import Action, Mode, Step, hookimpl, NETWORKS
from vnetgen.plugins import ENTRY_POINT_GROUP, get_plugin_manager, modes


class ToyvtapPlugin:
    """A toy third-party mode: libvirt's toyvtap ('direct') forward over a host NIC."""

    MODE = Mode(name="toyvtap", description="guests attach to a NIC through toyvtap", forward="bridge",
                libvirt_bridge=False, ip="forbidden")

    @hookimpl
    def vnetgen_modes(self):
        return [self.MODE]

    @hookimpl
    def vnetgen_validate_network(self, host, network, report):
        if network.mode == "toyvtap" and network.bridge is not None:
            report.error(network.at("bridge"), f"network {network.name}: toyvtap takes no bridge")

    @hookimpl
    def vnetgen_network_xml(self, host, network, plan):
        if network.mode.name != "toyvtap":
            return None
        from lxml import etree

        root = etree.Element("network")
        etree.SubElement(root, "name").text = network.name
        etree.SubElement(root, "uuid").text = network.uuid
        forward = etree.SubElement(root, "forward", mode="bridge")
        etree.SubElement(forward, "interface", dev="eth9")
        return root

    @hookimpl
    def vnetgen_steps(self, host, plan):
        return [Step((NETWORKS, -1, "toyvtap"), "check eth9", "toyvtap needs its parent NIC",
                     (Action(check="[ -e /sys/class/net/eth9 ]", kind="require"),))]


def _group(name):
    found = entry_points()
    return found.select(group=name) if hasattr(found, "select") else found.get(name, [])  # Python 3.9


def test_builtin_modes_come_from_our_entry_points():
    names = {ep.name for ep in _group(ENTRY_POINT_GROUP)}
    assert {"nat", "route", "isolated", "bridge", "open", "el7"} <= names
    assert set(modes(get_plugin_manager())) >= {"nat", "route", "isolated", "bridge", "open"}


def test_without_entry_points_there_are_no_modes():
    # The core names no mode: everything it knows comes from plugins.
    assert modes(get_plugin_manager(entry_points=False)) == {}


def test_toy_mode_builds(write_profile):
    from vnetgen.bundle import build
    from vnetgen.profile import load_valid

    pm = get_plugin_manager([ToyvtapPlugin()])
    path = write_profile("vnetgen: 1\nhost: h\nnetworks:\n  direct: {mode: toyvtap}\n")
    profile, _ = load_valid(path, pm)
    bundle = build(profile, pm, "p.yaml")
    xml = bundle.files["h/networks/direct.xml"].text
    assert "<interface dev=\"eth9\"/>" in xml and "<forward mode=\"bridge\">" in xml
    runbook = bundle.files["h/runbook.sh"].text
    assert "check eth9" in runbook and "must [ -e /sys/class/net/eth9 ]" in runbook
    assert runbook.index("check eth9") < runbook.index("network direct (toyvtap)")


def test_toy_mode_validation_runs(write_profile, load_report):
    from vnetgen.diagnostics import InvalidProfile
    from vnetgen.profile import load_valid

    pm = get_plugin_manager([ToyvtapPlugin()])
    path = write_profile("vnetgen: 1\nnetworks:\n  direct: {mode: toyvtap, bridge: br0}\n")
    with pytest.raises(InvalidProfile) as err:
        load_valid(path, pm)
    assert [(d.line, d.message) for d in err.value.report.errors] == [(3, "network direct: toyvtap takes no bridge")]


def test_unknown_mode_without_the_plugin(write_profile, pm, load_report):
    report = load_report(write_profile("vnetgen: 1\nnetworks:\n  direct: {mode: toyvtap}\n"))
    assert report.errors and "toyvtap" in report.errors[0].message

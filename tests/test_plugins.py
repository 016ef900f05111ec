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


# --- entry points read without importlib.metadata (vnetgen.plugins.entry_points) --------------------


def _importlib_entry_points(group):
    import importlib.metadata

    return [(str(dist._path), ep.name, ep.value) for dist in importlib.metadata.distributions()
            for ep in dist.entry_points if ep.group == group]


@pytest.mark.parametrize("group", [ENTRY_POINT_GROUP, "console_scripts", "pytest11"])
def test_entry_points_are_importlib_metadatas_in_its_order(group):
    from vnetgen.plugins import entry_points

    found = entry_points(group)
    assert found == _importlib_entry_points(group)
    assert found or group != ENTRY_POINT_GROUP


LATE_MODE = '''\
from vnetgen.api import Mode, hookimpl

@hookimpl
def vnetgen_modes():
    return [Mode(name="latemode", description="installed after the first manager", forward="bridge",
                 libvirt_bridge=False, ip="forbidden")]
'''


def test_a_plugin_installed_after_a_manager_was_made_is_found(tmp_path, monkeypatch):
    """Nothing is cached: a distribution that appears on sys.path between two managers (here a
    plain site directory, as pip writes one: a module and its NAME-VERSION.dist-info) is loaded by
    the second, under its entry-point name, and `vnetgen plugins` names its package."""
    from vnetgen.plugins import describe

    import sys

    monkeypatch.delitem(sys.modules, "vnetgen_latemode", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "latemode" not in modes(get_plugin_manager())
    (tmp_path / "vnetgen_latemode.py").write_text(LATE_MODE)
    meta = tmp_path / "vnetgen_latemode-0.3.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: vnetgen-latemode\nVersion: 0.3\n")
    (meta / "entry_points.txt").write_text(f"[console_scripts]\nx = y:z\n\n[{ENTRY_POINT_GROUP}]\nlate = vnetgen_latemode\n")
    pm = get_plugin_manager()
    assert "latemode" in modes(pm)
    row = next(r for r in describe(pm) if r["name"] == "latemode")
    assert (row["plugin"], row["package"], row["version"]) == ("late", "vnetgen-latemode", "0.3")
    from vnetgen.plugins import entry_points

    assert entry_points(ENTRY_POINT_GROUP) == _importlib_entry_points(ENTRY_POINT_GROUP)


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    """importlib.metadata also reads distributions inside a zip on sys.path: then pluggy loads them."""
    import zipfile

    from vnetgen.plugins import entry_points

    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("vnetgen_latemode.py", LATE_MODE)
        z.writestr("vnetgen_latemode-0.3.dist-info/METADATA", "Metadata-Version: 2.1\nName: vnetgen-latemode\nVersion: 0.3\n")
        z.writestr("vnetgen_latemode-0.3.dist-info/entry_points.txt", f"[{ENTRY_POINT_GROUP}]\nlate = vnetgen_latemode\n")
    import sys

    monkeypatch.delitem(sys.modules, "vnetgen_latemode", raising=False)
    monkeypatch.syspath_prepend(str(archive))
    assert entry_points(ENTRY_POINT_GROUP) is None
    assert "latemode" in modes(get_plugin_manager())


def test_hook_implementations_are_found_as_pluggy_finds_them():
    """The manager skips a module's names bound to what cannot be a hook without asking pluggy:
    every name of every plugin module (and of a class-based plugin) gets pluggy's own answer."""
    import types

    import pluggy

    from vnetgen.plugins import PluginManager, entry_points, load

    ours, pluggys = PluginManager(), pluggy.PluginManager("vnetgen")
    plugins = [load(value) for _, _, value in entry_points(ENTRY_POINT_GROUP)]
    odd = types.ModuleType("odd")   # a module holding a staticmethod and a classmethod object, a bound method
    odd.vnetgen_modes = staticmethod(hookimpl(lambda: []))
    odd.vnetgen_targets = classmethod(hookimpl(lambda cls: []))
    odd.bound = ToyvtapPlugin().vnetgen_modes
    odd.data = 3
    found = 0
    for plugin in [*plugins, odd, ToyvtapPlugin(), ToyvtapPlugin]:
        for name in dir(plugin):
            mine = ours.parse_hookimpl_opts(plugin, name)
            assert mine == pluggys.parse_hookimpl_opts(plugin, name), (plugin, name)
            found += mine is not None
    assert found > 30
    from vnetgen import hookspecs

    specs = 0
    for module in (hookspecs, odd):
        for name in dir(module):
            mine = ours.parse_hookspec_opts(module, name)
            assert mine == pluggys.parse_hookspec_opts(module, name), (module, name)
            specs += mine is not None
    assert specs > 10

"""Plugin manager factory: hook specs, then every plugin of the `vnetgen.plugins` entry-point group."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pluggy

ENTRY_POINT_GROUP = "vnetgen.plugins"


def get_plugin_manager(extra: Optional[List[Any]] = None, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager; `extra` plugin objects are registered too (tests use this)."""
    from . import hookspecs

    pm = pluggy.PluginManager("vnetgen")
    pm.add_hookspecs(hookspecs)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra or ():
        pm.register(plugin)
    pm.check_pending()
    return pm


def _collect(pm: pluggy.PluginManager, hook: str) -> Dict[str, Tuple[Any, Any]]:
    """name → (item, plugin) for modes or targets; the first plugin to claim a name keeps it."""
    found: Dict[str, Tuple[Any, Any]] = {}
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        for item in impl.function() or ():
            found.setdefault(item.name, (item, impl.plugin))
    return found


def modes(pm: pluggy.PluginManager) -> Dict[str, Any]:
    return {name: item for name, (item, _) in _collect(pm, "vnetgen_modes").items()}


def targets(pm: pluggy.PluginManager) -> Dict[str, Any]:
    return {name: item for name, (item, _) in _collect(pm, "vnetgen_targets").items()}


def default_target(pm: pluggy.PluginManager) -> Optional[str]:
    """The target of a host that names none: the one target that says `default = True`."""
    found = sorted(name for name, item in targets(pm).items() if getattr(item, "default", False))
    return found[0] if found else None


def describe(pm: pluggy.PluginManager) -> List[Dict[str, str]]:
    """One row per mode and target: kind, name, plugin, version, description."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for kind, hook in (("mode", "vnetgen_modes"), ("target", "vnetgen_targets")):
        for name, (item, plugin) in sorted(_collect(pm, hook).items()):
            dist = dists.get(id(plugin))
            rows.append({"kind": kind, "name": name, "plugin": pm.get_name(plugin) or "?",
                         "package": dist.project_name if dist else "(registered in code)",
                         "version": dist.version if dist else "-", "description": item.description})
    return rows

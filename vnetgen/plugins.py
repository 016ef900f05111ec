"""Plugin manager factory: hook specs, then every plugin of the `vnetgen.plugins` entry-point group.

The group's entry points are read from the `entry_points.txt` of the distributions on sys.path
(`entry_points`), in the order importlib.metadata.distributions() gives them, rather than through
importlib.metadata: importing it (email, zipfile, csv...) and building a Distribution per installed
package took a tenth of a one-host build. Nothing is cached, so a plugin installed a moment ago is
found; wherever importlib.metadata would look somewhere this reading does not (a zip on sys.path,
a meta-path finder of its own), pluggy's load_setuptools_entrypoints loads the group instead.
"""
from __future__ import annotations

import os
import sys
from types import FunctionType, MethodType, ModuleType
from typing import Any, Dict, List, Optional, Tuple

import pluggy

ENTRY_POINT_GROUP = "vnetgen.plugins"
_HOOKABLE = (FunctionType, MethodType, classmethod, staticmethod)
# A module's attributes that its type's data descriptors give, whatever its namespace binds (__dict__…).
_SHADOWED = frozenset(name for klass in ModuleType.__mro__ for name, value in vars(klass).items()
                      if hasattr(type(value), "__set__") or hasattr(type(value), "__delete__"))


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, which also remembers the metadata directory of each entry-point plugin it
    loaded itself (`origins`; pluggy's list_plugin_distinfo lists those its own loading found)."""

    def __init__(self) -> None:
        super().__init__("vnetgen")
        self.origins: List[Tuple[Any, str]] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        # pluggy looks up every name of a plugin with inspect.getattr_static (~5 µs each, ~540 names
        # in a build's plugins). In a module, a name that ModuleType's own data descriptors do not
        # shadow is what the namespace binds: a function is a hook implementation when it carries the
        # marker's options; what pluggy cannot hook (a class, a constant, a module) never is.
        # Anything else is pluggy's to judge.
        options = _module_marker(plugin, name, self.project_name + "_impl")
        return super().parse_hookimpl_opts(plugin, name) if options is _PLUGGYS else options

    def parse_hookspec_opts(self, module_or_class: Any, name: str) -> Any:
        # The same for the names of a module of hook specifications (vnetgen.hookspecs).
        options = _module_marker(module_or_class, name, self.project_name + "_spec")
        return super().parse_hookspec_opts(module_or_class, name) if options is _PLUGGYS else options


_PLUGGYS = object()


def _module_marker(plugin: Any, name: str, marker: str) -> Any:
    """The options of pluggy's `marker` on `plugin.name`, found as pluggy finds them, when `plugin` is
    a module whose namespace says it plainly; _PLUGGYS: let pluggy look."""
    if type(plugin) is ModuleType and name not in _SHADOWED:
        value = plugin.__dict__.get(name)
        if isinstance(value, FunctionType) and not hasattr(value, "__func__"):
            options = getattr(value, marker, None)
            return options if isinstance(options, dict) else None
        if value is not None and not isinstance(value, _HOOKABLE):
            return None
    return _PLUGGYS


def get_plugin_manager(extra: Optional[List[Any]] = None, entry_points: bool = True) -> PluginManager:
    """A fresh manager; `extra` plugin objects are registered too (tests use this)."""
    from . import hookspecs

    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    if entry_points:
        load_entry_points(pm, ENTRY_POINT_GROUP)
    for plugin in extra or ():
        pm.register(plugin)
    pm.check_pending()
    return pm


def load_entry_points(pm: PluginManager, group: str) -> None:
    """What pluggy's load_setuptools_entrypoints(group) does: each entry point's object registered under
    its name, the first of a name kept, blocked names skipped."""
    found = entry_points(group)
    if found is None:
        pm.load_setuptools_entrypoints(group)
        return
    for meta, name, value in found:
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        plugin = load(value)
        pm.register(plugin, name=name)
        pm.origins.append((plugin, meta))


def entry_points(group: str) -> Optional[List[Tuple[str, str, str]]]:
    """(metadata directory, name, value) of each entry point of `group`, in importlib.metadata's order
    (sys.path entries in turn; in each, the *.dist-info and *.egg-info directories grouped by
    normalized project name in listing order), or None when importlib.metadata would also look where
    this does not: a sys.path entry that is a file (a zip), or a meta-path finder with distributions."""
    import importlib.machinery
    import re

    if any(hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder
           for finder in sys.meta_path):
        return None
    found: List[Tuple[str, str, str]] = []
    for root in sys.path:
        if not isinstance(root, str):
            return None
        try:
            children = os.listdir(root or ".")
        except OSError:
            if os.path.isfile(root):
                return None
            continue
        projects: Dict[str, List[str]] = {}
        eggs: List[str] = []
        base_is_egg = os.path.basename(root).lower().endswith(".egg")
        prefix = os.path.join(root, "")   # prefix + child is os.path.join(root, child)
        for child in children:
            if child[-1:] not in ("o", "O"):   # not ...info: most of a stdlib or site-packages listing
                continue
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = low.rpartition(".")[0].partition("-")[0]
                if "." in name or "__" in name:   # (else this re.sub leaves it as it is)
                    name = re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")
                projects.setdefault(name, []).append(prefix + child)
            elif base_is_egg and low == "egg-info":
                eggs.append(prefix + child)
        for meta in [m for paths in projects.values() for m in paths] + eggs:
            try:   # bytes, decoded: splitlines() ends lines as text mode's newline translation would
                with open(meta + os.sep + "entry_points.txt", "rb") as handle:
                    text = handle.read().decode("utf-8")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                continue
            found.extend((meta, name, value) for name, value in _section(text, group))
    return found


def _section(text: str, group: str) -> List[Tuple[str, str]]:
    """The (name, value) pairs of `[group]` in an entry_points.txt, parsed as importlib.metadata does."""
    pairs, section = [], None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == group:
            name, value = line.split("=", 1)
            pairs.append((name.strip(), value.strip()))
    return pairs


def load(value: str) -> Any:
    """The object an entry point's value ("module:attr.attr [extras]") names, as EntryPoint.load()."""
    import importlib
    import re

    if value.isascii() and value.replace(".", "_").isidentifier():   # a module's dotted name: what the
        module, attrs = value, ""                                     # pattern makes of it, without it
    else:
        match = re.match(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$", value)
        if match is None:
            raise ValueError(f"entry point value {value!r} is not module:attr")
        module, attrs = match.group("module"), match.group("attr") or ""
    obj = importlib.import_module(module)
    for attr in filter(None, attrs.split(".")):
        obj = getattr(obj, attr)
    return obj


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
    for plugin, meta in getattr(pm, "origins", ()):
        dists[id(plugin)] = _Distribution(meta)
    rows = []
    for kind, hook in (("mode", "vnetgen_modes"), ("target", "vnetgen_targets")):
        for name, (item, plugin) in sorted(_collect(pm, hook).items()):
            dist = dists.get(id(plugin))
            rows.append({"kind": kind, "name": name, "plugin": pm.get_name(plugin) or "?",
                         "package": dist.project_name if dist else "(registered in code)",
                         "version": dist.version if dist else "-", "description": item.description})
    return rows


class _Distribution:
    """project_name and version of a metadata directory, as pluggy's DistFacade gives them."""

    def __init__(self, meta: str) -> None:
        from importlib.metadata import PathDistribution
        from pathlib import Path

        self._dist = PathDistribution(Path(meta))

    @property
    def project_name(self) -> str:
        return self._dist.metadata["name"]

    @property
    def version(self) -> str:
        return self._dist.version

"""Load a profile v1 file into the typed model, reporting every problem as FILE:LINE:COL."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import model as m
from . import netdns, netip6
from .diagnostics import InvalidProfile, Report
from .gcpause import paused_gc
from .schema import HOST_PROPERTIES, profile_schema
from .yamlload import LList, LMap, load_document

_NAMED_MAPS = ("nics", "bridges", "networks", "vms")
_SHORTHAND_KEYS = tuple(HOST_PROPERTIES)


def load(path: str, modes: Iterable[str] = ()) -> Tuple[Optional[m.Profile], Report]:
    """Parse and structurally check `path`; semantic checks are `validate.validate`'s job."""
    report = Report(path)
    doc = load_document(path, profile_schema(modes), report)
    if doc is None:
        return None, report
    return _profile(path, doc, report), report


def _profile(path: str, doc: LMap, report: Report) -> m.Profile:
    profile = m.Profile(mark=doc.mark, marks=dict(doc.value_marks), path=path, name=doc.get("name"))
    shorthand = [k for k in _SHORTHAND_KEYS if k in doc.key_marks]
    defaults = doc.get("defaults")
    if "hosts" in doc.key_marks:
        for key in shorthand + (["host"] if "host" in doc.key_marks else []):
            report.error(doc.key_marks[key], f"'{key}' at the top level cannot be combined with 'hosts:' "
                                             "(put it under a host, or under 'defaults:')")
        hosts = doc.get("hosts") or LMap(doc.at("hosts"))
        if not hosts.key_marks:
            report.error(doc.at("hosts"), "hosts: no host defined")
    else:
        # One-host shorthand: the top level is the host.
        name = doc.get("host", "localhost")
        single = LMap(doc.mark)
        for key in shorthand:
            if key in doc:  # a value that failed its schema is absent, as everywhere else
                single[key] = doc[key]
            single.key_marks[key] = doc.key_marks[key]
            single.value_marks[key] = doc.value_marks[key]
        hosts = LMap(doc.mark)
        hosts[name] = single
        hosts.key_marks[name] = doc.key_marks.get("host", doc.mark)
        if not shorthand:
            report.error(doc.mark, "profile defines no host: add 'hosts:' or 'networks:' at the top level")
    for name, raw in hosts.items():
        merged = _with_defaults(raw if isinstance(raw, LMap) else LMap(hosts.key_marks[name]), defaults)
        profile.hosts[name] = _host(name, hosts.key_marks[name], merged)
    for index, raw in enumerate(doc.get("links") or []):
        mark = doc["links"].item_marks[index]
        ends = tuple(m.LinkEnd(*end.split(":", 1)) for end in raw)
        if len(ends) == 2:
            profile.links.append(m.Link(mark=mark, marks={"a": raw.item_marks[0], "b": raw.item_marks[-1]},
                                        ends=ends))  # type: ignore[arg-type]
    rollout = doc.get("rollout")
    if isinstance(rollout, LMap):
        profile.rollout = m.Rollout(mark=doc.at("rollout"), marks=dict(rollout.value_marks),
                                    **{key: rollout[key] for key in ("serial", "max_fail_percentage") if key in rollout})
    return profile


def _with_defaults(host: LMap, defaults: Optional[LMap]) -> LMap:
    """Host keys win; named maps (networks, vms, …) are merged by name, the host's entry winning."""
    if not defaults:
        return host
    merged = LMap(host.mark)
    for key in defaults.key_marks:
        if key in defaults:
            merged[key] = defaults[key]
            merged.key_marks[key] = defaults.key_marks[key]
            merged.value_marks[key] = defaults.value_marks[key]
    for key in host.key_marks:
        if key in _NAMED_MAPS and isinstance(merged.get(key), LMap) and isinstance(host.get(key), LMap):
            combined = LMap(host.value_marks[key])
            for source in (merged[key], host[key]):
                for name, value in source.items():
                    combined[name] = value
                    combined.key_marks[name] = source.key_marks[name]
                    combined.value_marks[name] = source.value_marks[name]
            merged[key] = combined
        elif key in host:
            merged[key] = host[key]
        merged.key_marks[key] = host.key_marks[key]
        merged.value_marks[key] = host.value_marks[key]
    return merged


def _fields(raw: LMap, names: Dict[str, str]) -> Dict[str, Any]:
    """Profile keys → model field names, only for keys present."""
    return {attr: raw[key] for key, attr in names.items() if key in raw}


def _host(name: str, mark: Tuple[int, int], raw: LMap) -> m.Host:
    host = m.Host(mark=mark, marks=dict(raw.value_marks), name=name, **_fields(raw, {"target": "target"}))
    for kind, build in (("nics", _nic), ("bridges", _bridge), ("networks", _network), ("vms", _vm)):
        items = raw.get(kind) or LMap(raw.at(kind))
        target = getattr(host, kind)
        for item_name, item in items.items():
            target[item_name] = build(item_name, items.key_marks[item_name],
                                      item if isinstance(item, LMap) else LMap(items.key_marks[item_name]))
    return host


def _nic(name: str, mark: Tuple[int, int], raw: LMap) -> m.Nic:
    return m.Nic(mark=mark, marks=dict(raw.value_marks), name=name,
                 **_fields(raw, {"hwaddr": "hwaddr", "uuid": "uuid", "ip": "ip"}))


def _bridge(name: str, mark: Tuple[int, int], raw: LMap) -> m.Bridge:
    bridge = m.Bridge(mark=mark, marks=dict(raw.value_marks), name=name,
                      **_fields(raw, {"ip": "ip", "gateway": "gateway", "stp": "stp", "delay": "delay",
                                      "external": "external"}))
    bridge.ports = list(raw.get("ports") or [])
    if bridge.gateway == "none":
        bridge.gateway, bridge.no_gateway = None, True
    dns = raw.get("dns")
    if dns == "none":
        bridge.dns, bridge.no_dns = [], True
    else:
        bridge.dns = list(dns or [])
    _item_marks(bridge, raw, "ports")
    return bridge


def _item_marks(obj: m.Located, raw: LMap, key: str) -> None:
    """Remember where each list item was written, as 'key[i]'."""
    items = raw.get(key)
    if isinstance(items, LList):
        for index, mark in enumerate(items.item_marks):
            obj.marks[f"{key}[{index}]"] = mark


def _network(name: str, mark: Tuple[int, int], raw: LMap) -> m.Network:
    net = m.Network(mark=mark, marks=dict(raw.value_marks), name=name,
                    **_fields(raw, {"mode": "mode", "bridge": "bridge", "stp": "stp", "delay": "delay",
                                    "mac": "mac", "uuid": "uuid", "ip": "ip", "autostart": "autostart",
                                    "state": "state", "mtu": "mtu", "dev": "dev"}))
    nat = raw.get("nat")
    if isinstance(nat, LMap):
        net.nat = m.Nat(mark=raw.at("nat"), marks=dict(nat.value_marks), **_fields(nat, {"addresses": "addresses",
                                                                                          "ports": "ports"}))
    bandwidth = raw.get("bandwidth")
    if isinstance(bandwidth, LMap):
        net.bandwidth = m.Bandwidth(mark=raw.at("bandwidth"), marks=dict(bandwidth.value_marks))
        for direction in ("inbound", "outbound"):
            rate = bandwidth.get(direction)
            if isinstance(rate, LMap):
                setattr(net.bandwidth, direction, m.Rate(mark=bandwidth.at(direction), marks=dict(rate.value_marks),
                                                         **_fields(rate, {k: k for k in ("average", "peak", "burst")})))
    forwards = raw.get("forwards")
    if isinstance(forwards, LList):
        for index, item in enumerate(forwards):
            if isinstance(item, LMap):
                net.forwards.append(m.Forward(mark=forwards.item_marks[index], marks=dict(item.value_marks),
                                              **_fields(item, {"proto": "proto", "port": "port", "to": "to"})))
    netdns.load(net, raw)
    net.ports = list(raw.get("ports") or [])
    _item_marks(net, raw, "ports")
    _mode_fields(net, raw)
    dhcp = raw.get("dhcp")
    if isinstance(dhcp, LMap):
        net.dhcp = m.Dhcp(mark=raw.at("dhcp"), marks=dict(dhcp.value_marks),
                          **_fields(dhcp, {"start": "start", "end": "end"}))
        hosts = dhcp.get("hosts") or []
        for index, lease in enumerate(hosts):
            net.dhcp.hosts.append(m.DhcpHost(mark=hosts.item_marks[index], marks=dict(lease.value_marks),
                                             **_fields(lease, {"ip": "ip", "mac": "mac", "name": "name"})))
    netip6.load(net, raw)
    return net


def _vlan(value: Any) -> Optional[List[int]]:
    if value is None:
        return None
    return [value] if isinstance(value, int) else list(value)


def _mode_fields(net: m.Network, raw: LMap) -> None:
    """Keys of the modes direct, hostdev and ovs (their plugins validate them)."""
    net.devs, net.vfs = list(raw.get("devs") or []), list(raw.get("vfs") or [])
    for key in ("devs", "vfs"):
        _item_marks(net, raw, key)
    net.macvtap_mode, net.pf, net.vlan = raw.get("macvtap_mode"), raw.get("pf"), _vlan(raw.get("vlan"))
    groups = raw.get("portgroups")
    if isinstance(groups, LMap):
        for name, group in groups.items():
            group = group if isinstance(group, LMap) else LMap(groups.key_marks[name])
            net.portgroups[name] = m.Portgroup(mark=groups.key_marks[name], marks=dict(group.value_marks), name=name,
                                               default=bool(group.get("default", False)), vlan=_vlan(group.get("vlan")))


def _vm(name: str, mark: Tuple[int, int], raw: LMap) -> m.Vm:
    vm = m.Vm(mark=mark, marks=dict(raw.value_marks), name=name,
              **_fields(raw, {"memory": "memory", "vcpus": "vcpus", "location": "location",
                              "import": "import_", "os_variant": "os_variant", "extra_args": "extra_args",
                              "graphics": "graphics"}))
    disk = raw.get("disk")
    if isinstance(disk, LMap):
        vm.disk_path, vm.disk_size = disk.get("path"), disk.get("size")
        vm.marks["disk.path"] = disk.at("path")
    nics = raw.get("networks") or []
    for index, item in enumerate(nics):
        where = nics.item_marks[index]
        if isinstance(item, LMap):
            vm.networks.append(m.VmNic(mark=where, marks=dict(item.value_marks), network=item.get("network", ""),
                                       mac=item.get("mac")))
        else:
            vm.networks.append(m.VmNic(mark=where, network=item))
    return vm


@paused_gc()
def load_valid(path: str, pm: Any) -> Tuple[m.Profile, Report]:
    """Load and fully validate; raise InvalidProfile (with every problem) on any error."""
    from .validate import validate

    profile, report = load(path, modes=pm_modes(pm))
    if profile is not None:
        validate(profile, report, pm)
    if profile is None or report.errors:
        raise InvalidProfile(report)
    profile.warnings = report.sorted()
    return profile, report


def pm_modes(pm: Any) -> Dict[str, Any]:
    """Every mode the loaded plugins provide, by name."""
    from .plugins import modes

    return modes(pm)

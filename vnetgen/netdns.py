"""A network's DNS (issue 14): `dns:` (libvirt's <dns>, served by the network's dnsmasq) and `domain:`
(<domain>), defined once: loading, validation, XML, the drift kinds (netfields.NetField rows) and
what `virsh net-update` applies live (DNS hosts, TXT and SRV records; forwarders, the domain and
enabling DNS need a restart). A list the profile leaves out is libvirt's to keep, never drift."""
from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Any, Dict, List, Optional, Tuple

from . import model as m

SRV_ATTRS = ("service", "protocol", "domain", "target", "port", "priority", "weight")   # libvirt's order


# --- the profile --------------------------------------------------------------------------------


def _located(cls: Any, raw: Any, mark: Any, keys: Tuple[str, ...]) -> Any:
    return cls(mark=mark, marks=dict(raw.value_marks), **{k: raw[k] for k in keys if k in raw})


def _items(raw: Any, key: str) -> Optional[List[Tuple[Any, Any]]]:
    """(item, mark) of a list the profile gives; None when it leaves the key out."""
    if key not in raw:
        return None
    items = raw.get(key) or []
    return [(item, items.item_marks[i]) for i, item in enumerate(items)]


def load(net: m.Network, raw: Any) -> None:
    """Read `domain:` and `dns:` of a network's raw (already schema-checked) mapping into `net`."""
    domain = raw.get("domain")
    if isinstance(domain, str):
        net.domain = m.Domain(mark=raw.at("domain"), name=domain)
    elif domain is not None and "name" in domain:
        net.domain = _located(m.Domain, domain, raw.at("domain"), ("name", "local_only"))
    dns = raw.get("dns")
    if isinstance(dns, bool):
        net.dns = m.Dns(mark=raw.at("dns"), enable=dns)
    elif dns is not None:
        net.dns = _located(m.Dns, dns, raw.at("dns"), ("forward_plain_names",))
        for key, cls, keys in (("forwarders", m.DnsForwarder, ("addr", "domain")),
                               ("srv", m.DnsSrv, SRV_ATTRS), ("txt", m.DnsTxt, ("name", "value"))):
            found = _items(dns, key)
            if found is not None:
                setattr(net.dns, key, [_located(cls, item, mark, keys) for item, mark in found])
        hosts = _items(dns, "hosts")
        if hosts is not None:
            net.dns.hosts = []
            for item, mark in hosts:
                host = _located(m.DnsHost, item, mark, ("ip",))
                names = item.get("names") or []
                host.names = list(names)
                host.marks.update((f"names[{i}]", at) for i, at in enumerate(names.item_marks))
                net.dns.hosts.append(host)


def name_problem(name: str) -> Optional[str]:
    """Why `name` is no DNS name (labels of 1-63 letters, digits and '-', not starting or ending
    with '-'; at most 253 bytes), or None."""
    bad = sorted(set(re.sub(r"[A-Za-z0-9.-]", "", name)))
    if bad:
        return "only letters, digits, '-' and '.' are allowed, not " + " ".join(repr(c) for c in bad[:5])
    if len(name) > 253:
        return "longer than 253 characters"
    for label in name.split("."):
        if not label:
            return "has an empty label (a leading, trailing or doubled '.')"
        if len(label) > 63:
            return f"label {label[:20]}… is longer than 63 characters"
        if label.startswith("-") or label.endswith("-"):
            return f"label {label!r} starts or ends with '-'"
    return None


def validate(net: m.Network, mode: Any, report: Any) -> None:
    """Located errors for a network's `domain:` and `dns:`."""
    who = f"network {net.name}"
    dns, domain = net.dns, net.domain
    if dns is None and domain is None:
        return
    if not mode.libvirt_bridge:
        for key in ("domain", "dns"):
            if key in net.marks:
                report.error(net.at(key), f"{who}: '{key}' does not apply to mode {net.mode} (libvirt runs no "
                                          "DNS server for a bridge it does not own)")
        return

    def name(obj: Any, key: str, value: Optional[str], what: str) -> None:
        problem = value and name_problem(value)
        if problem:
            report.error(obj.at(key), f"{who}: {what} {value!r} is no DNS name: {problem}")

    if domain is not None:
        name(domain, "name", domain.name, "domain")
        if dns is not None and not dns.enable:
            report.error(domain.mark, f"{who}: 'domain' needs DNS, which 'dns: false' turns off")
    if dns is None or not dns.enable:
        return
    records = [k for k in ("hosts", "forwarders", "srv", "txt") if getattr(dns, k)]
    if net.ip is None and (records or domain is not None):
        report.error(dns.mark if records else domain.mark,  # type: ignore[union-attr]
                     f"{who}: DNS records and the domain need 'ip' on the network (its dnsmasq serves them)")
    names: Dict[Tuple[int, str], m.DnsHost] = {}
    ips: Dict[Any, m.DnsHost] = {}
    for host in dns.hosts or ():
        own = net.interface(host.ip.version) if host.ip is not None else None
        if host.ip is not None and net.ip is not None and (own is None or host.ip not in own.network):
            subnet = "subnets (it has no IPv6 address)" if own is None else \
                f"{'IPv6 ' if own.version == 6 else ''}subnet {own.network}"
            report.error(host.at("ip"), f"{who}: DNS host {host.ip} is outside the network's {subnet}")
        if host.ip in ips:
            report.error(host.at("ip"), f"{who}: DNS host {host.ip} is listed twice (first at line "
                                        f"{ips[host.ip].mark[0]}); give all its names in one entry")
        ips.setdefault(host.ip, host)
        for index, hostname in enumerate(host.names):
            name(host, f"names[{index}]", hostname, "DNS host name")
            key = (host.ip.version if host.ip is not None else 4, hostname.lower())   # a name may have an A and an AAAA
            if key in names:
                report.error(host.at(f"names[{index}]"), f"{who}: DNS name {hostname} is given twice (first at "
                                                         f"line {names[key].mark[0]}, {names[key].ip})")
            names.setdefault(key, host)
    for forwarder in dns.forwarders or ():
        if forwarder.addr is None and forwarder.domain is None:
            report.error(forwarder.mark, f"{who}: a DNS forwarder needs 'addr', 'domain' or both")
        if forwarder.addr is not None:
            try:
                ip_address(forwarder.addr)
            except ValueError:
                report.error(forwarder.at("addr"), f"{who}: DNS forwarder addr {forwarder.addr!r} is not an "
                                                   "IP address")
        name(forwarder, "domain", forwarder.domain, "DNS forwarder domain")
    for srv in dns.srv or ():
        for key in ("domain", "target"):
            name(srv, key, getattr(srv, key), f"SRV {key}")
        given = [k for k in ("port", "priority", "weight") if getattr(srv, k) is not None]
        if given and srv.target is None:
            report.error(srv.at(given[0]), f"{who}: SRV {srv.service}/{srv.protocol}: '{given[0]}' needs "
                                           "'target' (libvirt refuses it without one)")
    for txt in dns.txt or ():
        name(txt, "name", txt.name, "TXT name")


# --- libvirt's XML and net-dumpxml lines ---------------------------------------------------------


def _attr(value: Any) -> str:
    """An attribute value as libvirt escapes it."""
    return (str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def forwarder_attrs(f: Any) -> Dict[str, str]:
    return {k: v for k, v in (("domain", f.domain), ("addr", f.addr)) if v is not None}


def srv_attrs(s: Any) -> Dict[str, str]:
    return {k: str(getattr(s, k)) for k in SRV_ATTRS if getattr(s, k) is not None}


def _line(tag: str, attrs: Dict[str, str]) -> str:
    return f"<{tag} " + " ".join(f"{k}='{_attr(v)}'" for k, v in attrs.items()) + "/>"


def host_lines(ip: Any, names: Any) -> List[str]:
    """A DNS host as net-dumpxml prints it, one line each (the runbook compares them without indentation)."""
    return [f"<host ip='{ip}'>", *(f"<hostname>{_attr(n)}</hostname>" for n in names), "</host>"]


def add_xml(root: Any, net: Any) -> None:
    """<domain> and <dns> of `net`, appended to `root` (where libvirt prints them: after <mac>)."""
    from lxml import etree

    if net.domain is not None:
        domain = etree.SubElement(root, "domain", name=net.domain.name)
        if net.domain.local_only is not None:
            domain.set("localOnly", _yes(net.domain.local_only))
    dns = net.dns
    if dns is None or (dns.enable and not any((dns.hosts, dns.forwarders, dns.srv, dns.txt))
                       and dns.forward_plain_names is None):
        return
    element = etree.SubElement(root, "dns")
    if not dns.enable:
        element.set("enable", "no")
        return
    if dns.forward_plain_names is not None:
        element.set("forwardPlainNames", _yes(dns.forward_plain_names))
    for forwarder in dns.forwarders or ():
        etree.SubElement(element, "forwarder", forwarder_attrs(forwarder))
    for txt in dns.txt or ():
        etree.SubElement(element, "txt", name=txt.name, value=txt.value)
    for srv in dns.srv or ():
        etree.SubElement(element, "srv", srv_attrs(srv))
    for host in dns.hosts or ():
        item = etree.SubElement(element, "host", ip=str(host.ip))
        for hostname in host.names:
            etree.SubElement(item, "hostname").text = hostname


# --- drift kinds (rows netfields.FIELDS makes into NetFields) ---------------------------------------
# Expected values: JSON-able, compared with what the net-dumpxml parser read (facts.model.DnsDef).


def _dns_expected(net: Any) -> Optional[Dict[str, bool]]:
    if net.dns is None:
        return None
    wanted = {"enable": net.dns.enable}
    if net.dns.forward_plain_names is not None:
        wanted["forward_plain_names"] = net.dns.forward_plain_names
    return wanted


def _dns_observed(d: Any, expected: Dict[str, bool]) -> Dict[str, Any]:
    seen = {"enable": d.dns is None or d.dns.enable is not False,
            "forward_plain_names": d.dns.forward_plain_names if d.dns else None}
    return {k: seen[k] for k in expected}


def _dns_tokens(plan: Any, v: Dict[str, bool]) -> Tuple[str, ...]:
    tokens = ("has:<dns enable='no'/>",) if not v["enable"] else ("lacks:<dns enable='no'",)
    if "forward_plain_names" in v:
        tokens += (f"has:forwardPlainNames='{_yes(v['forward_plain_names'])}'",)
    return tokens


def _dns_words(v: Dict[str, bool]) -> str:
    words = "DNS " + ("on" if v["enable"] else "off")
    if "forward_plain_names" in v:
        words += ", plain names " + ("forwarded" if v["forward_plain_names"] else "kept local")
    return words


def _domain_expected(net: Any) -> Optional[Dict[str, Any]]:
    if net.domain is None:
        return None
    wanted: Dict[str, Any] = {"name": net.domain.name}
    if net.domain.local_only is not None:
        wanted["local_only"] = net.domain.local_only
    return wanted


def _domain_observed(d: Any, expected: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if d.dns is None or d.dns.domain is None:
        return None
    seen = {"name": d.dns.domain, "local_only": d.dns.domain_local_only}
    return {k: seen[k] for k in expected}


def _domain_tokens(plan: Any, v: Dict[str, Any]) -> Tuple[str, ...]:
    if "local_only" in v:
        return (f"has:<domain name='{v['name']}' localOnly='{_yes(v['local_only'])}'/>",)
    return (f"has:<domain name='{v['name']}'",)


def _domain_words(v: Dict[str, Any]) -> str:
    return f"domain {v['name']}" + (" (local only)" if v.get("local_only") else "")


def _listed(key: str, form: Any):
    """expected(net): the sorted keys of a DNS list the profile gives, else None."""
    def expected(net: Any) -> Optional[List[str]]:
        items = getattr(net.dns, key, None) if net.dns is not None and net.dns.enable else None
        return None if items is None else sorted(form(item) for item in items)
    return expected


def host_key(host: Any) -> str:
    return f"{host.ip} " + " ".join(host.names)


def forwarder_key(f: Any) -> str:
    return _line("forwarder", forwarder_attrs(f))


def txt_key(t: Any) -> str:
    return _line("txt", {"name": t.name, "value": t.value})


def srv_key(s: Any) -> str:
    return _line("srv", srv_attrs(s))


def _observed_list(key: str, form: Any):
    def observed(d: Any, expected: Any) -> List[str]:
        return sorted(form(item) for item in (getattr(d.dns, key) if d.dns else ()))
    return observed


def _host_tokens(plan: Any, v: List[str]) -> Tuple[str, ...]:
    """Each host's lines (joined by newlines: it spans several) and their count."""
    return tuple("has:" + "\n".join(host_lines(*_split(k))) for k in v) + (f"count:{len(v)}:<host ip=",)


def _line_tokens(tag: str):
    return lambda plan, v: tuple(f"has:{line}" for line in v) + (f"count:{len(v)}:<{tag} ",)


def _counted(what: str):
    return lambda v: f"{len(v)} {what}" + ("" if len(v) == 1 else "s")


def _host_xml(key: str) -> str:
    """The one-line XML `virsh net-update … dns-host` takes."""
    return "".join(host_lines(*_split(key)))


def _updates(xml: Any):
    """(verb, XML) pairs of `virsh net-update` that turn `actual` into `expected`."""
    return lambda expected, actual: [(verb, xml(k)) for verb, k in _changes(actual, expected)]


# (kind, summary, expected, observed, tokens, words[, live section, updates]): netfields.NetField's fields.
DNS_ROWS: Tuple[Tuple[Any, ...], ...] = (
    ("dns", "DNS on or off (`<dns enable>`, `forwardPlainNames`), when the profile gives `dns`",
     _dns_expected, _dns_observed, _dns_tokens, _dns_words),
    ("domain", "the network's DNS domain (`<domain name localOnly>`), when set",
     _domain_expected, _domain_observed, _domain_tokens, _domain_words),
    ("dns-forwarder", "the upstream DNS servers (`<forwarder>`), when the profile lists them",
     _listed("forwarders", forwarder_key), _observed_list("forwarders", forwarder_key),
     _line_tokens("forwarder"), _counted("DNS forwarder")),
    ("dns-host", "the names the network's dnsmasq answers (`<dns><host>`), when the profile lists them "
     "(fixed live with `virsh net-update`, no restart)",
     _listed("hosts", host_key), _observed_list("hosts", host_key), _host_tokens, _counted("DNS host"),
     "dns-host", _updates(_host_xml)),
    ("dns-txt", "TXT records (`<txt>`), when the profile lists them (fixed live, no restart)",
     _listed("txt", txt_key), _observed_list("txts", txt_key), _line_tokens("txt"),
     _counted("TXT record"), "dns-txt", _updates(lambda k: k)),
    ("dns-srv", "SRV records (`<srv>`), when the profile lists them (fixed live, no restart)",
     _listed("srv", srv_key), _observed_list("srvs", srv_key), _line_tokens("srv"),
     _counted("SRV record"), "dns-srv", _updates(lambda k: k)),
)


def _changes(before: List[str], after: List[str]) -> List[Tuple[str, str]]:
    return [("delete", k) for k in before if k not in after] + [("add", k) for k in after if k not in before]


def live_updates(old: Any, new: Any) -> List[Tuple[str, str, str, str]]:
    """(verb, section, net-update XML, net-dumpxml token) that bring a running network from `old`'s DNS
    records to `new`'s without a restart; a list `new` leaves out loses what `old` listed."""
    out = []
    for kind, _, expected, *_, live, _ in (row for row in DNS_ROWS if len(row) > 6):
        for verb, key in _changes(expected(old.net) or [], expected(new.net) or []):
            xml, token = (_host_xml(key), "\n".join(host_lines(*_split(key)))) if kind == "dns-host" else (key, key)
            out.append((verb, live, xml, token))
    return out


def _split(key: str) -> Tuple[str, List[str]]:
    ip, *names = key.split(" ")
    return ip, names

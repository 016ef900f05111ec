"""DNS on libvirt networks (issue 14): `dns:` and `domain:` — located errors, XML libvirt accepts, the
runbook's tokens run by bash against libvirt's own net-dumpxml, audit drift (DNS hosts beside DHCP
hosts), what applies live, REVIEW.md."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from test_profile_grows import SEPARATOR, _pm, _virsh_session  # the same virsh test-driver session
from test_profile_grows import _variant as grows_variant
from vnetgen.cli import app

DNS = ROOT / "tests" / "fixtures" / "grow" / "dns.yaml"
runner = CliRunner()
NETS = ("lan", "routed", "quiet")


def _variant(tmp_path: Path, *edits) -> Path:
    return grows_variant(tmp_path, *edits, source=DNS)


def test_the_dns_profile_is_valid():
    result = runner.invoke(app, ["validate", str(DNS)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("edits, needle, message", [
    ((("{ip: 192.168.150.11, names: [web]}", "{ip: 192.168.151.11, names: [web]}"),), "names: [web]",
     "DNS host 192.168.151.11 is outside the network's subnet 192.168.150.0/24"),
    ((("names: [web]", "names: [web, DB]"),), "names: [web", "DNS name DB is given twice"),
    ((("{ip: 192.168.150.11, names: [web]}", "{ip: 192.168.150.10, names: [web]}"),), "names: [web]",
     "DNS host 192.168.150.10 is listed twice"),
    ((("domain: routed.lan", "domain: routed..lan"),), "domain: routed", "is no DNS name: has an empty label"),
    ((("names: [web]", "names: [-web]"),), "names: [-web", "label '-web' starts or ends with '-'"),
    ((("domain: routed.lan", "domain: rout_ed.lan"),), "domain: rout_ed", "'rout_ed.lan' is no DNS name: only letters, digits, '-' and '.' are allowed, not '_'"),
    ((("bridge: br0\n", "bridge: br0\n    dns: {hosts: [{ip: 10.0.0.1, names: [a]}]}\n"),), "dns: {hosts: [{ip: 10",
     "'dns' does not apply to mode bridge"),
    ((("port: 389", "port: 65536"),), "port: 65536", "65536 is out of range 0..65535"),
    ((("target: db.example.lan, port", "port"),), "service: ldap", "'port' needs 'target'"),
    ((("{domain: local.lan}", "{}"),), "- {}", "a DNS forwarder needs 'addr', 'domain' or both"),
    ((("{addr: 1.1.1.1}", "{addr: 1.1.1}"),), "addr: 1.1.1}", "is not an IP address"),
    ((("dns: false", "dns: false\n    domain: quiet.lan\n    ip: 10.9.0.1/24"),), "domain: quiet.lan",
     "'domain' needs DNS, which 'dns: false' turns off"),
])
def test_bad_dns_is_a_located_error(tmp_path, edits, needle, message):
    path = _variant(tmp_path, *edits)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: error: .*{re.escape(message)}", result.output), result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("dns") / "build"
    result = runner.invoke(app, ["build", str(DNS), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_xml_in_libvirts_order_and_valid_against_relaxng(bundle):
    from lxml import etree

    from vnetgen.xml import rng_errors, rng_path

    lan = etree.parse(str(bundle / "kvm1" / "networks" / "lan.xml")).getroot()
    assert [e.tag for e in lan] == ["name", "uuid", "forward", "bridge", "mac", "domain", "dns", "ip"]
    assert [e.tag for e in lan.find("dns")] == ["forwarder"] * 3 + ["txt", "srv", "host", "host"]
    quiet = etree.parse(str(bundle / "kvm1" / "networks" / "quiet.xml")).getroot()
    assert dict(quiet.find("dns").attrib) == {"enable": "no"} and len(quiet.find("dns")) == 0
    if rng_path() is None:
        pytest.skip("libvirt's network.rng is not installed")
    for xml in sorted((bundle / "kvm1" / "networks").glob("*.xml")):
        assert rng_errors(xml.read_text()) is None, xml


@pytest.fixture(scope="module")
def dumped(bundle):
    """Each network defined, started and dumped by libvirt's test driver: {name: live net-dumpxml}."""
    xml_dir = bundle / "kvm1" / "networks"
    commands = []
    for name in NETS:
        commands += [f"net-define {xml_dir / name}.xml", f"net-start {name}", f"net-autostart {name}",
                     f"echo {SEPARATOR}", f"net-dumpxml {name}"]
    commands += [f"echo {SEPARATOR}", "net-list --all"]
    parts = [part.lstrip("\n") for part in _virsh_session("; ".join(commands)).split(SEPARATOR)]
    found = dict(zip(NETS, parts[1:]))
    found["net-list"] = "".join(line + "\n" for line in parts[-1].splitlines() if line.split()[:1] != ["default"])
    return found


def test_virsh_test_driver_keeps_the_dns(dumped):
    assert "<domain name='example.lan' localOnly='yes'/>" in dumped["lan"]
    assert "<forwarder domain='corp.lan' addr='10.0.0.53'/>" in dumped["lan"]
    assert "<hostname>db.example.lan</hostname>" in dumped["lan"]
    assert "<dns enable='no'/>" in dumped["quiet"]


def _bash_match(bundle: Path, check, xml: str) -> bool:
    """The runbook's own net_xml_match (bash), on `xml` as its net-dumpxml."""
    runbook = (bundle / "kvm1" / "runbook.sh").read_text()
    function = re.search(r"^net_xml_match\(\) \{.*?^\}\n", runbook, re.S | re.M).group(0)
    script = ("declare -A NET_XML NET_XML_INACTIVE NET_DEFINED\nnet_cached() { return 0; }\n" + function +
              f"NET_XML[{check.network}]=\"$(sed 's/^[[:space:]]*//' <<'XML'\n{xml}XML\n)\"$'\\n'\n" + check.test)
    return subprocess.run(["bash", "-c", script], timeout=30).returncode == 0


def _plan():
    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    return plan_profile(load_valid(str(DNS), _pm())[0], _pm())[0]


DNS_KINDS = {"dns", "domain", "dns-forwarder", "dns-host", "dns-txt", "dns-srv", "dhcp-host"}


def test_runbook_checks_hold_on_libvirts_own_output(bundle, dumped):
    """Every DNS check, and dhcp-host beside DNS hosts (both print `<host `), holds in bash on what
    libvirt printed; each fails once its part is removed."""
    seen = set()
    for check in _plan().checks:
        if check.kind not in DNS_KINDS or check.network not in NETS:
            continue
        xml = dumped[check.network]
        assert _bash_match(bundle, check, xml), (check.id, check.test)
        seen.add(check.kind)
    assert seen == DNS_KINDS
    lan = [c for c in _plan().checks if c.network == "lan"]
    broken = {
        "dhcp-host": dumped["lan"].replace("<host name='batch' ip='192.168.150.21'/>\n", ""),
        "dns-host": dumped["lan"].replace("<hostname>web</hostname>", "<hostname>www</hostname>"),
        "dns-forwarder": dumped["lan"].replace("<forwarder addr='1.1.1.1'/>\n", ""),
        "domain": dumped["lan"].replace("localOnly='yes'", "localOnly='no'"),
        "dns-srv": dumped["lan"].replace("port='389'", "port='636'"),
    }
    for kind, xml in broken.items():
        check = next(c for c in lan if c.kind == kind)
        assert not _bash_match(bundle, check, xml), kind
    extra_lease = dumped["lan"].replace("<range ", "<host mac='52:54:00:aa:bb:09' ip='192.168.150.29'/>\n<range ")
    assert not _bash_match(bundle, next(c for c in lan if c.kind == "dhcp-host"), extra_lease)


def _capture(tmp_path: Path, dumped) -> Path:
    host = tmp_path / "captures" / "kvm1"
    (host / "net").mkdir(parents=True)
    (host / "virsh-net-list.txt").write_text(" Name     State    Autostart   Persistent\n"
                                             "----------------------------------------------\n" + dumped["net-list"])
    for name in NETS:
        (host / "net" / f"{name}.xml").write_text(dumped[name])
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\n")
    return host.parent


def _drift(captures: Path, profile=DNS):
    from vnetgen.audit import audit_captures

    report = audit_captures(str(profile), captures, pm=_pm())
    return [(d["kind"], d["object"], d["actual"], d["fix"]) for d in report["hosts"]["kvm1"]["drift"]
            if d["object"] not in ("network/hostbr", "bridge/br0")]  # not captured here


def test_audit_dns_and_dhcp_hosts_side_by_side_in_sync(tmp_path, dumped):
    assert _drift(_capture(tmp_path, dumped)) == []


def test_audit_reports_dns_drift_and_a_removed_dhcp_host(tmp_path, dumped):
    captures = _capture(tmp_path, dumped)
    lan = captures / "kvm1" / "net" / "lan.xml"
    text = lan.read_text()
    text = text.replace("<host name='batch' ip='192.168.150.21'/>\n", "")
    text = text.replace("    <host ip='192.168.150.11'>\n      <hostname>web</hostname>\n    </host>\n", "")
    text = text.replace("<forwarder addr='1.1.1.1'/>", "<forwarder addr='9.9.9.9'/>")
    lan.write_text(text)
    quiet = captures / "kvm1" / "net" / "quiet.xml"
    quiet.write_text(quiet.read_text().replace("  <dns enable='no'/>\n", ""))
    drift = {kind: (actual, fix) for kind, _, actual, fix in _drift(captures)}
    assert set(drift) == {"dns-forwarder", "dns-host", "dhcp-host", "dns"}
    assert drift["dns-host"][0] == ["192.168.150.10 db db.example.lan"]
    assert drift["dns-host"][1] == ("virsh net-update lan add dns-host "
                                   "\"<host ip='192.168.150.11'><hostname>web</hostname></host>\" --live --config")
    assert drift["dhcp-host"][0] == ["52:54:00:aa:bb:01|app|192.168.150.20"]
    assert drift["dns-forwarder"][1].startswith("virsh net-define networks/lan.xml")   # a restart, not live
    assert drift["dns"][0] == {"enable": True}


def test_dns_records_left_out_are_libvirts(tmp_path, dumped):
    """A profile without `dns:` for lan: whatever DNS libvirt has there is not drift (nor dhcp-host)."""
    profile = _variant(tmp_path, ("      forward_plain_names: false\n", ""))
    text = profile.read_text()
    text = re.sub(r"    domain: \{name: example.lan, local_only: true\}\n    dns:\n(      .*\n)+", "", text)
    profile.write_text(text)
    assert "dns" not in text.split("routed:")[0].split("lan:")[1]
    assert _drift(_capture(tmp_path, dumped), profile) == []


def test_diff_and_runbook_apply_dns_hosts_live(tmp_path):
    new = _variant(tmp_path / "new", ("names: [web]", "names: [web, www]"))
    result = runner.invoke(app, ["diff", str(DNS), str(new)])
    assert result.exit_code == 0, result.output
    assert "network lan: dns-host: 2 DNS hosts → 2 DNS hosts; added 192.168.150.11 web www; removed " \
           "192.168.150.11 web (applies live, no restart)" in result.output, result.output
    restart = _variant(tmp_path / "restart", ("{addr: 1.1.1.1}", "{addr: 9.9.9.9}"))
    result = runner.invoke(app, ["diff", str(DNS), str(restart)])
    assert "network lan: dns-forwarder:" in result.output and "(network restarts" in result.output, result.output
    out = tmp_path / "build"
    result = runner.invoke(app, ["build", str(new), "-o", str(out), "--against", str(DNS)])
    assert result.exit_code == 0, result.output
    runbook = (out / "kvm1" / "runbook.sh").read_text()
    assert ("net_update lan delete dns-host \"<host ip='192.168.150.11'><hostname>web</hostname></host>\""
            in runbook), runbook
    assert "net_update lan add dns-host \"<host ip='192.168.150.11'><hostname>web</hostname><hostname>www" \
           "</hostname></host>\"" in runbook


def test_review_names_the_dns(bundle):
    review = (bundle / "REVIEW.md").read_text()
    assert ("DNS on, plain names kept local, domain example.lan (local only), 3 DNS forwarders, 2 DNS hosts, "
            "1 TXT record, 1 SRV record; active") in review
    assert "- `quiet`: isolated on bridge `virbr9`, DNS off; active" in review


# --- import: the DNS comes back as profile keys ---------------------------------------------------

def test_import_models_the_dns_and_audits_in_sync(tmp_path, dumped):
    """libvirt's own net-dumpxml of the DNS profile's networks imports with `domain` and `dns` (nothing
    of them "not modelled"), and the audit of the same capture against the imported profile is in sync."""
    captures = _capture(tmp_path, dumped)
    out = tmp_path / "imported.yaml"
    result = runner.invoke(app, ["import", "--captures", str(captures), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for line in ("domain: {name: example.lan, local_only: true}", "domain: routed.lan", "dns: false",
                 "forward_plain_names: false",
                 "- {ip: 192.168.150.10, names: [db, db.example.lan]}", "- {ip: 192.168.150.11, names: [web]}",
                 "- {addr: 1.1.1.1}", "- {addr: 10.0.0.53, domain: corp.lan}", "- {domain: local.lan}",
                 "- {service: ldap, protocol: tcp, domain: example.lan, target: db.example.lan, port: 389, "
                 "priority: 10, weight: 5}", '- {name: example.lan, value: "v=spf1 -all"}'):
        assert line in text, text
    assert not re.search(r"not modelled.*(dns|domain)", text + result.output), text + result.output
    assert _drift(captures, out) == []
    # and the imported profile builds the same <dns> libvirt had (the round trip, not an echo)
    again = tmp_path / "again"
    assert runner.invoke(app, ["build", str(out), "-o", str(again)]).exit_code == 0
    lan = (again / "kvm1" / "networks" / "lan.xml").read_text()
    assert '<forwarder domain="corp.lan" addr="10.0.0.53"/>' in lan and "<hostname>db.example.lan</hostname>" in lan


def test_import_keeps_dns_it_cannot_say_as_a_comment(tmp_path, dumped):
    """A DNS host name that is no DNS name for the profile (libvirt's test driver does not check) stays
    "not modelled", with the rest of the network imported."""
    captures = _capture(tmp_path, dumped)
    lan = captures / "kvm1" / "net" / "lan.xml"
    lan.write_text(lan.read_text().replace("<hostname>web</hostname>", "<hostname>we_b</hostname>"))
    out = tmp_path / "imported.yaml"
    result = runner.invoke(app, ["import", "--captures", str(captures), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "# not modelled: <dns>" in text and "# not modelled: <domain>" in text, text
    assert "domain: routed.lan" in text and "dns: false" in text


# --- IPv6 DNS hosts (AAAA records) on a dual-stack network -------------------------------------------

DUAL = """\
vnetgen: 1
host: kvm1
networks:
  dual:
    mode: nat
    bridge: virbr6
    ips:
      - address: 192.168.160.1/24
      - address: fd00:160::1/64
    domain: example.lan
    dns:
      hosts:
        - {ip: 192.168.160.5, names: [db]}
        - {ip: "fd00:160::5", names: [db6, db]}
"""


@pytest.mark.parametrize("old, new, at, message", [
    ('ip: "fd00:160::5"', 'ip: "fd00:161::5"', "14:16",
     "network dual: DNS host fd00:161::5 is outside the network's IPv6 subnet fd00:160::/64"),
    ("names: [db6, db]", "names: [db6, db6]", "14:44", "network dual: DNS name db6 is given twice"),
    ("      - address: fd00:160::1/64\n", "", "13:16",
     "network dual: DNS host fd00:160::5 is outside the network's subnets (it has no IPv6 address)"),
])
def test_bad_ipv6_dns_hosts_are_located_errors(tmp_path, old, new, at, message):
    profile = tmp_path / "dual.yaml"
    assert old in DUAL
    profile.write_text(DUAL.replace(old, new))
    result = runner.invoke(app, ["validate", str(profile)])
    assert result.exit_code == 2 and f"dual.yaml:{at}: error: {message}" in result.output, result.output


def test_ipv6_dns_hosts_give_a_name_its_aaaa_record_and_round_trip(tmp_path):
    """A name may have an IPv4 and an IPv6 host (an A and an AAAA record): the XML is valid and libvirt's
    test driver keeps both; the runbook's check holds in bash on libvirt's own output and fails without
    the IPv6 host; the audit of that output is in sync; import gives the same hosts back."""
    from vnetgen.xml import rng_errors

    profile = tmp_path / "dual.yaml"
    profile.write_text(DUAL)
    out = tmp_path / "build"
    result = runner.invoke(app, ["build", str(profile), "-o", str(out)])
    assert result.exit_code == 0, result.output
    xml = out / "kvm1" / "networks" / "dual.xml"
    assert rng_errors(xml.read_text()) is None
    dumped = _virsh_session(f"net-define {xml}; net-start dual; echo {SEPARATOR}; net-dumpxml dual; "
                            f"echo {SEPARATOR}; net-list --all").split(SEPARATOR)
    live = dumped[1].lstrip("\n")
    assert "<host ip='fd00:160::5'>\n      <hostname>db6</hostname>\n      <hostname>db</hostname>" in live, live

    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    plan = plan_profile(load_valid(str(profile), _pm())[0], _pm())[0]
    check = next(c for c in plan.checks if c.kind == "dns-host")
    assert _bash_match(out, check, live)
    without = live.replace("    <host ip='fd00:160::5'>\n      <hostname>db6</hostname>\n      <hostname>db</hostname>\n"
                           "    </host>\n", "")
    assert without != live and not _bash_match(out, check, without)

    host = tmp_path / "captures" / "kvm1"
    (host / "net").mkdir(parents=True)
    net_list = "".join(line + "\n" for line in dumped[2].strip("\n").splitlines() if line.split()[:1] != ["default"])
    (host / "virsh-net-list.txt").write_text(" Name     State    Autostart   Persistent\n"
                                             "----------------------------------------------\n" + net_list)
    (host / "net" / "dual.xml").write_text(live)
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n")
    assert [d for d in _drift(host.parent, profile) if d[0].startswith("dns")] == []
    (host / "net" / "dual.xml").write_text(without)
    assert [d[2] for d in _drift(host.parent, profile) if d[0] == "dns-host"] == [["192.168.160.5 db"]]
    (host / "net" / "dual.xml").write_text(live)

    imported = tmp_path / "imported.yaml"
    result = runner.invoke(app, ["import", "--captures", str(host.parent), "-o", str(imported)])
    assert result.exit_code == 0, result.output
    text = imported.read_text()
    assert "- {ip: 192.168.160.5, names: [db]}" in text and "- {ip: fd00:160::5, names: [db6, db]}" in text, text
    assert not re.search(r"not modelled.*(dns|domain)", text), text
    assert [d for d in _drift(host.parent, imported) if d[0].startswith("dns")] == []

"""Profile v1 grows (issue 14): mtu, forward dev, NAT ranges and bandwidth — validation, XML that libvirt
accepts, the runbook's tokens against real net-dumpxml output, audit drift, diff and REVIEW.md."""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from vnetgen.cli import app

TUNED = ROOT / "tests" / "fixtures" / "grow" / "tuned.yaml"
runner = CliRunner()


@functools.lru_cache(maxsize=None)
def _pm():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


def _variant(tmp_path: Path, *edits, source: Path = TUNED) -> Path:
    text = source.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "profile.yaml"
    out.write_text(text)
    return out


def _errors(path: Path):
    result = runner.invoke(app, ["validate", str(path)])
    return result.exit_code, result.output


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- validation: located errors, exit 2 -----------------------------------------------------

def test_the_tuned_profile_is_valid():
    code, output = _errors(TUNED)
    assert code == 0, output


@pytest.mark.parametrize("edits, needle, message", [
    ((("mode: route\n", "mode: route\n    nat: {ports: 2000-3000}\n"),), "nat: {ports",
     "'nat' does not apply to mode route (only to mode nat)"),
    ((("192.0.2.10-192.0.2.20", "192.168.150.200-192.168.150.210"),), "addresses:",
     "inside the guests' own subnet 192.168.150.0/24"),
    ((("192.0.2.10-192.0.2.20", "192.0.2.30-192.0.2.20"),), "addresses:", "start 192.0.2.30 is after end 192.0.2.20"),
    ((("192.0.2.10-192.0.2.20", "192.0.2.300"),), "addresses:", "each an IPv4 address"),
    ((("ports: 2000-3000", "ports: 0-3000"),), "addresses:", "each an port 1-65535"),
    ((("ports: 2000-3000", "ports: 3000-2000"),), "addresses:", "start 3000 is after end 2000"),
    ((("mtu: 1500", "mtu: 1500\n    dev: eth0"),), "dev: eth0\n    bandwidth: {out",
     "'dev' does not apply to mode isolated (only to mode direct, nat, route)"),
    ((("    dev: eth0\n    mtu: 1400", "    dev: virbr8\n    mtu: 1400"),), "dev: virbr8",
     "dev virbr8 is the network's own bridge"),
    ((("peak: 5000", "peak: 500"),), "peak: 500", "bandwidth inbound peak 500 is below its average 1000"),
    ((("outbound: {average: 64}", "outbound: {peak: 64}"),), "outbound: {peak",
     "missing required key 'average'"),
    ((("mtu: 9000", "mtu: 20"),), "mtu: 20", "mtu"),
])
def test_bad_input_is_a_located_error(tmp_path, edits, needle, message):
    path = _variant(tmp_path, *edits)
    code, output = _errors(path)
    assert code == 2, output
    line = _line_of(path, needle.split("\n")[0]) if "\n" not in needle else \
        path.read_text()[:path.read_text().index(needle)].count("\n") + 1
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: error: .*{re.escape(message)}", output), output
    assert "Traceback" not in output


def test_forward_dev_is_refused_where_libvirt_refuses_it(tmp_path):
    """libvirt: "forward dev not allowed for network … with forward mode='open'" (checked with virsh's
    test driver); a host bridge cannot take one either."""
    path = _variant(tmp_path, ("mode: route\n", "mode: open\n"))
    code, output = _errors(path)
    assert code == 2 and "'dev' does not apply to mode open (only to mode direct, nat, route)" in output, output


def test_the_json_schema_lists_the_new_keys():
    import json

    result = runner.invoke(app, ["schema"])
    network = json.loads(result.output)["properties"]["networks"]["additionalProperties"]["properties"]
    assert {"mtu", "dev", "nat", "bandwidth"} <= set(network)
    assert network["bandwidth"]["properties"]["inbound"]["required"] == ["average"]


def test_mtu_and_bandwidth_do_not_apply_to_a_host_bridge(tmp_path):
    path = _variant(tmp_path, source=ROOT / "profiles" / "bridged.yaml")
    text = path.read_text()
    text = re.sub(r"(\n( +)mode: bridge\n)", r"\1\2mtu: 9000\n\2bandwidth: {inbound: {average: 10}}\n\2dev: eno1\n",
                  text, count=1)
    path.write_text(text)
    code, output = _errors(path)
    assert code == 2
    for key in ("'mtu' does not apply to mode bridge", "'bandwidth' does not apply to mode bridge",
                "'dev' does not apply to mode bridge"):
        assert key in output, output


# --- XML: built with lxml, accepted by libvirt ------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "build"
    result = runner.invoke(app, ["build", str(TUNED), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_xml_carries_every_new_field(bundle):
    from lxml import etree

    tuned = etree.parse(str(bundle / "kvm1" / "networks" / "tuned.xml")).getroot()
    forward = tuned.find("forward")
    assert (forward.get("mode"), forward.get("dev")) == ("nat", "eth0")
    assert dict(forward.find("nat/address").attrib) == {"start": "192.0.2.10", "end": "192.0.2.20"}
    assert dict(forward.find("nat/port").attrib) == {"start": "2000", "end": "3000"}
    assert tuned.find("mtu").get("size") == "9000"
    assert dict(tuned.find("bandwidth/inbound").attrib) == {"average": "1000", "peak": "5000", "burst": "1024"}
    assert dict(tuned.find("bandwidth/outbound").attrib) == {"average": "128"}
    # libvirt's element order: forward, bridge, mtu, mac, bandwidth, ip
    assert [e.tag for e in tuned] == ["name", "uuid", "forward", "bridge", "mtu", "mac", "bandwidth", "ip"]
    routed = etree.parse(str(bundle / "kvm1" / "networks" / "routed.xml")).getroot()
    assert routed.find("forward/nat") is None and routed.find("forward").get("dev") == "eth0"


def test_xml_validates_against_libvirts_relaxng(bundle):
    from vnetgen.xml import rng_errors, rng_path

    if rng_path() is None:
        pytest.skip("libvirt's network.rng is not installed")
    for xml in sorted((bundle / "kvm1" / "networks").glob("*.xml")):
        assert rng_errors(xml.read_text()) is None, xml


def _virsh_session(commands: str) -> str:
    """One virsh process (the test driver's state lives as long as it does)."""
    require_tool("virsh")
    result = subprocess.run(["virsh", "-q", "-c", "test:///default", commands], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


SEPARATOR = "=====vnetgen====="


@pytest.fixture(scope="module")
def dumped(bundle):
    """Each network defined, started and dumped by libvirt's test driver: {name: (inactive, live)}."""
    names = ["tuned", "routed", "quiet"]
    xml_dir = bundle / "kvm1" / "networks"
    commands = []
    for name in names:
        commands += [f"net-define {xml_dir / name}.xml", f"echo {SEPARATOR}", f"net-dumpxml {name}",
                     f"echo {SEPARATOR}", f"net-start {name}", f"net-autostart {name}", f"echo {SEPARATOR}",
                     f"net-dumpxml {name}"]
    commands += [f"echo {SEPARATOR}", "net-list --all"]
    # virsh -q prints `echo` without a newline
    parts = [part.lstrip("\n") for part in _virsh_session("; ".join(commands)).split(SEPARATOR)]
    found = {}
    for index, name in enumerate(names):
        found[name] = (parts[1 + 3 * index], parts[3 + 3 * index])
    # the test driver's own `default` network is not the profile's
    found["net-list"] = "".join(line + "\n" for line in parts[-1].splitlines() if line.split()[:1] != ["default"])
    return found


def test_virsh_test_driver_keeps_every_field(dumped):
    inactive, live = dumped["tuned"]
    for text in (inactive, live):
        assert "<mtu size='9000'/>" in text
        assert "<address start='192.0.2.10' end='192.0.2.20'/>" in text
        assert "<inbound average='1000' peak='5000' burst='1024'/>" in text


def test_runbook_tokens_match_what_libvirt_prints(dumped):
    """The runbook's net_xml_match compares net-dumpxml lines (leading blanks stripped) with each
    check's tokens: every new field's token must be found in libvirt's own output, both ways."""
    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    plan = plan_profile(load_valid(str(TUNED), _pm())[0], _pm())[0]
    new_kinds = {"mtu", "forward-dev", "nat-range", "bandwidth", "forward-mode"}
    seen = set()
    for check in plan.checks:
        if check.kind not in new_kinds:
            continue
        for text in dumped[check.network]:
            stripped = "\n".join(line.lstrip() for line in text.splitlines())
            for token in check.tokens:
                verb, _, wanted = token.partition(":")
                assert (wanted in stripped) == (verb == "has"), (check.id, token)
        seen.add(check.kind)
    assert seen == new_kinds


# --- audit: drift on each new field, not on what libvirt fills in ---------------------------------

def _capture(tmp_path: Path, dumped) -> Path:
    host = tmp_path / "captures" / "kvm1"
    (host / "net").mkdir(parents=True)
    (host / "virsh-net-list.txt").write_text(" Name     State    Autostart   Persistent\n"
                                             "----------------------------------------------\n" + dumped["net-list"])
    for name in ("tuned", "routed", "quiet"):
        (host / "net" / f"{name}.xml").write_text(dumped[name][1])
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\n")
    return host.parent


def _drift(captures: Path, profile=TUNED):
    from vnetgen.audit import audit_captures

    report = audit_captures(str(profile), captures, pm=_pm())
    return [(d["kind"], d["object"], d["expected"], d["actual"]) for d in report["hosts"]["kvm1"]["drift"]]


def test_audit_of_libvirts_own_output_is_in_sync(tmp_path, dumped):
    assert _drift(_capture(tmp_path, dumped)) == []


def test_audit_reports_drift_on_each_new_field(tmp_path, dumped):
    captures = _capture(tmp_path, dumped)
    tuned = captures / "kvm1" / "net" / "tuned.xml"
    text = tuned.read_text()
    text = text.replace("<mtu size='9000'/>", "<mtu size='1500'/>")
    text = text.replace("<port start='2000' end='3000'/>", "<port start='1024' end='65535'/>")
    text = text.replace(" peak='5000'", "")
    text = text.replace("<forward dev='eth0' mode='nat'>", "<forward mode='nat'>").replace(
        "<interface dev='eth0'/>\n", "")
    tuned.write_text(text)
    assert _drift(captures) == [
        ("mtu", "network/tuned", 9000, 1500),
        ("forward-dev", "network/tuned", "eth0", None),
        ("nat-range", "network/tuned", {"addresses": "192.0.2.10-192.0.2.20", "ports": "2000-3000"},
         {"addresses": "192.0.2.10-192.0.2.20", "ports": "1024-65535"}),
        ("bandwidth", "network/tuned", {"inbound": {"average": 1000, "peak": 5000, "burst": 1024},
                                        "outbound": {"average": 128}},
         {"inbound": {"average": 1000, "burst": 1024}, "outbound": {"average": 128}}),
    ]


def test_libvirts_default_nat_ports_are_not_drift(tmp_path, dumped):
    """A profile that sets NAT addresses only: the ports libvirt fills in when it starts are its own."""
    profile = _variant(tmp_path, ("nat: {addresses: 192.0.2.10-192.0.2.20, ports: 2000-3000}",
                                  "nat: {addresses: 192.0.2.10-192.0.2.20}"))
    captures = _capture(tmp_path, dumped)
    edit = captures / "kvm1" / "net" / "tuned.xml"
    edit.write_text(edit.read_text().replace("<port start='2000' end='3000'/>", "<port start='1024' end='65535'/>"))
    assert _drift(captures, profile) == []
    # and a field the profile leaves out (here quiet's mtu) is libvirt's to choose
    without = _variant(tmp_path, ("    mtu: 1500\n", ""))
    assert _drift(_capture(tmp_path / "again", dumped), without) == []


# --- diff and REVIEW.md --------------------------------------------------------------------------

def test_diff_says_the_new_fields_need_a_restart(tmp_path):
    new = _variant(tmp_path, ("mtu: 9000", "mtu: 1500"), ("ports: 2000-3000", "ports: 2000-4000"))
    old = tmp_path / "old.yaml"
    shutil.copy(TUNED, old)
    result = runner.invoke(app, ["diff", str(old), str(new)])
    assert "network tuned: mtu: MTU 9000 → MTU 1500 (network restarts" in result.output, result.output
    assert ("network tuned: nat-range: NAT addresses 192.0.2.10-192.0.2.20, ports 2000-3000 → NAT addresses "
            "192.0.2.10-192.0.2.20, ports 2000-4000 (network restarts") in result.output
    dropped = _variant(tmp_path / "d", ("    mtu: 1500\n", ""))
    result = runner.invoke(app, ["diff", str(old), str(dropped)])
    assert "network quiet: mtu: MTU 1500 → libvirt's default (network restarts" in result.output, result.output


def test_review_names_the_new_fields(bundle):
    review = (bundle / "REVIEW.md").read_text()
    assert ("- `tuned`: nat on bridge `virbr7`, 192.168.150.1/24, DHCP 192.168.150.2–192.168.150.9, MTU 9000, "
            "forwarding through eth0, NAT addresses 192.0.2.10-192.0.2.20, ports 2000-3000, bandwidth inbound "
            "1000 kB/s peak 5000 kB/s burst 1024 kB, outbound 128 kB/s; active") in review


# --- import: the new settings come back as profile keys --------------------------------------------

def test_import_models_the_new_settings_and_audits_in_sync(tmp_path, dumped):
    captures = _capture(tmp_path, dumped)
    out = tmp_path / "imported.yaml"
    result = runner.invoke(app, ["import", "--captures", str(captures), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for line in ("mtu: 9000", "dev: eth0", "nat: {addresses: 192.0.2.10-192.0.2.20, ports: 2000-3000}",
                 "bandwidth: {inbound: {average: 1000, peak: 5000, burst: 1024}, outbound: {average: 128}}",
                 "bandwidth: {outbound: {average: 64}}"):
        assert line in text, text
    assert not re.search(r"^\s*# not modelled", text, re.M), text
    assert _drift(captures, out) == []

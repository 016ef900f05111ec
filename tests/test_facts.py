"""Tests of vnetgen.facts against fixtures recorded from the real tools (tests/record_fact_fixtures.sh)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package may not be installed yet
    sys.path.insert(0, str(ROOT))

from vnetgen.facts import (BridgeInfo, BridgePorts, DomDumpXml, DomIfList, FactError,  # noqa: E402
                           IpAddrs, IpLinkBridges, IpLinks, IpRoutes, NetDumpXml, NetList, Sysctl, VirshList, bridges_from_iproute,
                           combine, process_file, to_jsonable)
from vnetgen_plugins.brctl_show import BrctlShow  # noqa: E402  (el7's parser)

FIXTURES = ROOT / "tests" / "fixtures" / "facts"

# Fixture folder → the parser that reads its outputs.
PARSERS = {
    "net_list": lambda fixture: NetList(),
    "net_dumpxml": lambda fixture: NetDumpXml(),
    "brctl": lambda fixture: BrctlShow(),
    "ip_link_bridge": lambda fixture: IpLinkBridges(),
    "bridge_link": lambda fixture: BridgePorts(),
    "sysctl": lambda fixture: Sysctl(keys=fixture.get("keys", ())),
    "virsh_list": lambda fixture: VirshList(),
    "domiflist": lambda fixture: DomIfList(),
    "dom_dumpxml": lambda fixture: DomDumpXml(),
}


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _fixtures(kind: str = "*"):
    return sorted(FIXTURES.glob(f"{kind}/*.json"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _parse(path: Path, output=None):
    fixture = _load(path)
    parser = PARSERS[path.parent.name](fixture)
    return parser.process(fixture["output"] if output is None else output, _id(path))


def _recorded(kind: str):
    """Fixtures recorded from a real tool (not hand-made) that parse to a fact."""
    return [p for p in _fixtures(kind)
            if not _load(p)["command"].startswith("hand-made") and "fact" in _load(p)]


# --- every fixture ----------------------------------------------------------------


def test_there_are_fixtures_for_every_parser():
    for kind in PARSERS:
        assert _recorded(kind), f"no recorded fixture in {kind}/"


@pytest.mark.parametrize("path", _fixtures(), ids=_id)
def test_fixture(path):
    fixture = _load(path)
    assert fixture["command"], "every fixture says which command produced it"
    if "error" in fixture:
        with pytest.raises(FactError) as caught:
            _parse(path)
        error = caught.value
        assert (error.source, error.line) == (_id(path), fixture["error"]["line"]), str(error)
        assert str(error).startswith(f"{_id(path)}:{fixture['error']['line']}: ")
        assert fixture["error"]["contains"] in str(error)
    else:
        assert fixture["fact"] is not None, "write the expected fact by hand, from the output"
        assert to_jsonable(_parse(path)) == fixture["fact"]


# --- order and spelling do not matter ----------------------------------------------


def _shuffled_xml(text: str, rng: random.Random) -> str:
    """The same network written otherwise: elements and attributes shuffled, double
    quotes, IPv6 addresses exploded and upper case, MACs upper case."""
    from lxml import etree

    root = etree.fromstring(text.encode())
    for element in root.iter():
        children = list(element)
        # Several <interface> under <forward>: the first is meaningful, keep their order.
        movable = [c for c in children if c.tag != "interface"]
        rng.shuffle(movable)
        fixed = iter(c for c in children if c.tag == "interface")
        order = [next(fixed) if c.tag == "interface" else movable.pop() for c in children]
        for child in children:
            element.remove(child)
        element.extend(order)
        attributes = list(element.attrib.items())
        rng.shuffle(attributes)
        element.attrib.clear()
        for key, value in attributes:
            if ":" in value and key in ("address", "start", "end", "ip") and value.count(":") != 5:
                import ipaddress
                value = ipaddress.ip_address(value).exploded.upper()
            elif key == "mac" or (element.tag == "mac" and key == "address"):
                value = value.upper()
            element.set(key, value)
    return etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("path", _recorded("net_dumpxml"), ids=_id)
def test_net_dumpxml_order_independent(path):
    expected = _load(path)["fact"]
    for seed in range(5):
        text = _shuffled_xml(_load(path)["output"], random.Random(seed))
        assert to_jsonable(_parse(path, text)) == expected, text


def _brctl_blocks(text: str):
    lines = [line for line in text.split("\n") if line]
    header, blocks = [], []
    for line in lines:
        if line.startswith("bridge name"):
            header.append(line)
        elif line[0] == "\t" and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return header, blocks


@pytest.mark.parametrize("path", [p for p in _recorded("brctl") if "merged" not in p.stem], ids=_id)
def test_brctl_order_independent(path):
    header, blocks = _brctl_blocks(_load(path)["output"])
    for seed in range(5):
        random.Random(seed).shuffle(blocks)
        text = "\n".join(header + [line for block in blocks for line in block]) + "\n"
        assert to_jsonable(_parse(path, text)) == _load(path)["fact"]


@pytest.mark.parametrize("kind", ["ip_link_bridge", "bridge_link"])
def test_iproute_order_independent(kind):
    for path in _recorded(kind):
        if "fact" not in _load(path):
            continue
        items = json.loads(_load(path)["output"])
        for seed in range(3):
            random.Random(seed).shuffle(items)
            assert to_jsonable(_parse(path, json.dumps(items, indent=4))) == _load(path)["fact"]


def test_net_list_rows_in_any_order():
    path = FIXTURES / "net_list" / "mixed.json"
    lines = _load(path)["output"].split("\n")
    rows = [line for line in lines[2:] if line]
    random.Random(1).shuffle(rows)
    assert to_jsonable(_parse(path, "\n".join(lines[:2] + rows) + "\n")) == _load(path)["fact"]


# --- the two ways to see bridges agree ---------------------------------------------------


def test_brctl_and_iproute_agree():
    """Recorded at the same moment: brctl show and ip/bridge JSON describe the same bridges."""
    def out(rel):
        return _load(FIXTURES / rel)["output"]

    from_brctl = BrctlShow().process(out("brctl/several.json"), "brctl")
    from_ip = bridges_from_iproute(out("ip_link_bridge/several.json"), "ip",
                                   out("bridge_link/several.json"), "bridge")
    assert [b.delay for b in from_ip] == [4.0, 2.5, 15.0]
    assert [b.__class__(**{**b.__dict__, "delay": None}) for b in from_ip] == list(from_brctl)
    # One capture of `ip -j -d link show` holds both the bridges and their ports.
    all_links = out("ip_link_bridge/all-links.json")
    assert combine(IpLinkBridges().process(all_links, "ip"), BridgePorts().process(all_links, "ip")) == from_ip


def test_combine_ignores_ports_of_unknown_masters():
    bridges = (BridgeInfo(name="br0", ports_known=False),)
    ports = BridgePorts().process('[{"ifname":"eth0","master":"bond0"},{"ifname":"eth1","master":"br0"}]', "s")
    assert combine(bridges, ports) == (BridgeInfo(name="br0", ports=("eth1",), ports_known=True),)


# --- commands, errors, files ----------------------------------------------------------


def test_commands():
    assert NetList().command() == ["virsh", "net-list", "--all"]
    # --network/--domain: a name that starts with "-" stays a name (what capture.sh runs, too)
    assert NetDumpXml().command("lab net") == ["virsh", "net-dumpxml", "--network", "lab net"]
    assert NetDumpXml().command("x", inactive=True) == ["virsh", "net-dumpxml", "--inactive", "--network", "x"]
    assert BrctlShow().command() == ["brctl", "show"]
    assert IpLinkBridges().command() == ["ip", "-j", "-d", "link", "show", "type", "bridge"]
    assert BridgePorts().command() == ["bridge", "-j", "link"]
    assert BridgePorts().command("br0") == ["ip", "-j", "link", "show", "master", "br0"]
    assert Sysctl().command() == ["sysctl", "net.ipv4.ip_forward"]
    assert Sysctl().command("a.b", "c.d") == ["sysctl", "a.b", "c.d"]
    assert VirshList().command() == ["virsh", "list", "--all"]
    assert DomIfList().command("VM1") == ["virsh", "domiflist", "--domain", "VM1"]
    assert IpLinks().command() == ["ip", "-j", "-d", "link", "show"]
    assert IpAddrs().command() == ["ip", "-j", "addr", "show"]
    assert IpRoutes().command() == ["ip", "-j", "route", "show"]


@pytest.mark.parametrize("target", ["el7", "el9", "ubuntu"])
def test_capture_sh_runs_the_parsers_commands(write_profile, pm, target):
    """The capture table (capture.sh, a live audit) gives each file the argv of the parser that reads it:
    both come from vnetgen.factbase's functions, and neither may drift from the other."""
    from vnetgen.observe import capture_table
    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    profile, _ = load_valid(write_profile(f"""
        vnetgen: 1
        host: h
        target: {target}
        networks:
          lab: {{mode: nat, ip: 192.168.150.1/24}}
    """), pm)
    (plan,) = plan_profile(profile, pm)
    argv = {entry.name: list(entry.argv) for entry in capture_table(plan)}
    assert argv["virsh-net-list.txt"] == NetList().command()
    assert argv["net/{name}.xml"] == NetDumpXml().command("{name}")
    assert argv["virsh-list.txt"] == VirshList().command()
    assert argv["domiflist/{name}.txt"] == DomIfList().command("{name}")
    assert argv["domxml/{name}.xml"] == DomDumpXml().command("{name}")
    assert argv["sysctl.txt"] == Sysctl().command("net.ipv4.ip_forward", *(s.key for s in plan.sysctl
                                                                           if s.key != "net.ipv4.ip_forward"))
    if target == "el7":
        assert argv["brctl-show.txt"] == BrctlShow().command()
    assert argv["ip-link.json"] == IpLinks().command()
    assert argv["bridge-link.json"] == BridgePorts().command()
    assert argv["ip-addr.json"] == IpAddrs().command()
    assert argv["ip-route.json"] == IpRoutes().command()


def test_fact_error_format():
    error = FactError("caps/h1/brctl-show.txt", 7, "bad line")
    assert str(error) == "caps/h1/brctl-show.txt:7: bad line"
    assert (error.source, error.line, error.message) == ("caps/h1/brctl-show.txt", 7, "bad line")


def test_process_file(tmp_path):
    good = tmp_path / "sysctl.txt"
    good.write_bytes(b"net.ipv4.ip_forward = 1\n")
    assert process_file(Sysctl(), good) == {"net.ipv4.ip_forward": "1"}
    latin1 = tmp_path / "net.xml"
    latin1.write_bytes(b"<network><name>caf\xe9</name></network>")
    with pytest.raises(FactError, match=r"net.xml:1: not well-formed"):
        process_file(NetDumpXml(), latin1)
    with pytest.raises(FactError, match=r"missing.txt:0: cannot read"):
        process_file(NetList(), tmp_path / "missing.txt")


def test_import_is_light():
    code = "import sys, vnetgen.facts; assert 'lxml' not in sys.modules, 'lxml imported eagerly'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


BUILD_WITHOUT_PARSERS = """
import runpy, sys
sys.argv = ["vnetgen", "build", sys.argv[1], "-o", sys.argv[2]]
try:
    runpy.run_module("vnetgen", run_name="__main__", alter_sys=True)
except SystemExit as end:
    assert not end.code, end.code
assert "vnetgen.api" in sys.modules and "vnetgen.capture" in sys.modules   # the build ran, capture.sh too
assert "vnetgen.observe" not in sys.modules, "a build imported the capture readers"
parsers = sorted(name for name in sys.modules if name == "vnetgen.facts" or name.startswith("vnetgen.facts."))
assert not parsers, f"a build imported the fact parsers: {parsers}"
"""


@pytest.mark.parametrize("profile", ["nat-default.yaml", "bridged-el9.yaml", "bridged-ubuntu.yaml"])
def test_build_does_not_import_the_parsers(tmp_path, profile):
    """A build writes capture.sh from the capture commands (vnetgen.factbase) and parses nothing:
    importing vnetgen.facts (~13 ms, its parsers and dataclasses) is left to audit and import."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-c", BUILD_WITHOUT_PARSERS, str(ROOT / "profiles" / profile), str(out)],
                   cwd=tmp_path, check=True, capture_output=True)
    assert list(out.glob("*/capture.sh")), "no capture.sh written"


def test_api_fact_names_are_lazy_and_importable():
    """vnetgen.api's fact classes load vnetgen.facts on first use (PEP 562) and are the parsers' own."""
    code = """
import sys
import vnetgen.api as api
assert "vnetgen.facts" not in sys.modules, "importing vnetgen.api imported the parsers"
from vnetgen.api import FactError, IpAddrs, BridgeInfo, combine
import vnetgen.facts as facts
assert (IpAddrs, BridgeInfo, combine, FactError) == (facts.IpAddrs, facts.BridgeInfo, facts.combine, facts.FactError)
assert api.IpRoutes is facts.IpRoutes and "IpLinks" in dir(api)
try:
    api.NoSuchName
except AttributeError:
    pass
else:
    raise AssertionError("api.NoSuchName")
namespace = {}
exec("from vnetgen.api import *", namespace)
assert all(name in namespace for name in api.__all__)
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.realtool
def test_recording_script_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("needs shellcheck — CI must have it", pytrace=False)
        pytest.skip("shellcheck not installed")
    subprocess.run(["shellcheck", str(ROOT / "tests" / "record_fact_fixtures.sh")], check=True)


# --- junk never raises anything but FactError ---------------------------------------


def _mutations(text: str, rng: random.Random):
    data = text.encode("utf-8", "surrogateescape")
    yield rng.randbytes(rng.randrange(1, 300)) if hasattr(rng, "randbytes") else bytes(
        rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    for _ in range(12):
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            operation = rng.randrange(5)
            at = rng.randrange(len(mutated) + 1)
            if operation == 0 and mutated:  # flip a byte
                mutated[min(at, len(mutated) - 1)] = rng.randrange(256)
            elif operation == 1:  # insert a special byte
                mutated[at:at] = bytes([rng.choice([0, 9, 10, 13, 32, 34, 39, 44, 45, 58, 60, 62, 91, 93, 123, 125, 255])])
            elif operation == 2:  # truncate
                del mutated[at:]
            elif operation == 3 and mutated:  # duplicate a slice
                end = min(len(mutated), at + rng.randrange(1, 80))
                mutated[at:at] = mutated[at:end]
            else:  # delete a slice
                del mutated[at:at + rng.randrange(1, 20)]
        yield bytes(mutated)


def _check_robust(parser, data, source="fuzz"):
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    try:
        parser.process(text, source)
    except FactError as error:
        assert isinstance(error.line, int) and error.line >= 0
        assert str(error).startswith(f"{source}:")


@pytest.mark.parametrize("path", _fixtures(), ids=_id)
def test_mutated_fixtures_give_fact_error_or_a_result(path):
    fixture = _load(path)
    parser = PARSERS[path.parent.name](fixture)
    rng = random.Random(_id(path))
    for data in _mutations(fixture["output"], rng):
        _check_robust(parser, data)


HOSTILE = [
    "", "\x00", "\x00" * 1000, "\n" * 10000, "\t" * 10000, "\udcff\udcfe", "\ud800", "-" * 5000,
    " " * 100000 + "x", "a" + " " * 200000 + "b c d e", ("x " * 100000), "\t\t" * 50000 + "yes",
    "error: " + "x" * 100000, "[" * 5000, "{" * 5000, "<" * 5000, "<network>" * 3000,
    '<?xml version="1.0" encoding="latin-1"?><network><name>x</name></network>',
    "<network xmlns='urn:x'><name>x</name></network>",
    "<network><name>x</name><ip address='::1' netmask='255.0.0.0'/></network>",
    "<network><name>x</name><forward><nat><port start='1'/></nat></forward></network>",
    "[{\"ifname\": 5}]", "[{\"ifname\": \"br0\", \"linkinfo\": []}]", "[{\"ifname\":\"br0\",\"master\":[1]}]",
    "[{\"ifname\":\"br0\",\"promiscuity\":0,\"linkinfo\":{\"info_kind\":\"bridge\",\"info_data\":"
    "{\"stp_state\":[],\"forward_delay\":1.5,\"bridge_id\":7}}}]",
    "1e999999", "[1e999999]", "[NaN]", "\ufeff[]",
]


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_hostile_inputs_give_fact_error_or_a_result(kind):
    parser = PARSERS[kind]({"keys": ["a"]})
    for text in HOSTILE:
        started = time.monotonic()
        _check_robust(parser, text)
        assert time.monotonic() - started < 1.0, f"{kind} is slow on {text[:30]!r}…"


@pytest.mark.parametrize("name", ["Check", "NetworkDef", "IpDef", "DhcpHostDef"])
def test_quick_init_takes_the_fields_in_order_with_their_defaults(name):
    """facts.model.quick_init writes the __init__ of these frozen dataclasses (speed): it must stay the
    dataclass's, field for field, and the objects stay frozen, equal and hashable by value."""
    import dataclasses
    import inspect

    from vnetgen import api
    from vnetgen.facts import model

    cls = getattr(api, name, None) or getattr(model, name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
                                           for f in fields]
    required = [f"v{i}" for i, f in enumerate(fields) if f.default is dataclasses.MISSING]
    one, two = cls(*required), cls(*required)
    assert vars(one) == {f.name: getattr(one, f.name) for f in fields}
    assert one == two and hash(one) == hash(two) and dataclasses.replace(one) == one
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(one, fields[0].name, "other")


def test_quick_init_refuses_what_it_cannot_copy():
    import dataclasses

    from vnetgen.facts.model import quick_init

    @dataclasses.dataclass(frozen=True)
    class WithFactory:
        items: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class WithPostInit:
        a: int

        def __post_init__(self):
            pass

    for cls in (WithFactory, WithPostInit):
        with pytest.raises(TypeError):
            quick_init(cls)

"""Issue 16: the checks hostile profiles found missing (each a located error from validate, never a
build failure), and validation that stays linear (diagnostics, alias expansion)."""
from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from vnetgen.cli import app

runner = CliRunner()


def validate(path):
    result = runner.invoke(app, ["validate", str(path)], catch_exceptions=False)
    return result.exit_code, result.output


def build(path, out):
    result = runner.invoke(app, ["build", str(path), "-o", str(out)], catch_exceptions=False)
    return result.exit_code, result.output


NAT = "{mode: nat, ip: 192.168.122.1/24}"


def refused_at(write_profile, tmp_path, text: str, needle: str):
    """The errors validate reports at the line and column of `needle` (text must fail validation and
    the build, which writes nothing), and validate's whole output."""
    line, row = next((n, r) for n, r in enumerate(text.splitlines(), 1) if needle in r)
    col = row.index(needle) + 1
    path = write_profile(text)
    code, out = validate(path)
    assert code == 2, out
    located = [row for row in out.splitlines() if row.startswith(f"{path}:{line}:{col}: error:")]
    code, built = build(path, tmp_path / "out")
    assert code == 2 and "Traceback" not in built and not (tmp_path / "out").exists()
    return located, out


@pytest.mark.parametrize("body, needle, words", [
    ("networks:\n  a: {mode: nat, ip: 10.0.0.1/24, uuid: f6514662-26e5-431e-8544-fd216bed9312}\n"
     "  b: {mode: nat, ip: 10.0.1.1/24, uuid: F6514662-26E5-431E-8544-FD216BED9312}\n", "F6514662", "also network a"),
    ("nics:\n  lo: {ip: 10.1.0.1/24}\nnetworks:\n  n: " + NAT + "\n", "lo:", "loopback"),
    ("bridges:\n  br0: {ports: [lo]}\nnetworks:\n  n: " + NAT + "\n", "lo]", "loopback"),
    ("networks:\n  n: {mode: nat, bridge: lo, ip: 10.0.0.1/24}\n", "lo,", "loopback"),
    ("networks:\n  n: {mode: nat, ip: 10.0.0.1/24, mac: '01:00:5e:00:00:01'}\n", "'01:", "multicast"),
    ("networks:\n  n: {mode: nat, ip: 10.0.0.1/24, mac: 'ff:ff:ff:ff:ff:ff'}\n", "'ff:", "broadcast"),
    ("networks:\n  n: {mode: nat, ip: 10.0.0.1/24, mac: '00:00:00:00:00:00'}\n", "'00:", "all zeros"),
    ("nics:\n  eth0: {hwaddr: '33:33:00:00:00:01'}\nnetworks:\n  n: " + NAT + "\n", "'33:", "multicast"),
    ("networks:\n  n: {mode: nat, ip: 10.0.0.1/24, dhcp: {start: 10.0.0.10, end: 10.0.0.20, hosts: [{mac: '03:00:00:00:00:01', ip: 10.0.0.9}]}}\n",
     "'03:", "multicast"),
    ("networks:\n  n: " + NAT + "\nvms:\n  v: {import: true, disk: {path: /d}, networks: "
     "[{network: n, mac: 'ff:ff:ff:ff:ff:ff'}]}\n", "'ff:", "broadcast"),
    ("networks:\n  n: {mode: nat, ip: 10.0.0.1/0}\n", "10.0.0.1/0", "/0"),
    ("networks:\n  n: {mode: nat, ip: 127.0.0.1/24}\n", "127.0.0.1", "loopback"),
    ("networks:\n  n: {mode: nat, ip: 224.0.0.1/24}\n", "224.", "multicast"),
    ("bridges:\n  br0: {ip: 239.1.1.1/24}\n", "239.", "multicast"),
    ("nics:\n  eth0: {ip: 127.0.0.2/8}\nbridges:\n  br0: {ip: 10.0.0.1/24}\n", "127.0.0.2", "loopback"),
])
def test_missing_checks_are_located_errors(write_profile, tmp_path, body, needle, words):
    located, out = refused_at(write_profile, tmp_path, "vnetgen: 1\n" + body, needle)
    assert any(words in row for row in located), out


def test_the_checks_leave_good_values_alone(write_profile):
    path = write_profile("vnetgen: 1\nnics:\n  eth0: {hwaddr: '00:24:81:0D:3F:8D'}\nbridges:\n"
                         "  br0: {ports: [eth0], ip: 10.1.0.2/24}\nnetworks:\n"
                         "  a: {mode: nat, ip: 10.0.0.1/24, mac: '52:54:00:53:d4:ee',"
                         " uuid: f6514662-26e5-431e-8544-fd216bed9312}\n"
                         "  b: {mode: nat, ip: 10.0.1.1/24, uuid: f6514662-26e5-431e-8544-fd216bed9313}\n")
    code, out = validate(path)
    assert code == 0, out


@pytest.mark.parametrize("name", ["REVIEW.md", "SHA256SUMS", "archives", "ansible", "review.MD", "Archives"])
def test_host_names_that_collide_with_bundle_files(write_profile, name):
    path = write_profile(f"vnetgen: 1\nhosts:\n  ok: {{networks: {{n: {NAT}}}}}\n"
                         f"  {name}: {{networks: {{n: {NAT}}}}}\n")
    code, out = validate(path)
    assert code == 2 and f"{path}:4:3: error: host {name}: the name is reserved" in out, out


def test_duplicate_uuid_on_two_hosts_is_fine(write_profile):
    uuid = "f6514662-26e5-431e-8544-fd216bed9312"
    path = write_profile(f"vnetgen: 1\nhosts:\n  h1: {{networks: {{n: {{mode: nat, ip: 10.0.0.1/24, uuid: {uuid}}}}}}}\n"
                         f"  h2: {{networks: {{n: {{mode: nat, ip: 10.0.0.1/24, uuid: {uuid}}}}}}}\n")
    assert validate(path)[0] == 0


# --- linear validation ---------------------------------------------------------------


def test_alias_bomb_fails_at_once_with_a_located_error(write_profile):
    items = ",".join(["a/b"] * 1000)
    lines = ["vnetgen: 1", "networks:", f"  n0: {{mode: nat, ip: 10.0.0.1/24, ports: &p [{items}]}}"]
    lines += [f"  n{i}: {{mode: nat, ip: 10.0.{i}.1/24, ports: *p}}" for i in range(1, 60)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 7000
    path = write_profile(text)
    started = time.monotonic()
    code, out = validate(path)
    assert time.monotonic() - started < 5
    assert code == 2 and f"{path}:3:" in out and "alias" in out


def test_fleet_sharing_defaults_through_aliases_is_no_bomb(write_profile):
    lines = ["vnetgen: 1", "x-common: &net {mode: nat, dhcp: {start: 10.0.0.10, end: 10.0.0.200}}", "hosts:"]
    lines = ["vnetgen: 1", "hosts:"]
    for h in range(300):
        anchor = " &n" if h == 0 else ""
        value = "{<<: *n, ip: 10.0.0.1/24}" if h else "{mode: nat, ip: 10.0.0.1/24, dhcp: {start: 10.0.0.10, end: 10.0.0.20}}"
        lines.append(f"  h{h}: {{networks: {{n:{anchor} {value}}}}}")
    path = write_profile("\n".join(lines) + "\n")
    code, out = validate(path)
    assert code == 0, out[:500]


def test_twenty_thousand_errors_in_a_few_seconds(write_profile):
    path = write_profile("vnetgen: 1\nnetworks:\n" + "".join(f"  n{i}: {{mode: nat}}\n" for i in range(20000)))
    started = time.monotonic()
    code, out = validate(path)
    assert code == 2 and "20000 errors" in out
    assert time.monotonic() - started < 15


def test_report_still_removes_duplicates():
    from vnetgen.diagnostics import Report

    report = Report("f")
    for _ in range(3):
        report.error((1, 2), "same")
    report.warning((1, 2), "same")
    assert [str(d) for d in report.items] == ["f:1:2: error: same", "f:1:2: warning: same"]


@pytest.mark.parametrize("extra, refused", [(0, False), (1, True)])
def test_aliases_may_repeat_ten_times_the_documents_nodes(tmp_path, extra, refused):
    """The bound on what aliases repeat is max(10,000, 10 × the nodes written), exactly; the nodes are
    counted only once the first 10,000 repeats are used up (a fleet without aliases never counts)."""
    from vnetgen import yamlload
    from vnetgen.diagnostics import Report

    k = 1493   # nodes: the root, 3 keys, 3 sequences and the k scalars of `a` = 1,500
    path = tmp_path / "doc.yaml"
    # 10 aliases of `a` repeat 10 × 1,494 nodes; 60 aliases of its first item 1 each: 15,000 = 10 × 1,500
    path.write_text("a: [&s v0, " + ", ".join(f"v{i}" for i in range(1, k)) + "]\n"
                    "b: [" + ", ".join(["*a"] * 10) + "]\n"
                    "c: [" + ", ".join(["*s"] * (60 + extra)) + "]\n")
    path.write_text(path.read_text().replace("a: [", "a: &a [", 1))
    strings = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "properties": {"a": strings, "b": {"type": "array", "items": strings}, "c": strings}}
    report = Report(str(path))
    doc = yamlload.load_document(str(path), schema, report)
    assert yamlload._count_nodes(yamlload.compose(path.read_text(), Report("x"))) == 1500
    messages = [d.message for d in report.errors]
    if refused:
        assert any("aliases repeat too many values" in m for m in messages), messages
    else:
        assert messages == [] and len(doc["b"]) == 10 and len(doc["c"]) == 60


def test_a_profile_whose_aliases_repeat_little_is_never_counted(monkeypatch, write_profile):
    from vnetgen import yamlload

    def counted(node):
        raise AssertionError("counted")

    monkeypatch.setattr(yamlload, "_count_nodes", counted)
    lines = ["vnetgen: 1", "hosts:"]
    lines.append("  h0: {networks: {n: &n {mode: nat, ip: 10.0.0.1/24}}}")
    lines += [f"  h{h}: {{networks: {{n: *n}}}}" for h in range(1, 50)]
    code, out = validate(write_profile("\n".join(lines) + "\n"))
    assert code == 0, out


def test_repeats_within_ten_times_the_nodes_visited_need_no_count(tmp_path, monkeypatch):
    """A fleet's oneOf values are visited again by each option tried (repeats without any alias): while
    the repeats stay within 10 × the nodes visited so far, the bound holds whatever the document's
    size, and the document is never counted."""
    from vnetgen import yamlload
    from vnetgen.diagnostics import Report

    def counted(node):
        raise AssertionError("counted")

    monkeypatch.setattr(yamlload, "_count_nodes", counted)
    path = tmp_path / "doc.yaml"
    path.write_text("a:\n" + "".join(f"  - v{i}\n" for i in range(20000)))
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {
        "oneOf": [{"type": "integer"}, {"type": "string"}]}}}}
    report = Report(str(path))
    doc = yamlload.load_document(str(path), schema, report)
    assert report.errors == [] and len(doc["a"]) == 20000   # 20,000 repeats: past the first 10,000


# A schema pattern ends with `$`, which in Python also matches before a final newline: a name or value
# with one passed for the name without it and reached file names (networks/net0\n.xml), the runbook
# and libvirt's XML. Each is now a located error, and build writes nothing.
@pytest.mark.parametrize("body, needle", [
    ('networks:\n  "net0\\n": {mode: isolated}\n', '"net0'),
    ('bridges:\n  "br0\\n": {}\nnetworks:\n  n: ' + NAT + "\n", '"br0'),
    ('nics:\n  "eth0\\n": {ip: 10.1.0.1/24}\nnetworks:\n  n: ' + NAT + "\n", '"eth0'),
    ('networks:\n  n: ' + NAT + '\nvms:\n  "web\\n": {import: true, memory: 1024, vcpus: 1, disk: {path: /d}, networks: [{network: n}]}\n',
     '"web'),
    ('networks:\n  n: ' + NAT + '\nvms:\n  v: {import: true, memory: 1024, vcpus: 1, disk: {path: /d}, os_variant: "rhel9\\n", '
     'networks: [{network: n}]}\n', '"rhel9'),
    ('networks:\n  n: ' + NAT + '\nvms:\n  v: {import: true, memory: 1024, vcpus: 1, disk: {path: "/d\\n"}, networks: [{network: n}]}\n',
     '"/d'),
    ('networks:\n  n: {mode: nat, ip: 192.168.122.1/24, uuid: "f6514662-26e5-431e-8544-fd216bed9312\\n"}\n',
     '"f6514662'),
])
def test_a_value_with_a_final_newline_is_refused(write_profile, tmp_path, body, needle):
    text = "vnetgen: 1\n" + body
    located, out = refused_at(write_profile, tmp_path, text, needle)
    assert located, out
    fixed = write_profile(text.replace("\\n", ""), "fixed.yaml")   # the same value without it is fine
    assert validate(fixed)[0] == 0, validate(fixed)[1]


def test_matches_anchors_a_final_dollar_at_the_very_end():
    from vnetgen.yamlload import matches

    assert matches(r"^[a-z]+$", "abc") and not matches(r"^[a-z]+$", "abc\n")
    assert matches(r"^[a-z]+", "abc\n")          # no final $: a prefix match, as before
    assert matches(r"^a\$", "a$") and not matches(r"^a\$", "b$")

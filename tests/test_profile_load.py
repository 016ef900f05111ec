"""Loading profile v1: structure, types, marks, shorthand, defaults, and input that is not YAML at all."""
from __future__ import annotations

import ipaddress

import pytest

from vnetgen.profile import load

GOOD = """
vnetgen: 1
hosts:
  h1:
    target: el7
    networks:
      default:
        mode: nat
        ip: 192.168.122.1/24
"""


def problems(report, severity="error"):
    return [(d.line, d.col, d.message) for d in report.sorted() if d.severity == severity]


def test_full_host_loads_typed(write_profile):
    profile, report = load(write_profile(GOOD))
    assert not report.items
    net = profile.hosts["h1"].networks["default"]
    assert net.mode == "nat" and net.ip == ipaddress.IPv4Interface("192.168.122.1/24")
    assert net.autostart is True and net.state == "active"
    assert net.mark == (6, 7)  # where "default:" was written


def test_one_host_shorthand_uses_host_key_or_localhost(write_profile):
    profile, report = load(write_profile("""
        vnetgen: 1
        networks:
          default: {mode: isolated}
    """))
    assert not report.errors and list(profile.hosts) == ["localhost"]
    profile, _ = load(write_profile("""
        vnetgen: 1
        host: caldera03
        networks:
          default: {mode: isolated}
    """))
    assert list(profile.hosts) == ["caldera03"]
    assert profile.hosts["caldera03"].networks["default"].mode == "isolated"


def test_shorthand_and_hosts_together_is_an_error(write_profile):
    _, report = load(write_profile("""
        vnetgen: 1
        hosts:
          a: {networks: {n: {mode: isolated}}}
        networks:
          default: {mode: isolated}
    """))
    assert problems(report)[0][:2] == (4, 1)
    assert "cannot be combined" in problems(report)[0][2]


def test_defaults_apply_per_key_and_merge_named_maps(write_profile):
    profile, report = load(write_profile("""
        vnetgen: 1
        defaults:
          target: el7
          networks:
            default: {mode: isolated}
            shared: {mode: isolated, bridge: virbr9}
        hosts:
          a: {}
          b:
            target: other
            networks:
              default: {mode: nat, ip: 10.0.0.1/24}
    """))
    assert not report.errors
    a, b = profile.hosts["a"], profile.hosts["b"]
    assert a.target == "el7" and b.target == "other"
    assert a.networks["default"].mode == "isolated"
    assert b.networks["default"].mode == "nat" and b.networks["shared"].bridge == "virbr9"
    assert b.networks["shared"].mark[0] == 6  # a defaulted value points at the defaults


def test_unquoted_mac_is_not_a_sexagesimal_number(write_profile):
    profile, report = load(write_profile("""
        vnetgen: 1
        networks:
          n: {mode: isolated, mac: 52:54:00:12:34:56}
    """))
    assert not report.errors
    assert profile.hosts["localhost"].networks["n"].mac == "52:54:00:12:34:56"


def test_merge_keys_and_overrides(write_profile):
    profile, report = load(write_profile("""
        vnetgen: 1
        vms:
          A: &vm {memory: 1024, vcpus: 1, networks: [n], import: true, disk: {path: /a.img}}
          B:
            <<: *vm
            disk: {path: /b.img}
        networks:
          n: {mode: isolated}
    """))
    assert not report.errors, report.items
    assert profile.hosts["localhost"].vms["B"].disk_path == "/b.img"
    assert profile.hosts["localhost"].vms["B"].memory == 1024


def test_unknown_key_suggests(write_profile):
    _, report = load(write_profile("""
        vnetgen: 1
        networks:
          n:
            mode: isolated
            autostrat: true
    """))
    assert problems(report) == [(5, 5, "networks.n: unknown key 'autostrat' (did you mean 'autostart'?)")]


def test_unknown_mode_suggests(write_profile):
    _, report = load(write_profile("""
        vnetgen: 1
        networks:
          n: {mode: nta}
    """), modes=["nat", "route", "isolated"])
    line, col, message = problems(report)[0]
    assert (line, col) == (3, 13) and "did you mean 'nat'" in message


@pytest.mark.parametrize("text, where, needle", [
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, stp: maybe}\n", (3, 28), "expected true or false"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, delay: x}\n", (3, 30), "expected an integer"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, delay: 99}\n", (3, 30), "out of range"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: nat, ip: 192.168.1.1}\n", (3, 22), "needs a prefix"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: nat, ip: 300.1.1.1/24}\n", (3, 22), "is not an IPv4"),
    ("vnetgen: 1\nnetworks:\n  n: [1, 2]\n", (3, 6), "expected a mapping"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, ports: ens2}\n", (3, 30), "expected a list"),
    ("vnetgen: 1\nnetworks:\n  n: {}\n", (3, 6), "missing required key 'mode'"),
    ("vnetgen: 1\nnetworks:\n  n:\n  m: {mode: isolated}\n", (3, 5), "missing required key 'mode'"),
    ("vnetgen: 1\ntarget:\nnetworks:\n  n: {mode: isolated}\n", (2, 8), "expected a string, got nothing"),
    ("networks:\n  n: {mode: isolated}\n", (1, 1), "missing required key 'vnetgen'"),
    ("vnetgen: 2\nnetworks:\n  n: {mode: isolated}\n", (1, 10), "only 1 is supported"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated}\n  n: {mode: nat}\n", (4, 3), "duplicate key 'n'"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, mac: '52:54:00:zz:00:01'}\n", (3, 28), "invalid value"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, uuid: nope}\n", (3, 29), "invalid value"),
    ("vnetgen: 1\nnetworks:\n  n: {mode: isolated, state: gone}\n", (3, 30), "is not one of"),
])
def test_wrong_types_are_located(write_profile, text, where, needle):
    _, report = load(write_profile(text))
    found = problems(report)
    assert any((l, c) == where and needle in msg for l, c, msg in found), found


@pytest.mark.parametrize("name", ["a;rm -rf /", "$(reboot)", "a b", "<x>", "a/b", "..", "-x", "é"])
def test_hostile_names_are_refused(write_profile, name):
    _, report = load(write_profile(f'vnetgen: 1\nnetworks:\n  "{name}": {{mode: isolated}}\n'))
    assert problems(report) and problems(report)[0][:2] == (3, 3)


@pytest.mark.parametrize("ifname, ok", [("enp0s25", True), ("a" * 15, True), ("a" * 16, False),
                                        ("eth0:1", False), ("br 0", False), (".", False), ("..", False),
                                        ("eth0.100", True), ("br/0", False)])
def test_interface_names_follow_the_kernel(write_profile, ifname, ok):
    _, report = load(write_profile(f'vnetgen: 1\nnetworks:\n  n: {{mode: isolated, bridge: "{ifname}"}}\n'))
    assert (not report.errors) == ok, report.items


@pytest.mark.parametrize("content, line", [
    (b"vnetgen: 1\nnetworks: [\n", 3),
    (b"vnetgen: 1\n  bad: indent\n", 2),
    (b"vnetgen: 1\n\x00\x01\x02binary", 2),
    (b"\xff\xfe\x00junk", 1),
    (b"", 1),
    (b"just a string\n", 1),
    (b"- a\n- list\n", 1),
    (b"vnetgen: 1\nname: \"\x07bell\"\n", 2),
])
def test_not_a_profile_gives_one_located_error(tmp_path, content, line):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    _, report = load(str(path))
    assert report.errors, "junk must be reported"
    assert report.errors[0].line == line, report.errors


def test_alias_bomb_is_refused(tmp_path):
    lines = ["vnetgen: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("networks: *a8")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    _, report = load(str(path))
    assert report.errors  # unknown keys and/or the size limit, but no hang and no crash


def test_missing_file_is_an_error_not_a_traceback(tmp_path):
    _, report = load(str(tmp_path / "nope.yaml"))
    assert "cannot read profile" in report.errors[0].message

"""Planning: derived identities, bridge name allocation, resolved defaults, sysctl only where needed."""
from __future__ import annotations

import re
import uuid

from vnetgen.plan import derived_mac, derived_uuid, plan_profile, resolve_bridges


def plans(write_profile, pm, body):
    from vnetgen.profile import load_valid

    profile, _ = load_valid(write_profile("vnetgen: 1\nhost: h\n" + body), pm)
    return {p.name: p for p in plan_profile(profile, pm)}


def test_derived_mac_is_libvirts_range_stable_and_distinct():
    mac = derived_mac("caldera02", "default")
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac)
    assert mac == derived_mac("caldera02", "default")
    assert len({derived_mac(h, n) for h in ("a", "b") for n in ("x", "y")}) == 4


def test_derived_mac_is_pinned_across_versions():
    # A changed derivation would redefine every unpinned network on every host: pin it.
    # sha256("vnetgen-mac\\0caldera02\\0default")[:3], computed independently of the code
    assert derived_mac("caldera02", "default") == "52:54:00:0c:69:14"
    assert derived_uuid("caldera02", "default") == str(uuid.uuid5(
        uuid.UUID("5b6f7a8e-2c1d-4e3f-9a0b-76e6e7a17a11"), "caldera02/default"))


def test_derived_uuid_is_valid_and_distinct():
    value = derived_uuid("h", "n")
    assert str(uuid.UUID(value)) == value and value != derived_uuid("h", "m") != derived_uuid("g", "n")


def test_pinned_values_win_and_are_normalized(write_profile, pm):
    plan = plans(write_profile, pm, "networks:\n  n: {mode: isolated, mac: '52:54:00:AB:CD:EF',"
                                    " uuid: F6514662-26E5-431E-8544-FD216BED9312}\n")["h"]
    net = plan.networks["n"]
    assert net.mac == "52:54:00:ab:cd:ef" and net.uuid == "f6514662-26e5-431e-8544-fd216bed9312"


def test_unpinned_bridges_get_the_lowest_free_virbr(write_profile, pm):
    plan = plans(write_profile, pm, "networks:\n  a: {mode: isolated}\n  b: {mode: isolated, bridge: virbr0}\n"
                                    "  c: {mode: isolated}\n  d: {mode: isolated, bridge: virbr2}\n")["h"]
    assert {n: p.bridge for n, p in plan.networks.items()} == {"a": "virbr1", "b": "virbr0", "c": "virbr3",
                                                               "d": "virbr2"}


def test_resolve_bridges_ignores_unknown_modes(write_profile, pm):
    from vnetgen.plugins import modes
    from vnetgen.profile import load

    profile, _ = load(write_profile("vnetgen: 1\nnetworks:\n  a: {mode: teleport}\n  b: {mode: nat}\n"))
    # virbr0 is libvirt's stock default network's: an unpinned bridge never takes it (SPEC 6)
    assert resolve_bridges(profile.hosts["localhost"], modes(pm)) == {"a": None, "b": "virbr1"}


def test_libvirt_defaults_resolved(write_profile, pm):
    net = plans(write_profile, pm, "networks:\n  n: {mode: nat, ip: 10.0.0.1/24}\n")["h"].networks["n"]
    assert (net.stp, net.delay) == (True, 0)
    bridge_mode = plans(write_profile, pm, "bridges: {br0: {}}\nnetworks:\n  n: {mode: bridge, bridge: br0}\n")
    net = bridge_mode["h"].networks["n"]
    assert (net.stp, net.delay, net.mac, net.bridge) == (None, None, None, "br0")


def test_host_bridge_delay_defaults(write_profile, pm):
    plan = plans(write_profile, pm, "bridges:\n  a: {}\n  b: {stp: true}\n  c: {stp: true, delay: 4}\n")["h"]
    assert plan.bridge_delay == {"a": 0, "b": 2, "c": 4}


def test_sysctl_only_where_needed(write_profile, pm):
    assert plans(write_profile, pm, "networks:\n  n: {mode: isolated}\n")["h"].sysctl == []
    keys = [s.key for s in plans(write_profile, pm, "networks:\n  n: {mode: route, ip: 10.0.0.1/24}\n")["h"].sysctl]
    assert keys == ["net.ipv4.ip_forward"]
    inactive = plans(write_profile, pm, "networks:\n  n: {mode: nat, ip: 10.0.0.1/24, state: inactive}\n")
    assert inactive["h"].sysctl == []
    bridged = plans(write_profile, pm, "bridges: {br0: {}}\nnetworks:\n  n: {mode: bridge, bridge: br0}\n")
    assert [s.key for s in bridged["h"].sysctl] == [f"net.bridge.bridge-nf-call-{t}" for t in
                                                    ("arptables", "ip6tables", "iptables")]
    assert all(s.value == "0" for s in bridged["h"].sysctl)


def test_steps_follow_the_contract_order(write_profile, pm):
    plan = plans(write_profile, pm, "nics: {eth0: {}}\nbridges:\n  br0: {ports: [eth0], ip: 10.1.0.2/24}\n"
                                    "networks:\n  lan: {mode: bridge, bridge: br0}\n"
                                    "  n: {mode: nat, ip: 10.0.0.1/24, ports: [ens2]}\n"
                                    "vms:\n  v: {memory: 1, vcpus: 1, networks: [n], import: true, "
                                    "disk: {path: /v.img}}\n")["h"]
    titles = [s.title for s in plan.steps]
    assert titles == ["preflight", "firewall coexistence", "sysctl", "host bridge br0", "persist interfaces (ifcfg)", "back up networks",
                      "network lan (bridge)", "network n (nat)", "bridge ports and the network hook",
                      "virtual machine v", "verify"]


def _all_profiles():
    from conftest import PROFILES, ROOT

    fixtures = ROOT / "tests" / "fixtures"
    return [*PROFILES, fixtures / "modes" / "modes.yaml", *sorted((fixtures / "grow").glob("*.yaml"))]


def test_an_audits_plan_says_what_a_builds_plan_says(pm):
    """runbook=False (an audit) skips the runbook and the network XML, and reads <forward> off the plan
    instead of the element: every check, setting and capture file is the same as in a build's plan."""
    from vnetgen.profile import load_valid

    seen_dev = False
    for path in _all_profiles():
        profile, _ = load_valid(str(path), pm)
        for build, audit in zip(plan_profile(profile, pm), plan_profile(profile, pm, runbook=False)):
            assert list(build.networks) == list(audit.networks)
            for name, net in build.networks.items():
                assert (net.forward, net.forward_dev) == (audit.networks[name].forward, audit.networks[name].forward_dev)
                seen_dev = seen_dev or bool(net.forward_dev)
                assert audit.networks[name].xml == "" and net.xml
            assert [(c.kind, c.object, c.expected, c.network) for c in build.checks] == \
                [(c.kind, c.object, c.expected, c.network) for c in audit.checks], path
            assert build.sysctl == audit.sysctl and build.plugin_captures == audit.plugin_captures
    assert seen_dev   # a forward dev= (tuned.yaml, modes.yaml) is among them



def test_derived_uuid_is_uuid5_for_any_names():
    # derived_uuid spells uuid5 out (speed): the same value for every name, non-ASCII included.
    namespace = uuid.UUID("5b6f7a8e-2c1d-4e3f-9a0b-76e6e7a17a11")
    for host, network in [("h", "n"), ("", ""), ("caldera-02.example", "lan_10"), ("höst", "nét/ß"), ("a" * 300, "b")]:
        assert derived_uuid(host, network) == str(uuid.uuid5(namespace, f"{host}/{network}"))

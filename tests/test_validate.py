"""One test per validation rule of SPEC section 2, each asserting the line it reports."""
from __future__ import annotations

import pytest

HEAD = "vnetgen: 1\nhost: h\n"


def found(report, severity="error"):
    return [(d.line, d.message) for d in report.sorted() if d.severity == severity]


def assert_reported(report, line, needle, severity="error"):
    items = found(report, severity)
    assert any(l == line and needle in m for l, m in items), items


@pytest.fixture
def check(write_profile, load_report):
    def _check(body: str):
        return load_report(write_profile(HEAD + body))
    return _check


def test_valid_profiles_have_no_errors(check):
    report = check("""networks:
  default: {mode: nat, ip: 192.168.122.1/24, dhcp: {start: 192.168.122.2, end: 192.168.122.254}}
""")
    assert not report.items


def test_unknown_target(check):
    assert_reported(check("target: el6\nnetworks: {n: {mode: isolated}}\n"), 3, "unknown target 'el6'")


def test_nat_needs_ip(check):
    assert_reported(check("networks:\n  n: {mode: nat}\n"), 4, "needs 'ip'")


def test_bridge_mode_forbids_ip(check):
    report = check("bridges: {br0: {}}\nnetworks:\n  n: {mode: bridge, bridge: br0, ip: 10.0.0.1/24}\n")
    assert_reported(report, 5, "takes no 'ip'")


def test_dhcp_needs_ip(check):
    assert_reported(check("networks:\n  n: {mode: isolated, dhcp: {start: 10.0.0.2, end: 10.0.0.9}}\n"), 4,
                    "'dhcp' needs 'ip'")


def test_network_address_is_not_network_or_broadcast(check):
    assert_reported(check("networks:\n  n: {mode: nat, ip: 10.0.0.0/24}\n"), 4, "network address")
    assert_reported(check("networks:\n  n: {mode: nat, ip: 10.0.0.255/24}\n"), 4, "broadcast address")


def test_gateway_inside_subnet(check):
    report = check("bridges:\n  br0: {ip: 10.10.10.98/24, gateway: 10.20.0.1}\n")
    assert_reported(report, 4, "outside 10.10.10.0/24")


def test_gateway_not_broadcast(check):
    assert_reported(check("bridges:\n  br0:\n    ip: 10.10.10.98/24\n    gateway: 10.10.10.255\n"), 6,
                    "broadcast address")


def test_dhcp_range_inside_subnet(check):
    report = check("networks:\n  n:\n    mode: nat\n    ip: 10.0.0.1/24\n"
                   "    dhcp: {start: 10.0.0.2, end: 10.0.1.9}\n")
    assert_reported(report, 7, "outside 10.0.0.0/24")


def test_dhcp_start_before_end(check):
    report = check("networks:\n  n:\n    mode: nat\n    ip: 10.0.0.1/24\n    dhcp:\n"
                   "      start: 10.0.0.20\n      end: 10.0.0.10\n")
    assert_reported(report, 8, "is after end")


def test_dhcp_range_excludes_gateway(check):
    report = check("networks:\n  n:\n    mode: nat\n    ip: 10.0.0.50/24\n    dhcp:\n"
                   "      start: 10.0.0.2\n      end: 10.0.0.100\n")
    assert_reported(report, 8, "contains the network's own address")


LEASES = """networks:
  n:
    mode: nat
    ip: 10.0.0.1/24
    dhcp:
      start: 10.0.0.100
      end: 10.0.0.200
      hosts:
"""


def test_static_lease_inside_subnet(check):
    assert_reported(check(LEASES + "        - {mac: '52:54:00:00:00:01', ip: 10.9.0.5}\n"), 11, "outside")


def test_static_lease_unique_ip(check):
    report = check(LEASES + "        - {mac: '52:54:00:00:00:01', ip: 10.0.0.5}\n"
                            "        - {mac: '52:54:00:00:00:02', ip: 10.0.0.5}\n")
    assert_reported(report, 12, "used twice")


def test_static_lease_unique_mac(check):
    report = check(LEASES + "        - {mac: '52:54:00:00:00:01', ip: 10.0.0.5}\n"
                            "        - {mac: '52:54:00:00:00:01', ip: 10.0.0.6}\n")
    assert_reported(report, 12, "mac 52:54:00:00:00:01 used twice")


def test_static_lease_in_range_is_a_warning(check):
    report = check(LEASES + "        - {mac: '52:54:00:00:00:01', ip: 10.0.0.150}\n")
    assert not report.errors
    assert_reported(report, 11, "inside the dhcp range", "warning")


def test_networks_of_a_host_do_not_overlap(check):
    report = check("networks:\n  a: {mode: nat, ip: 10.0.0.1/16}\n  b: {mode: nat, ip: 10.0.5.1/24}\n")
    assert_reported(report, 5, "overlaps network a")


def test_routed_network_does_not_overlap_host_bridges(check):
    report = check("bridges:\n  br0: {ip: 10.10.10.98/24}\nnetworks:\n  r: {mode: route, ip: 10.10.10.1/25}\n")
    assert_reported(report, 6, "overlaps host bridge br0")


def test_one_bridge_per_network(check):
    report = check("networks:\n  a: {mode: isolated, bridge: virbr0}\n  b: {mode: isolated, bridge: virbr0}\n")
    assert_reported(report, 5, "already used by network a")


def test_bridge_mode_names_a_host_bridge(check):
    assert_reported(check("networks:\n  n: {mode: bridge, bridge: br9}\n"), 4, "is not a host bridge")
    assert not check("bridges: {br9: {external: true}}\nnetworks:\n  n: {mode: bridge, bridge: br9}\n").errors


def test_nic_enslaved_once(check):
    report = check("bridges:\n  br0: {ports: [eth0]}\n  br1: {ports: [eth0]}\n")
    assert_reported(report, 5, "already a port of bridge br0")


def test_port_nic_has_no_address(check):
    report = check("nics:\n  eth0: {ip: 10.0.0.5/24}\nbridges:\n  br0: {ports: [eth0]}\n")
    assert_reported(report, 4, "cannot keep an address")


def test_stp_off_with_two_ports_warns(check):
    report = check("bridges:\n  br0:\n    ports: [eth0, eth1]\n    stp: false\n")
    assert_reported(report, 6, "stp is off with 2 physical ports", "warning")


def test_stp_off_on_a_libvirt_bridge_with_two_ports_warns(check):
    report = check("networks:\n  n:\n    mode: isolated\n    ports: [eth0, eth1]\n    stp: false\n")
    assert_reported(report, 7, "network n: stp is off with 2 physical ports", "warning")


def test_host_bridge_stp_needs_delay_of_two(check):
    assert_reported(check("bridges:\n  br0: {stp: true, delay: 0}\n"), 4, "below 2 seconds")


def test_vm_network_must_exist(check):
    report = check("networks: {n: {mode: isolated}}\nvms:\n  v: {memory: 1, vcpus: 1, networks: [nn], import: true,"
                   " disk: {path: /v.img}}\n")
    assert_reported(report, 5, "no network 'nn'")


def test_vm_needs_media(check):
    report = check("networks: {n: {mode: isolated}}\nvms:\n  v: {memory: 1, vcpus: 1, networks: [n]}\n")
    assert_reported(report, 5, "needs 'location'")


FLEET = """vnetgen: 1
hosts:
  a:
    networks:
      default: {mode: nat, ip: 192.168.122.1/24, dhcp: {start: 192.168.122.2, end: 192.168.122.254}, ports: [ens2]}
  b:
    networks:
      default: {mode: isolated, ports: [ens2]}
links:
  - [a:ens2, b:ens2]
"""


def test_fleet_valid(write_profile, load_report):
    report = load_report(write_profile(FLEET))
    assert not report.items, report.items


def test_fleet_one_dhcp_server_per_segment(write_profile, load_report):
    text = FLEET.replace("default: {mode: isolated, ports: [ens2]}",
                         "default: {mode: nat, ip: 192.168.122.3/24, ports: [ens2], "
                         "dhcp: {start: 192.168.122.100, end: 192.168.122.120}}")
    assert_reported(load_report(write_profile(text)), 8, "a second DHCP server")


def test_fleet_segment_agrees_on_subnet(write_profile, load_report):
    text = FLEET.replace("default: {mode: isolated, ports: [ens2]}",
                         "default: {mode: isolated, ip: 10.1.1.1/24, ports: [ens2]}")
    assert_reported(load_report(write_profile(text)), 8, "is on 10.1.1.0/24")


def test_fleet_unique_macs_on_segment(write_profile, load_report):
    text = FLEET.replace("ports: [ens2]}\n  b:", "ports: [ens2], mac: '52:54:00:00:00:01'}\n  b:").replace(
        "default: {mode: isolated, ports: [ens2]}", "default: {mode: isolated, ports: [ens2], mac: '52:54:00:00:00:01'}")
    assert_reported(load_report(write_profile(text)), 8, "is also used by a/network default")


def test_link_to_unknown_host(write_profile, load_report):
    assert_reported(load_report(write_profile(FLEET.replace("b:ens2]", "c:ens2]"))), 10, "no host 'c'")


def test_nat_port_without_link_warns(write_profile, load_report):
    report = load_report(write_profile(FLEET.replace("links:\n  - [a:ens2, b:ens2]\n", "")))
    assert not report.errors
    assert_reported(report, 5, "without a link explaining it", "warning")


def test_every_problem_is_reported_at_once(check):
    report = check("networks:\n  a: {mode: nat}\n  b: {mode: route}\n  c: {mode: bridge, bridge: x}\n")
    assert len(report.errors) == 3

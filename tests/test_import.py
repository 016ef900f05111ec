"""`vnetgen import`: held captures → profile → audit of the same captures in sync, no warnings; bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from test_audit_live import replay
from vnetgen.audit import audit_captures
from vnetgen.importer import ImportError_, import_captures, import_live, render_profile, self_check
from vnetgen.plugins import get_plugin_manager
from vnetgen.profile import load_valid

FIXTURES = ROOT / "tests" / "fixtures" / "audit"
HELD = sorted([*FIXTURES.glob("insync/*"), *FIXTURES.glob("iproute/*"), FIXTURES / "stopped" / "two-hosts"])


def invoke(*args):
    from vnetgen.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def imported_profile(directory: Path, tmp_path: Path, hosts=()) -> Path:
    pm = get_plugin_manager()
    imported = import_captures(directory, hosts, pm=pm)
    path = tmp_path / "imported.yaml"
    path.write_text(render_profile(imported))
    return path


@pytest.mark.parametrize("directory", HELD, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_round_trip_in_sync_without_warnings(directory, tmp_path):
    path = imported_profile(directory, tmp_path)
    pm = get_plugin_manager()
    profile, report = load_valid(str(path), pm)
    assert report.sorted() == []                       # validates with no warnings
    hosts = sorted(p.name for p in directory.iterdir() if p.is_dir())
    assert sorted(profile.hosts) == hosts
    result = audit_captures(profile, directory, strict=True, pm=pm)
    for host in result["hosts"].values():
        assert host["drift"] == []                     # no errors, no warnings
    assert result["in_sync"]


def test_cli_round_trip_and_stderr(tmp_path):
    directory = FIXTURES / "insync" / "two-hosts"
    out = tmp_path / "p.yaml"
    code, stdout, stderr = invoke("import", "--captures", directory, "-o", out)
    assert code == 0 and stdout == ""
    assert "guessed link caldera02:ens2 -- caldera03:ens2" in stderr
    assert "the audit will still report" not in stderr and "validation:" not in stderr
    text = out.read_text()
    assert "# guessed: ens2 is a trunk port" in text and "- [caldera02:ens2, caldera03:ens2]" in text
    assert 'mac: "52:54:00:53:d4:ee"' in text and "uuid: f6514662-26e5-431e-8544-fd216bed9312" in text
    # the two hosts' VMs share MACs (the recorded capture derived them from the VM name): none pinned
    assert "vms:\n      VM1:\n" in text and "networks: [{network: default}]" in text
    assert "not pinned: MAC 52:54:00:1a:4f:b2 is used by caldera02/vm VM1, caldera03/vm VM1" in stderr
    assert invoke("validate", out)[0] == 0
    assert invoke("audit", out, "--captures", directory, "--strict")[0] == 0
    # deterministic, and the same on stdout
    code, stdout, _ = invoke("import", "--captures", directory)
    assert code == 0 and stdout == text


def test_one_host_shorthand_and_values_libvirt_fills_in_left_out(tmp_path):
    text = imported_profile(FIXTURES / "insync" / "nat-default", tmp_path).read_text()
    assert "\nhost: caldera02\ntarget: el7" in text and "hosts:" not in text
    assert "stp:" not in text and "delay:" not in text and "autostart:" not in text and "state:" not in text
    assert "dhcp:\n      start: 192.168.122.2\n      end: 192.168.122.254\n" in text


def test_vms_from_their_definition_or_kept_as_comments(tmp_path):
    text = imported_profile(FIXTURES / "insync" / "nat-default", tmp_path).read_text()
    assert ("vms:\n  VM1:\n    # libosinfo: http://ubuntu.com/ubuntu/14.04 (os_variant is used only to install it: "
            "not imported)\n    memory: 2048   # MiB\n    vcpus: 2\n    disk: {path: /data/vm-images/vm1.img}\n"
            "    import: true\n    networks: [{network: default, mac: \"52:54:00:1a:4f:b2\"}]\n") in text
    # a capture of layout < 4 (no domxml/): the VM's NICs as a comment, as before
    captures = copy_capture(tmp_path)
    shutil.rmtree(captures / "caldera02" / "domxml")
    code, stdout, _ = invoke("import", "--captures", captures)
    assert code == 0 and "\nvms:" not in stdout
    assert '#     networks: [{network: default, mac: "52:54:00:1a:4f:b2"}]' in stdout
    # a definition without a disk to boot: kept as a comment, said why
    xml = (FIXTURES / "insync" / "nat-default" / "caldera02" / "domxml" / "VM1.xml").read_text()
    (captures / "caldera02" / "domxml").mkdir()
    start, end = xml.index("<disk "), xml.index("</disk>") + len("</disk>")
    (captures / "caldera02" / "domxml" / "VM1.xml").write_text(xml[:start] + xml[end:])
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0 and "vm VM1: no disk file or device (kept as a comment)" in stderr
    assert "#     memory: 2048   # MiB" in stdout and "\nvms:" not in stdout


def test_host_bridge_address_gateway_and_modes(tmp_path):
    text = imported_profile(FIXTURES / "insync" / "bridged-el9", tmp_path).read_text()
    assert "mybridge0:\n" in text and "ports: [enp0s25]" in text and "ip: 10.10.10.98/24" in text
    assert "gateway: 10.10.10.1" in text and "stp: false" in text
    assert "mode: bridge" in text and "state: inactive" in text
    assert "vnet0" not in text.split("# VMs")[0]   # a guest's tap is no port
    # the host's /etc/os-release names the target (a lab host of el9 says ID=rhel, VERSION_ID=8)
    assert 'target: el9   # from the host\'s /etc/os-release (ID=rhel, VERSION_ID=8)' in text
    assert "dns: [8.8.8.8]" in text   # nmcli-dns.txt: what NetworkManager runs on the bridge


def test_hosts_option_imports_only_those(tmp_path):
    path = imported_profile(FIXTURES / "insync" / "two-hosts", tmp_path, hosts=["caldera03"])
    profile, report = load_valid(str(path), get_plugin_manager())
    assert list(profile.hosts) == ["caldera03"]
    # a trunk port with no second host to explain it: validation's warning, said by the self-check
    assert any("without a link" in str(d) for d in report.sorted()) is False  # isolated: no warning


def copy_capture(tmp_path: Path, name: str = "nat-default") -> Path:
    target = tmp_path / "captures"
    shutil.copytree(FIXTURES / "insync" / name, target)
    return target


def test_unmodelled_is_kept_as_comments_and_listed(tmp_path):
    captures = copy_capture(tmp_path)
    xml = captures / "caldera02" / "net" / "default.xml"
    text = xml.read_text()
    # a DNS host name the profile cannot say (no DNS name): the network's DNS and domain stay comments
    text = text.replace("</network>", "  <dns><host ip='192.168.122.5'><hostname>x_y</hostname></host></dns>\n"
                                      "  <domain name='lab.example'/>\n"
                                      "  <ip family='ipv6' address='fd00::1' prefix='80'/>\n</network>")
    text = text.replace("<range start='192.168.122.2' end='192.168.122.254'/>",
                        "<range start='192.168.122.2' end='192.168.122.99'/>\n"
                        "      <range start='192.168.122.200' end='192.168.122.254'/>")
    xml.write_text(text)
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0
    # (an IPv6 <ip> is imported as `ips:` only with a /64, the prefix libvirt's RA and DHCPv6 need)
    for what in ("<dns>", "<domain>", "fd00::1/80", "DHCP range 192.168.122.200-192.168.122.254"):
        assert what in stdout and what in stderr
    assert "# not modelled: <dns>" in stdout
    # the second range is drift the audit reports: the self-check says so
    assert "the audit will still report error dhcp-range network/default" in stderr


def test_hostile_names_never_reach_the_output(tmp_path):
    captures = copy_capture(tmp_path)
    host = captures / "caldera02"
    listing = (host / "virsh-net-list.txt").read_text()
    listing = listing.replace(" default   active   yes         yes",
                              " default   active   yes         yes\n $(reboot)\x1b[2J   active   yes   yes")
    (host / "virsh-net-list.txt").write_text(listing)
    (host / "domiflist" / "VM1.txt").write_text(
        " Interface   Type      Source    Model    MAC\n"
        "-------------------------------------------------------------\n"
        " vnet0       bridge    br\x1b]0;x\x07   virtio   52:54:00:1a:4f:b2\n")
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0
    assert "$(reboot)" not in stdout and "\x1b" not in stdout and "\x07" not in stdout
    assert "\x1b" not in stderr and "\\x1b" in stderr and "not a valid profile name" in stderr
    assert "\\x1b" in stdout and "\\\\x1b" not in stdout   # kept as a comment, escaped once


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign", "error"])
def test_damaged_network_file_is_skipped_and_named(tmp_path, damage):
    captures = copy_capture(tmp_path, "routed")
    xml = captures / "caldera02" / "net" / "router.xml"
    if damage == "missing":
        xml.unlink()
    elif damage == "truncated":
        xml.write_text(xml.read_text()[:120])
    elif damage == "foreign":
        xml.write_text("<domain type='kvm'><name>router</name></domain>\n")
    else:
        xml.write_text("error: failed to get network 'router'\n")
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0
    assert "router.xml" in stderr and "skipped" in stderr
    assert "  default:" in stdout and "router:" not in stdout


def test_nothing_usable_exits_2(tmp_path):
    captures = tmp_path / "captures"
    (captures / "caldera02").mkdir(parents=True)
    (captures / "caldera02" / "virsh-net-list.txt").write_text("garbage\n")
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 2 and stdout == ""
    assert "virsh-net-list.txt" in stderr and "nothing usable" in stderr
    assert invoke("import", "--captures", tmp_path / "nowhere")[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("import", "--captures", empty)[0] == 2
    # one host's files given directly: the hint names DIR/<host>/
    code, _, stderr = invoke("import", "--captures", FIXTURES / "insync" / "nat-default" / "caldera02")
    assert code == 2 and "DIR/<host>/" in stderr


def test_a_link_out_of_the_capture_is_not_read(tmp_path):
    captures = copy_capture(tmp_path)
    outside = tmp_path / "secret.xml"
    outside.write_text((captures / "caldera02" / "net" / "default.xml").read_text())
    (captures / "caldera02" / "net" / "default.xml").unlink()
    (captures / "caldera02" / "net" / "default.xml").symlink_to(outside)
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert "outside" in stderr and "default.xml" in stderr
    assert "  default:" not in stdout


def test_one_broken_host_does_not_stop_the_others(tmp_path):
    captures = tmp_path / "captures"
    shutil.copytree(FIXTURES / "insync" / "two-hosts", captures)
    (captures / "caldera03" / "virsh-net-list.txt").write_text("error: failed to connect to the hypervisor\n")
    (captures / "caldera03" / "brctl-show.txt").unlink()
    (captures / "notes").mkdir()
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0 and "\nhost: caldera02\n" in stdout and "caldera03" not in stdout
    assert "notes: no virsh-net-list.txt" in stderr
    assert "caldera03: nothing usable (host not imported)" in stderr and "failed to connect" in stderr


def test_live_import_runs_the_audits_commands(tmp_path):
    directory = FIXTURES / "insync" / "two-hosts" / "caldera02"
    calls = []
    pm = get_plugin_manager()
    imported = import_live("caldera02", pm=pm, runner=replay(directory, calls))
    text = render_profile(imported)
    assert ["virsh", "net-dumpxml", "--network", "default"] in calls and ["brctl", "show"] in calls
    assert "ports: [ens2]" in text and "target: el7" in text
    # one host, its trunk port unexplained: validation warns, and nothing else remains
    assert [line for line in self_check(text, imported, pm) if "validation:" not in line] == []
    from_captures = render_profile(import_captures(FIXTURES / "insync" / "two-hosts", ["caldera02"], pm=pm))
    assert text.split("\n", 3)[3] == from_captures.split("\n", 3)[3]   # only the header's origin differs


def test_links_are_guessed_only_when_unambiguous(tmp_path):
    captures = tmp_path / "captures"
    shutil.copytree(FIXTURES / "insync" / "two-hosts", captures)
    shutil.copytree(captures / "caldera03", captures / "caldera04")
    imported = import_captures(captures, pm=get_plugin_manager())
    assert imported.links == []   # three hosts with ens2 trunks: no guess
    with pytest.raises(ImportError_):
        import_captures(tmp_path / "nowhere")


def test_scalars_read_back_as_written():
    import yaml

    from vnetgen.importer import Quoted, scalar

    for value in ("yes", "no", "on", "true", "null", "1:20", "0x10", "1e3", "12", "~", "default", "virbr0",
                  "192.168.122.1/24", "caldera02:ens2", "a b", "#x", "-x", "\x1b[2J", "é"):
        assert yaml.safe_load(f"k: {scalar(value)}")["k"] == value
    assert scalar(Quoted("52:54:00:53:d4:ee")) == '"52:54:00:53:d4:ee"'
    assert scalar(False) == "false" and scalar(15) == "15"


# --- build --against the source profile: what it changes ----------------------------------------------

AGAINST = sorted([*FIXTURES.glob("insync/*"), *FIXTURES.glob("iproute/*")])


def changes_against_source(directory: Path, tmp_path: Path):
    """The imported profile (target set as the source profile's, as stderr asks when it is a guess),
    built --against its source profile: REVIEW.md's Changes lines, and `vnetgen diff`'s output."""
    source = ROOT / "profiles" / f"{directory.name}.yaml"
    text = imported_profile(directory, tmp_path).read_text()
    profile, _ = load_valid(str(source), get_plugin_manager())
    for host in profile.hosts.values():
        text = text.replace("target: el7   # guessed", f"target: {host.target}   # guessed")
    path = tmp_path / "imported.yaml"
    path.write_text(text)
    code, _, stderr = invoke("build", path, "--against", source, "-o", tmp_path / "bundle")
    assert code == 0, stderr
    review = (tmp_path / "bundle" / "REVIEW.md").read_text()
    section = review.split(f"## Changes since {source.name}\n\n", 1)[1].split("\n## ", 1)[0]
    code, diff, _ = invoke("diff", source, path)
    assert code == 0
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    if lines == ["- nothing changes"]:   # REVIEW.md's words for an empty Changes section
        assert diff == "no changes\n"
        return [], diff, profile
    return lines, diff, profile


RESOLVER_FILES = {"ifcfg-dns.txt", "nmcli-dns.txt", "netplan-get.yaml"}


def not_in_capture(directory: Path, profile) -> set:
    """Changes whose cause the capture cannot hold: one without its target's resolver file (layout < 5)
    holds no resolvers; a capture of layout 1 holds no addresses or routes; one without virsh-list.txt no VMs; and where it cannot
    tell el9 from el7 (the guess), the kernel's delay of an STP-less bridge NetworkManager left alone
    is imported as el7 would set it."""
    from vnetgen.importer import import_captures

    lines = set()
    guessed = {h.name: h.target for h in import_captures(directory, pm=get_plugin_manager()).hosts}
    for name, host in profile.hosts.items():
        files = {p.name for p in (directory / name).iterdir()}
        for bridge in host.bridges.values():
            if guessed[name] != host.target and host.target == "el9" and not bridge.stp:
                lines.add(f"- **{name}** — bridge {bridge.name}: delay 0 → 15 (changes the host's own networking)")
            # import gives a bridge the resolvers with its address (a layout-1 capture holds none)
            if bridge.dns and (not files & RESOLVER_FILES or "ip-addr.json" not in files):
                lines.add(f"- **{name}** — bridge {bridge.name}: dns [{', '.join(map(str, bridge.dns))}] → [] "
                          "(changes the host's own networking)")
            if "ip-addr.json" not in files and bridge.ip:
                lines.add(f"- **{name}** — bridge {bridge.name}: ip {bridge.ip} → none (changes the host's own networking)")
                if bridge.gateway:
                    lines.add(f"- **{name}** — bridge {bridge.name}: gateway {bridge.gateway} → none "
                              "(changes the host's own networking)")
        if "virsh-list.txt" not in files:
            lines |= {f"- **{name}** — vm {vm}: no longer in the profile (the domain is left as it is) (removed)"
                      for vm in host.vms}
    return lines


@pytest.mark.parametrize("directory", AGAINST, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_build_against_the_source_profile_changes_nothing_the_capture_holds(directory, tmp_path):
    changes, diff, profile = changes_against_source(directory, tmp_path)
    assert set(changes) == not_in_capture(directory, profile) and len(changes) == len(set(changes)), changes


def test_build_against_is_empty_for_a_full_capture(tmp_path):
    """The capture of layout 4 that holds addresses, routes and VMs, of a profile without host DNS."""
    changes, diff, _ = changes_against_source(FIXTURES / "insync" / "nat-default", tmp_path)
    assert changes == [] and diff == "no changes\n"


@pytest.mark.parametrize("directory", [d for d in AGAINST if any(
    (h / f).exists() and (h / "ip-addr.json").exists() for h in d.iterdir() if h.is_dir() for f in RESOLVER_FILES)],
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_build_against_keeps_the_bridges_dns(directory, tmp_path):
    """Every held capture that holds its hosts' resolvers and addresses: no change of a bridge's dns, and the
    source profile's bridge resolvers are all in the imported profile."""
    changes, _, profile = changes_against_source(directory, tmp_path)
    assert not [c for c in changes if ": dns " in c], changes
    text = (tmp_path / "imported.yaml").read_text()
    for host in profile.hosts.values():
        for bridge in host.bridges.values():
            if bridge.dns:
                assert f"dns: [{', '.join(map(str, bridge.dns))}]" in text


# --- layout 5: the target from /etc/os-release, the bridges' resolvers ------------------------------

@pytest.mark.parametrize("release, target", [
    ('NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n', "el7"),
    ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n', "el9"),
    ("ID=fedora\nVERSION_ID=40\n", "el9"),
    ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', "ubuntu"),
    ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "ubuntu"),
])
def test_target_from_os_release(tmp_path, release, target):
    captures = copy_capture(tmp_path, "bridged-el9")
    (captures / "caldera02" / "os-release.txt").write_text(release)
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0 and f"\ntarget: {target}   # from the host's /etc/os-release (ID=" in stdout


def test_without_os_release_the_target_is_guessed_as_before(tmp_path):
    captures = copy_capture(tmp_path, "bridged-el9")
    (captures / "caldera02" / "os-release.txt").unlink()
    _, stdout, _ = invoke("import", "--captures", captures)
    assert "target: el7   # guessed (the default target)" in stdout
    (captures / "caldera02" / "os-release.txt").write_text("ID=plan9\nVERSION_ID=4\n")
    _, stdout, _ = invoke("import", "--captures", captures)
    assert ("target: el7   # /etc/os-release (ID=plan9, VERSION_ID=4) names no release a target claims; "
            "guessed (the default target)") in stdout


def test_without_the_resolver_file_the_bridge_keeps_a_note(tmp_path):
    captures = copy_capture(tmp_path, "bridged-el9")
    (captures / "caldera02" / "nmcli-dns.txt").unlink()
    _, stdout, _ = invoke("import", "--captures", captures)
    assert "\n    dns:" not in stdout and "# dns: its resolvers are not in the capture (nmcli-dns.txt not captured)" in stdout
    (captures / "caldera02" / "nmcli-dns.txt").write_text("GENERAL.DEVICE:mybridge0\nIP4.DNS[1]:8.8.8.x\n")
    _, stdout, _ = invoke("import", "--captures", captures)
    assert "nmcli-dns.txt:1: resolver '8.8.8.x' is not an IP address" in stdout


def test_el7_ifcfg_dns_parser():
    from plugins.el7 import parse_ifcfg_dns

    text = ("/etc/sysconfig/network-scripts/ifcfg-br0:DEVICE=br0\n"
            "/etc/sysconfig/network-scripts/ifcfg-br0:DNS2=\"1.1.1.1\"\n"
            "/etc/sysconfig/network-scripts/ifcfg-br0:DNS1='8.8.8.8'\n"
            "/etc/sysconfig/network-scripts/ifcfg-br0.bak:DEVICE=br0\n"
            "/etc/sysconfig/network-scripts/ifcfg-br0.bak:DNS1=9.9.9.9\n"
            "/etc/sysconfig/network-scripts/ifcfg-lan:TYPE=Bridge\n"
            "/etc/sysconfig/network-scripts/ifcfg-bad:DNS1=nope\n")
    found, unreadable = parse_ifcfg_dns(text, "ifcfg-dns.txt")
    assert found == {"br0": ("8.8.8.8", "1.1.1.1"), "lan": ()}
    assert unreadable == {"bad": "ifcfg-dns.txt:7: resolver 'nope' is not an IP address"}


def test_ubuntu_netplan_parser_reads_what_netplan_get_prints(tmp_path, build_bundle):
    """`netplan get all` (the real netplan) over the bundle's own netplan YAML."""
    import subprocess

    from plugins.ubuntu import NETPLAN_FILE, parse_netplan_dns

    netplan = shutil.which("netplan") or shutil.which("netplan", path="/usr/sbin:/sbin")
    if netplan is None:
        pytest.skip("netplan is not installed")
    bundle = build_bundle(ROOT / "profiles" / "bridged-ubuntu.yaml")
    (tmp_path / "etc" / "netplan").mkdir(parents=True)
    dest = tmp_path / "etc" / "netplan" / "90-vnetgen.yaml"
    dest.write_text(bundle.files[f"caldera02/{NETPLAN_FILE}"].text)
    dest.chmod(0o600)
    done = subprocess.run([netplan, "get", "--root-dir", str(tmp_path), "all"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    found, unreadable = parse_netplan_dns(done.stdout, "netplan-get.yaml")
    assert found["mybridge0"] == ("8.8.8.8",) and unreadable == {}
    from vnetgen.api import FactError

    with pytest.raises(FactError):
        parse_netplan_dns("network: [\n", "netplan-get.yaml")

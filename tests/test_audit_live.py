"""Live audits (commands run on this machine, with timeouts and clear errors) and the bundle's capture.sh."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from vnetgen.audit import AuditError, audit_captures, audit_live
from vnetgen.observe import read_capture

FIXTURES = ROOT / "tests" / "fixtures" / "audit"
NAT = ROOT / "profiles" / "nat-default.yaml"
NO_DOMAINS = b"error: this function is not supported by the connection driver: virConnectListAllDomains\n"


def replay(directory: Path, calls: list = None, virsh_error: bytes = b""):
    """A runner that answers each command of a live audit with the file capture.sh would have written."""
    def run(argv, timeout):
        argv = list(argv)
        if calls is not None:
            calls.append(argv)
        if argv[:2] == ["virsh", "-c"]:
            argv = ["virsh", *argv[3:]]
        if argv[0] == "virsh" and virsh_error:
            return 1, b"", virsh_error
        files = {("virsh", "net-list", "--all"): "virsh-net-list.txt", ("virsh", "list", "--all"): "virsh-list.txt",
                 ("brctl", "show"): "brctl-show.txt", ("ip", "-j", "-d", "link", "show"): "ip-link.json",
                 ("bridge", "-j", "link"): "bridge-link.json", ("ip", "-j", "addr", "show"): "ip-addr.json",
                 ("ip", "-j", "route", "show"): "ip-route.json", ("iptables", "-S", "FORWARD"): "iptables-forward.txt",
                 ("cat", "/etc/libvirt/network.conf"): "libvirt-network.conf",
                 ("virsh", "version", "--daemon"): "libvirt-version.txt",
                 ("firewall-cmd", "--get-active-zones"): "firewalld-zones.txt"}
        # layout 5: the OS and each target's resolvers
        from plugins.el7 import IFCFG_DNS, IFCFG_GREP
        from plugins.el9 import NM_DNS, NM_DNS_ARGV
        from plugins.ubuntu import NETPLAN_GET
        from vnetgen.observe import OS_RELEASE
        files.update({OS_RELEASE.argv: OS_RELEASE.name, IFCFG_GREP: IFCFG_DNS, NM_DNS_ARGV: NM_DNS,
                      ("netplan", "get", "all"): NETPLAN_GET})
        optional = {OS_RELEASE.name, IFCFG_DNS, NM_DNS, NETPLAN_GET, "brctl-show.txt", "ip-link.json", "bridge-link.json", "ip-addr.json", "ip-route.json",
                    "iptables-forward.txt", "libvirt-network.conf", "libvirt-version.txt", "firewalld-zones.txt"}
        if argv[0] == "sysctl":
            name = "sysctl.txt"
        elif argv == ["ip", "-j", "-d", "link", "show"] and not (directory / "ip-link.json").exists() \
                and (directory / "ip-link-bridge.json").exists():
            # A layout-1 capture of a host without brctl holds only the bridges of this output.
            name = "ip-link-bridge.json"
        elif argv[:3] == ["virsh", "net-dumpxml", "--network"]:
            name = f"net/{argv[3]}.xml"
        elif argv[:3] == ["virsh", "domiflist", "--domain"]:
            name = f"domiflist/{argv[3]}.txt"
        elif argv[:4] == ["virsh", "dumpxml", "--inactive", "--domain"]:
            name = f"domxml/{argv[4]}.xml"
            if not (directory / name).exists():   # a capture of layout < 4: answered as virsh fails
                return 1, b"", f"error: failed to get domain '{argv[4]}'\n".encode()
        elif argv == ["brctl", "--version"]:
            if not (directory / "brctl-show.txt").exists():
                raise FileNotFoundError(2, "No such file or directory", "brctl")
            return 0, b"bridge-utils, 1.7.1\n", b""
        else:
            name = files[tuple(argv)]
        if not (directory / name).exists():
            if name in optional:  # what a host whose tool lacks the option (or the tool) answers
                return 255, b"", b'Option "-j" is unknown, try "ip -help".\n'
            if argv[:2] == ["virsh", "list"]:
                return 1, b"", NO_DOMAINS
            raise AssertionError(f"no capture for {argv}")
        return 0, (directory / name).read_bytes(), b""
    return run


def test_live_in_sync():
    calls = []
    report = audit_live(NAT, runner=replay(FIXTURES / "insync" / "nat-default" / "caldera02", calls))
    assert report["in_sync"] and report["hosts"]["caldera02"] == {"in_sync": True, "drift": [], "not_audited": []}
    assert ["virsh", "net-dumpxml", "--network", "default"] in calls and ["brctl", "show"] in calls


def test_live_equals_captured():
    for kind in ("insync", "perturbed"):
        directory = FIXTURES / kind / "two-hosts"
        live = audit_live(ROOT / "profiles" / "two-hosts.yaml", "caldera02", runner=replay(directory / "caldera02"))
        captured = audit_captures(ROOT / "profiles" / "two-hosts.yaml", directory, ["caldera02"])
        for report in (live, captured):
            del report["hosts"]["caldera02"]["not_audited"]  # says `virsh list --all` failed / was not captured
        assert live == captured


def test_live_without_brctl_uses_iproute2():
    calls = []
    report = audit_live(ROOT / "profiles" / "bridged.yaml",
                        runner=replay(FIXTURES / "iproute" / "bridged" / "caldera02", calls))
    assert report["in_sync"]
    assert ["bridge", "-j", "link"] in calls and ["brctl", "show"] not in calls
    # A libvirt without a domain driver: the VMs are not audited, and the report says why.
    assert report["hosts"]["caldera02"]["not_audited"] == [
        "VMs: `virsh list --all` failed: error: this function is not supported by the connection driver: "
        "virConnectListAllDomains",
        'addresses: `ip -j addr show` failed: Option "-j" is unknown, try "ip -help".',
        'default route: `ip -j route show` failed: Option "-j" is unknown, try "ip -help".']


def test_live_uri():
    calls = []
    audit_live(NAT, uri="qemu+ssh://root@caldera02/system",
               runner=replay(FIXTURES / "insync" / "nat-default" / "caldera02", calls))
    virsh = [c for c in calls if c[0] == "virsh"]
    assert virsh and all(c[1:3] == ["-c", "qemu+ssh://root@caldera02/system"] for c in virsh)


@pytest.mark.parametrize("stderr, expected", [
    (b"error: failed to connect to the hypervisor\nerror: Failed to connect socket to "
     b"'/var/run/libvirt/libvirt-sock': No such file or directory\n", "libvirtd is not reachable"),
    (b"error: failed to connect to the hypervisor\nerror: Failed to connect socket to "
     b"'/var/run/libvirt/libvirt-sock': Permission denied\n", "permission denied by libvirtd"),
    (b"error: failed to connect to the hypervisor\nerror: authentication unavailable: no polkit agent available "
     b"to authenticate action 'org.libvirt.unix.manage'\n", "run as root or as a member of the libvirt group"),
])
def test_live_libvirtd_problems_are_clear(stderr, expected):
    runner = replay(FIXTURES / "insync" / "nat-default" / "caldera02", virsh_error=stderr)
    with pytest.raises(AuditError) as error:
        audit_live(NAT, runner=runner)
    message = str(error.value)
    assert message.startswith("`virsh net-list --all` failed (exit status 1): error: failed to connect")
    assert expected in message


def test_live_missing_virsh_and_timeouts():
    def no_virsh(argv, timeout):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    with pytest.raises(AuditError, match="virsh not found on this machine: install libvirt's client"):
        audit_live(NAT, runner=no_virsh)

    def hangs(argv, timeout):
        raise subprocess.TimeoutExpired(argv, timeout)

    with pytest.raises(AuditError, match=r"`virsh net-list --all` timed out after 5 s; libvirtd is not reachable"):
        audit_live(NAT, runner=hangs, timeout=5)


def test_live_sysctl_missing_reads_proc():
    base = replay(FIXTURES / "insync" / "nat-default" / "caldera02")

    def no_sysctl(argv, timeout):
        if argv[0] == "sysctl":
            raise FileNotFoundError(2, "No such file or directory", "sysctl")
        return base(argv, timeout)

    report = audit_live(NAT, runner=no_sysctl)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    kinds = [d["kind"] for d in report["hosts"]["caldera02"]["drift"]]
    assert kinds == ([] if forward == "1" else ["ip-forward"])


# --- through the real subprocess path, with stand-in tools on PATH -------------------------------

FAKE_VIRSH = r"""#!/bin/bash
shopt -s nullglob
printf '%s|%s|%s\n' "${LC_ALL-}" "${LIBVIRT_DEFAULT_URI-}" "$*" >> "$FAKE_LOG"
if [ -n "${FAKE_VIRSH_ERROR-}" ]; then printf '%s\n' "$FAKE_VIRSH_ERROR" >&2; exit 1; fi
d=$FAKE_CAPTURE
args="$*"
case "$args" in
  "net-list --all") exec cat "$d/virsh-net-list.txt" ;;
  "net-list --all --name") for f in "$d"/net/*.xml; do n=${f##*/}; printf '%s\n' "${n%.xml}"; done; echo ;;
  "net-dumpxml --network "*) exec cat "$d/net/${args#net-dumpxml --network }.xml" ;;
  "list --all")
    if [ ! -f "$d/virsh-list.txt" ]; then echo "error: not supported by the connection driver" >&2; exit 1; fi
    exec cat "$d/virsh-list.txt" ;;
  "list --all --name") for f in "$d"/domiflist/*.txt; do n=${f##*/}; printf '%s\n' "${n%.txt}"; done; echo ;;
  "domiflist --domain "*) exec cat "$d/domiflist/${args#domiflist --domain }.txt" ;;
  "dumpxml --inactive --domain "*)
    f="$d/domxml/${args#dumpxml --inactive --domain }.xml"
    if [ ! -f "$f" ]; then echo "error: failed to get domain '${args#dumpxml --inactive --domain }'" >&2; exit 1; fi
    exec cat "$f" ;;
  *) echo "error: fake virsh: unexpected: $*" >&2; exit 1 ;;
esac
"""
FAKE_BRCTL = ('#!/bin/bash\n'
              'case "$1" in show) exec cat "$FAKE_CAPTURE/brctl-show.txt" ;; *) echo "bridge-utils, 1.7.1" ;; esac\n')
FAKE_SYSCTL = '#!/bin/bash\nexec cat "$FAKE_CAPTURE/sysctl.txt"\n'
# ip, bridge, iptables and firewall-cmd replay the capture's files when it holds them, else fail as on a
# host without them: an ip without -j, no iptables, no firewalld running.
FAKE_REPLAY = r"""#!/bin/bash
case "${0##*/} $*" in
  "ip -j -d link show") file=ip-link.json ;;
  "ip -j addr show") file=ip-addr.json ;;
  "ip -j route show") file=ip-route.json ;;
  "bridge -j link") file=bridge-link.json ;;
  "iptables -S FORWARD") file=iptables-forward.txt ;;
  "firewall-cmd --get-active-zones") file=firewalld-zones.txt ;;
  "grep -r -H --include=ifcfg-* -E ^(DEVICE|TYPE|DNS[0-9]+)= /etc/sysconfig/network-scripts") file=ifcfg-dns.txt ;;
  "nmcli -t -f GENERAL.DEVICE,IP4.DNS device show") file=nmcli-dns.txt ;;
  "netplan get all") file=netplan-get.yaml ;;
  *) echo "fake ${0##*/}: unexpected: $*" >&2; exit 1 ;;
esac
if [ -f "$FAKE_CAPTURE/$file" ]; then exec cat -- "$FAKE_CAPTURE/$file"; fi
case "${0##*/}" in
  ip|bridge) echo 'Option "-j" is unknown, try "ip -help".' >&2; exit 255 ;;
  *) echo "${0##*/}: not running here" >&2; exit 1 ;;
esac
"""


FAKE_CAT = r"""#!/bin/bash
if [ "$*" = /etc/os-release ]; then
  if [ -f "$FAKE_CAPTURE/os-release.txt" ]; then exec REAL_CAT "$FAKE_CAPTURE/os-release.txt"; fi
  echo "cat: /etc/os-release: No such file or directory" >&2; exit 1
fi
exec REAL_CAT "$@"
"""


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """virsh, brctl and sysctl that replay a capture directory (set FAKE_CAPTURE), first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("virsh", FAKE_VIRSH), ("brctl", FAKE_BRCTL), ("sysctl", FAKE_SYSCTL), ("ip", FAKE_REPLAY),
                       ("bridge", FAKE_REPLAY), ("iptables", FAKE_REPLAY), ("firewall-cmd", FAKE_REPLAY)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name in ("grep", "nmcli", "netplan"):
        (bin_dir / name).write_text(FAKE_REPLAY)
        (bin_dir / name).chmod(0o755)
    for tool in ("mkdir", "mv", "rm"):  # all capture.sh needs besides; the real virsh stays out of reach
        (bin_dir / tool).symlink_to(shutil.which(tool))
    # cat: the capture's os-release.txt for /etc/os-release (never this machine's), else the real cat
    (bin_dir / "cat").write_text(FAKE_CAT.replace("REAL_CAT", shutil.which("cat")))
    (bin_dir / "cat").chmod(0o755)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("LC_ALL", "C.UTF-8")  # virsh would translate in any other locale
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    return bin_dir, log


def invoke(*args):
    from vnetgen.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_live_runs_commands_in_c_locale_and_honours_the_uri(fake_tools, monkeypatch):
    _, log = fake_tools
    monkeypatch.setenv("FAKE_CAPTURE", str(FIXTURES / "perturbed" / "two-hosts" / "caldera02"))
    code, out = invoke("audit", ROOT / "profiles" / "two-hosts.yaml", "--host", "caldera02", "--format", "json")
    assert code == 1 and '"kind": "port-missing"' in out
    lines = log.read_text().splitlines()
    assert lines[0] == "C|test:///default|net-list --all"
    assert all(line.startswith("C|test:///default|") for line in lines)


def test_cli_live_errors_exit_2(fake_tools, monkeypatch):
    bin_dir, _ = fake_tools
    monkeypatch.setenv("FAKE_CAPTURE", str(FIXTURES / "insync" / "nat-default" / "caldera02"))
    assert invoke("audit", NAT)[0] == 0
    monkeypatch.setenv("FAKE_VIRSH_ERROR", "error: failed to connect to the hypervisor\n"
                                           "error: Cannot recv data: Connection reset by peer")
    code, out = invoke("audit", NAT)
    assert code == 2 and "libvirtd is not reachable (test:///default)" in out
    (bin_dir / "virsh").unlink()
    code, out = invoke("audit", NAT)
    assert code == 2 and "virsh not found on this machine" in out
    code, out = invoke("audit", ROOT / "profiles" / "two-hosts.yaml", "--host", "caldera02", "--host", "caldera03")
    assert code == 2 and "give one --host" in out


# --- capture.sh -------------------------------------------------------------------------------

def tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def run_capture(build_bundle, profile: Path, host: str, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    bundle = build_bundle(profile, hosts=[host])
    script = tmp_path / "capture.sh"
    script.write_text(bundle.files[f"{host}/capture.sh"].text)
    bash = shutil.which("bash", path="/usr/bin:/bin")  # PATH holds only the stand-in tools
    return subprocess.run([bash, str(script), str(out)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["nat-default", "routed", "bridged"])
def test_capture_sh_writes_the_layout(fake_tools, monkeypatch, tmp_path, build_bundle, name):
    recorded = FIXTURES / "insync" / name / "caldera02"
    monkeypatch.setenv("FAKE_CAPTURE", str(recorded))
    out = tmp_path / "cap"
    done = run_capture(build_bundle, ROOT / "profiles" / f"{name}.yaml", "caldera02", out, tmp_path)
    assert done.returncode == 0, done.stderr
    written = tree(out / "caldera02")
    assert written.pop("capture-layout.txt") == b"5\n"
    assert written == tree(recorded)
    assert audit_captures(ROOT / "profiles" / f"{name}.yaml", out)["in_sync"]


def test_capture_sh_replaces_an_earlier_capture(fake_tools, monkeypatch, tmp_path, build_bundle):
    out = tmp_path / "cap"
    stale = out / "caldera02"
    (stale / "net").mkdir(parents=True)
    (stale / "domiflist").mkdir()
    for name in ("net/gone.xml", "domiflist/VM9.txt", "ip-link-bridge.json", "bridge-link.json", "virsh-list.txt"):
        (stale / name).write_text("stale\n")
    (stale / "notes.txt").write_text("mine\n")
    recorded = FIXTURES / "insync" / "routed" / "caldera02"  # no VMs: virsh list fails here
    monkeypatch.setenv("FAKE_CAPTURE", str(recorded))
    done = run_capture(build_bundle, ROOT / "profiles" / "routed.yaml", "caldera02", out, tmp_path)
    assert done.returncode == 0, done.stderr
    files = tree(stale)
    assert files.pop("notes.txt") == b"mine\n"  # not capture.sh's: kept
    assert files.pop("capture-layout.txt") == b"5\n"
    assert files == tree(recorded)


def test_capture_sh_stops_when_virsh_fails(fake_tools, monkeypatch, tmp_path, build_bundle):
    monkeypatch.setenv("FAKE_CAPTURE", str(FIXTURES / "insync" / "routed" / "caldera02"))
    monkeypatch.setenv("FAKE_VIRSH_ERROR", "error: failed to connect to the hypervisor")
    done = run_capture(build_bundle, ROOT / "profiles" / "routed.yaml", "caldera02", tmp_path / "cap", tmp_path)
    assert done.returncode != 0 and "failed to connect" in done.stderr


@pytest.mark.realtool
def test_capture_sh_with_real_virsh_brctl_and_sysctl(tmp_path, build_bundle, monkeypatch):
    """capture.sh against the real tools (libvirt's test driver; brctl and sysctl only read): the audit reads it all."""
    require_tool("virsh", "brctl", "sysctl")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    out = tmp_path / "cap"
    done = run_capture(build_bundle, NAT, "caldera02", out, tmp_path)
    assert done.returncode == 0, done.stderr
    files = set(tree(out / "caldera02"))
    assert {"virsh-net-list.txt", "net/default.xml", "brctl-show.txt", "sysctl.txt", "virsh-list.txt",
            "domiflist/test.txt"} <= files
    from vnetgen.plan import plan_profile
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    pm = get_plugin_manager()
    plan = plan_profile(load_valid(str(NAT), pm)[0], pm, ["caldera02"])[0]
    observed = read_capture(out, plan)
    assert observed.networks["default"].active and observed.definitions["default"].bridge == "virbr0"
    assert "test" in observed.domains  # the test driver's domain (its NICs: not a VM of the profile)
    report = audit_captures(NAT, out)
    kinds = {d["kind"] for d in report["hosts"]["caldera02"]["drift"]}
    assert {"uuid", "vm-missing"} <= kinds  # the test driver's own network and domain


@pytest.mark.realtool
def test_live_audit_with_real_virsh_honours_libvirt_default_uri(monkeypatch):
    require_tool("virsh", "brctl", "sysctl")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    monkeypatch.delenv("LC_ALL", raising=False)
    report = audit_live(NAT)
    drift = {(d["kind"], d["object"]): d for d in report["hosts"]["caldera02"]["drift"]}
    # The test driver's default network and its domain "test", not this machine's libvirt.
    assert drift["uuid", "network/default"]["actual"] == "dd8fe884-6c02-601e-7551-cca97df1c5df"
    assert ("vm-missing", "vm/VM1") in drift
    assert os.environ["LIBVIRT_DEFAULT_URI"] == "test:///default"

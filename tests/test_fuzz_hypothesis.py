"""Issue 16: property-based fuzzing of the profile loader, the manifest reader and every capture parser.

Fixed seed and a time budget per example (CI-stable): whatever the input, no traceback (only the
documented error types) and no runaway time.
"""
from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vnetgen.facts import (BridgePorts, DomIfList, FactError, IpAddrs, IpLinkBridges,  # noqa: E402
                           IpLinks, IpRoutes, NetDumpXml, NetList, Sysctl, VirshList)
from vnetgen_plugins.brctl_show import BrctlShow  # noqa: E402  (el7's parser)

FUZZ = settings(max_examples=150, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Text near the real thing finds more than uniform noise: pieces of each tool's output, mixed with junk.
PIECES = ["bridge name\tbridge id\t\tSTP enabled\tinterfaces\n", "virbr0\t\t8000.525400fa45cf\tyes\t\tvnet0\n",
          "\t\t\t\t\t\t\tvnet1\n", "can't get info Operation not supported\n", " Name   State   Autostart   Persistent\n",
          "--------------------------------------------\n", " default   active   yes   yes\n", "error: failed\n",
          "<network><name>default</name><bridge name='virbr0'/></network>\n", "net.ipv4.ip_forward = 1\n",
          '[{"ifname": "br0", "linkinfo": {"info_kind": "bridge"}}]', "\x00", "\x1b[2J", "\udcff", "\r\n", " " * 50,
          "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", " 1   vm1   running\n", " -   vm 2   shut off\n",
          " vnet0  network  default  virtio  52:54:00:11:22:33\n", "{", "]", "null", '"', "<", "&"]
CAPTURE_TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=40)), max_size=30).map("".join)

PARSERS = [BrctlShow(), NetList(), VirshList(), DomIfList(), NetDumpXml(), Sysctl(), Sysctl(["a.b", "c.d"]),
           IpAddrs(), IpLinks(), IpRoutes(), IpLinkBridges(), BridgePorts()]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: type(p).__name__)
@seed(16)
@FUZZ
@given(text=CAPTURE_TEXT)
def test_capture_parsers_raise_only_fact_error(parser, text):
    try:
        parser.process(text, "capture")
    except FactError as error:
        message = str(error)
        assert "\n" not in message and "\x1b" not in message
        assert len(message) < 400


PROFILE_PIECES = ["vnetgen: 1\n", "networks:\n", "  n: {mode: nat, ip: 10.0.0.1/24}\n", "hosts:\n", "  h:\n",
                  "    networks: {n: {mode: isolated}}\n", "x: &a [1, 2, 3]\n", "y: [*a, *a, *a]\n",
                  "  <<: *a\n", "bridges: {br0: {ports: [lo]}}\n", "nics: {lo: {hwaddr: 'ff:ff:ff:ff:ff:ff'}}\n",
                  "vms: {v: {networks: [n, {network: n}]}}\n", "\t", "- ", ": ", "{", "[", "!!python/object:x {}\n",
                  "\x00", "\ufeff", "%YAML 1.1\n", "---\n", "..."]
PROFILE_TEXT = st.lists(st.one_of(st.sampled_from(PROFILE_PIECES), st.text(max_size=30)), max_size=25).map("".join)


@seed(16)
@FUZZ
@given(text=PROFILE_TEXT)
def test_profile_loader_reports_only_diagnostics(tmp_path_factory, text):
    from vnetgen.diagnostics import InvalidProfile
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    path = tmp_path_factory.mktemp("p") / "profile.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        load_valid(str(path), get_plugin_manager())
    except InvalidProfile as error:
        for diag in error.report.items:
            assert diag.line >= 1 and diag.col >= 1
            assert "\n" not in diag.message


MANIFEST_TEXT = st.lists(st.one_of(st.sampled_from(["REVIEW.md", "../x", "/etc/passwd", "a//b", "./c", "..",
                                                    "caldera02/runbook.sh", "\x00", "\\", "\n"]),
                                   st.text(max_size=20)), max_size=20).map("\n".join)


@seed(16)
@FUZZ
@given(text=MANIFEST_TEXT)
def test_manifest_reader_accepts_only_paths_inside(tmp_path_factory, text):
    from vnetgen.bundle import BundleError, _owned

    directory = tmp_path_factory.mktemp("d")
    (directory / ".vnetgen-manifest").write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        entries = _owned(str(directory))
    except BundleError as error:
        assert "\n" not in str(error)
        return
    for entry in entries or ():
        assert not entry.startswith("/") and ".." not in entry.split("/") and "" not in entry.split("/")

"""Shared fixtures: plugin manager, profile writing and building, real-tool gating, bundle snapshots."""
from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

ROOT = Path(__file__).resolve().parent.parent
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    """Lab and real-tool tests first (each takes seconds to a minute and a half), unit tests after:
    with pytest-xdist the workers start on the long tests and the short ones fill in at the end,
    instead of one long test starting last and running alone. Order within each group is kept."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("lab") or item.get_closest_marker("realtool") else 1)


def require_tool(*names: str) -> None:
    """Skip (outside CI) or fail (in CI, CI=true) when a real tool the test needs is absent."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        message = f"needs {', '.join(missing)} (install: see README, 'Tests')"
        if IN_CI:
            pytest.fail(message + " — CI must have it", pytrace=False)
        pytest.skip(message)


def require_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("needs root — CI runs as root", pytrace=False)
        pytest.skip("needs root")


@pytest.fixture
def pm():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def write_profile(tmp_path):
    """write_profile(text) → path of a profile file holding the dedented text."""
    def _write(text: str, name: str = "profile.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return str(path)
    return _write


@pytest.fixture
def load_report(pm):
    """load_report(path) → Report after loading and validating (never raises for invalid input)."""
    from vnetgen.profile import load
    from vnetgen.plugins import modes
    from vnetgen.validate import validate

    def _load(path: str):
        profile, report = load(path, modes(pm))
        if profile is not None:
            validate(profile, report, pm)
        return report
    return _load


@pytest.fixture
def build_bundle(pm):
    """build_bundle(path) → Bundle of a valid profile."""
    from vnetgen.bundle import build
    from vnetgen.profile import load_valid

    def _build(path, hosts=None):
        profile, _ = load_valid(str(path), pm)
        return build(profile, pm, profile_file=os.path.basename(str(path)), hosts=hosts)
    return _build


@pytest.fixture(scope="session")
def lab_ready():
    """Skips when this machine cannot run a lab (root, libvirtd, dnsmasq…); fails instead when CI=true."""
    from vnetgen.lab import require_lab

    require_lab()


@pytest.fixture
def lab(lab_ready):
    """A fresh vnetgen.lab.Lab, torn down after the test whatever happened."""
    from vnetgen.lab import Lab

    with Lab() as the_lab:
        yield the_lab


class BundleFileSnapshot(SingleFileSnapshotExtension):
    """One snapshot file per bundle file, under the top-level snapshots/ directory."""

    _write_mode = WriteMode.TEXT
    file_extension = "txt"
    _file_extension = "txt"  # the name syrupy < 5 (the last for Python 3.9) reads

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(ROOT / "snapshots" / test_location.basename)


@pytest.fixture
def file_snapshot(snapshot):
    return snapshot.use_extension(BundleFileSnapshot)

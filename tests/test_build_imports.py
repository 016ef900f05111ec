"""What a build of the seed profile leaves unimported: modules that only other commands or rare input
need (their import is start-up time of every build, benchmarks/bench.py's seed row)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

BUILD = """
import json, runpy, sys
sys.argv = ["vnetgen", "build", sys.argv[1], "-o", sys.argv[2]]
try:
    runpy.run_module("vnetgen", run_name="__main__", alter_sys=True)
except SystemExit as end:
    assert not end.code, end.code
print(json.dumps(sorted(sys.modules)))
"""

NOT_IMPORTED = {
    "tarfile": "vnetgen.archive writes tar headers itself (tarfile: a member name over 100 bytes)",
    "shlex": "vnetgen.shell quotes as shlex.quote does",
    "vnetgen.diff": "a build --against another profile",
    "vnetgen.observe": "audits (a build's capture.sh comes from vnetgen.capture)",
    "vnetgen.facts": "audit and import parse captures",
    "vnetgen.audit": "vnetgen audit",
    "vnetgen.importer": "vnetgen import",
}


def test_a_build_leaves_unimported_what_it_does_not_use(tmp_path):
    out = subprocess.run([sys.executable, "-c", BUILD, str(ROOT / "profiles" / "nat-default.yaml"), str(tmp_path / "b")],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    modules = set(json.loads(out.splitlines()[-1]))
    assert {"vnetgen.bundle", "vnetgen.capture", "vnetgen.archive"} <= modules   # the build ran, its tar too
    imported = {name: why for name, why in NOT_IMPORTED.items() if name in modules}
    assert not imported, f"a build imported what only these need: {imported}"

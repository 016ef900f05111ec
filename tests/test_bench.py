"""benchmarks/bench.py --quick runs end to end, so the script cannot rot (its figures are not checked:
timing belongs to the bench, never to a test)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.realtool  # runs the whole bench script (seconds of builds and audits)
def test_bench_quick_prints_every_figure_with_its_goal():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for figure in ("vnetgen --help", "build profiles/nat-default.yaml", "C compose + cp -r", "peak RSS",
                   "audit of", "vnetgen validate", "per host", "runbook first apply"):
        assert figure in run.stdout
    assert "≤ 1.5×" in run.stdout and "≤ 0.5×" in run.stdout


@pytest.mark.realtool  # builds and writes a small fleet twice
def test_bench_ansible_runs_and_prints_the_share_with_its_goal():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ansible.py"), "--hosts", "5", "--runs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "5 hosts: build+write" in run.stdout and "goal ≤ 10%" in run.stdout

"""Runbook speed against the bare-virsh floor, in a throw-away lab (root, libvirtd, namespaces).

    python3 benchmarks/runbook.py [--networks N] [--repeat R]

For N NAT networks: the median time of the first apply (`runbook.sh --no-vms` on a fresh lab host),
of a no-op re-run, and of the bare `virsh net-define/net-start/net-autostart` calls for the same
networks on another fresh host (the floor); and how many virsh processes each run started (a shim
first on PATH counts them). Prints the ratios beside the goals of issue 13 (first ≤ 1.3×, re-run
≤ 0.3× the floor). Importable: `measure(networks, repeat)` returns the rows for benchmarks/bench.py.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHIM = """#!/bin/bash
echo x >> "$VIRSH_COUNT"
exec {virsh} "$@"
"""


def profile_text(networks: int) -> str:
    lines = ["vnetgen: 1", "host: bench", "networks:"]
    for n in range(networks):
        lines += [f"  n{n}:", "    mode: nat", f"    ip: 10.{100 + n}.0.1/24",
                  f"    dhcp: {{start: 10.{100 + n}.0.10, end: 10.{100 + n}.0.99}}"]
    return "\n".join(lines) + "\n"


def _timed(host, argv, env) -> Tuple[float, int]:
    count = Path(env["VIRSH_COUNT"])
    count.write_text("")
    start = time.perf_counter()
    host.run(argv, env=env, timeout=600)
    return time.perf_counter() - start, len(count.read_text().splitlines())


def measure(networks: int = 10, repeat: int = 3) -> List[Dict[str, object]]:
    from vnetgen import lab as labmod
    from vnetgen.bundle import build, write
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    labmod.require_lab()
    work = Path(tempfile.mkdtemp(prefix="vnetgen-bench-"))
    try:
        (work / "profile.yaml").write_text(profile_text(networks))
        pm = get_plugin_manager()
        profile, _ = load_valid(str(work / "profile.yaml"), pm)
        write(build(profile, pm, profile_file="profile.yaml"), str(work / "bundle"))
        shim_dir = work / "shim"
        shim_dir.mkdir()
        (shim_dir / "virsh").write_text(SHIM.format(virsh=shutil.which("virsh")))
        (shim_dir / "virsh").chmod(0o755)
        env = {"PATH": f"{shim_dir}:{os.environ['PATH']}", "VIRSH_COUNT": str(work / "count")}
        bare_script = " && ".join(
            f"virsh net-define {work}/bundle/bench/networks/n{n}.xml >/dev/null && virsh net-start n{n} >/dev/null"
            f" && virsh net-autostart n{n} >/dev/null" for n in range(networks))
        first, rerun, bare = [], [], []
        calls: Dict[str, int] = {}
        for _ in range(repeat):
            with labmod.Lab() as lab:
                host = lab.host("bench")
                host.assert_private()
                seconds, calls["first"] = _timed(host, ["bash", f"{work}/bundle/bench/runbook.sh", "--no-vms"], env)
                first.append(seconds)
                seconds, calls["rerun"] = _timed(host, ["bash", f"{work}/bundle/bench/runbook.sh", "--no-vms"], env)
                rerun.append(seconds)
            with labmod.Lab() as lab:
                host = lab.host("bench")
                host.assert_private()
                seconds, calls["bare"] = _timed(host, ["bash", "-c", bare_script], env)
                bare.append(seconds)
        floor = statistics.median(bare)
        return [
            {"what": f"runbook first apply, {networks} networks", "seconds": statistics.median(first),
             "floor": floor, "ratio": statistics.median(first) / floor, "goal": 1.3, "virsh": calls["first"]},
            {"what": f"runbook no-op re-run, {networks} networks", "seconds": statistics.median(rerun),
             "floor": floor, "ratio": statistics.median(rerun) / floor, "goal": 0.3, "virsh": calls["rerun"]},
            {"what": f"bare virsh define/start/autostart ×{networks} (floor)", "seconds": floor, "floor": floor,
             "ratio": 1.0, "goal": None, "virsh": calls["bare"]},
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'figure':55} {'median s':>9} {'floor s':>8} {'ratio':>6} {'goal':>6} {'virsh':>6}")
    for row in measure(args.networks, args.repeat):
        goal = f"≤{row['goal']}" if row["goal"] else ""
        print(f"{row['what']:55} {row['seconds']:9.3f} {row['floor']:8.3f} {row['ratio']:6.2f} {goal:>6} {row['virsh']:6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

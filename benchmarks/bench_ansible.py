"""What DIR/ansible/ adds to a build: the inventory and playbooks, and the per-host tars.

    python benchmarks/bench_ansible.py [--hosts 1000] [--runs 3]

Builds bench.py's generated fleet and writes the bundle (what `vnetgen build` does), then does the
ansible part again on its own: fleet.ansible_files + fleet.host_tars over the built files, and
writing those files to a scratch directory. Prints that part as a share of the whole (medians).
Not a test: numbers depend on the machine (issue 11 asks for at most 10% at 1,000 hosts).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import fleet  # noqa: E402


def _write_files(files, directory: str) -> None:
    for path, artifact in files.items():
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(artifact.content())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from vnetgen.bundle import build, write
    from vnetgen.fleet import BUNDLES, ansible_files, host_tars
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid
    from vnetgen.review import run_waves

    totals, parts, builds, builds_part = [], [], [], []
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fleet.yaml")
        with open(path, "w") as handle:
            handle.write(fleet(args.hosts))
        pm = get_plugin_manager()
        profile, _ = load_valid(path, pm)
        for run in range(args.runs):
            out, scratch = os.path.join(directory, f"out{run}"), os.path.join(directory, f"scratch{run}")
            start = time.perf_counter()
            bundle = build(profile, pm, "fleet.yaml")
            builds.append(time.perf_counter() - start)
            write(bundle, out)
            totals.append(time.perf_counter() - start)
            waves = run_waves(profile, bundle.plans)   # computed once for REVIEW.md and the inventory
            start = time.perf_counter()
            part = ansible_files(waves, profile.rollout, "fleet.yaml")
            part.update(host_tars(bundle.files, [p.name for p in bundle.plans]))
            builds_part.append(time.perf_counter() - start)
            _write_files(part, scratch)
            parts.append(time.perf_counter() - start)
            size = sum(len(a.content()) for p, a in bundle.files.items() if p.startswith(BUNDLES))
            shutil.rmtree(out)
            shutil.rmtree(scratch)
            del bundle, part
    total, part = statistics.median(totals), statistics.median(parts)
    print(f"{args.hosts} hosts: build+write {total:.2f} s, of which ansible/ {part:.2f} s "
          f"({100 * part / total:.1f}%; goal ≤ 10%), tars {size / 1e6:.1f} MB (medians of {args.runs})")
    build_only, part_only = statistics.median(builds), statistics.median(builds_part)
    print(f"  in memory only: build {build_only:.2f} s, of which ansible/ {part_only:.2f} s "
          f"({100 * part_only / build_only:.1f}%)")


if __name__ == "__main__":
    main()

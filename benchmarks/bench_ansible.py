"""What DIR/ansible/ adds to a build: the inventory and playbooks, and the per-host tars.

    python benchmarks/bench_ansible.py [--hosts 1000]

Builds bench.py's generated fleet, then times the ansible part of the build again on its own
(fleet.ansible_files + fleet.host_tars over the built files) and prints it as a share of the build.
Not a test: numbers depend on the machine (issue 11 asks for at most 10% at 1,000 hosts).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import fleet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()
    from vnetgen.bundle import build
    from vnetgen.fleet import BUNDLES, ansible_files, host_tars
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fleet.yaml")
        with open(path, "w") as handle:
            handle.write(fleet(args.hosts))
        pm = get_plugin_manager()
        profile, _ = load_valid(path, pm)
        start = time.perf_counter()
        bundle = build(profile, pm, "fleet.yaml")
        total = time.perf_counter() - start
        start = time.perf_counter()
        ansible_files(profile, bundle.plans, "fleet.yaml")
        host_tars(bundle.files, [p.name for p in bundle.plans])
        part = time.perf_counter() - start
        size = sum(len(a.content()) for p, a in bundle.files.items() if p.startswith(BUNDLES))
    print(f"{args.hosts} hosts: build {total:.2f} s, of which ansible/ {part:.2f} s ({100 * part / total:.1f}%), "
          f"tars {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

"""Speed and memory of vnetgen on generated fleets: startup, load+validate, plan+render, scaling.

    python benchmarks/bench.py [--hosts 10,100,1000] [--out FILE]

Prints one row per fleet size; the time per host should stay flat as the fleet grows (linear).
Not a test: numbers depend on the machine. Record them in the README when they change materially.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def fleet(hosts: int) -> str:
    """A profile of `hosts` hosts in pairs joined by a trunk, each with 4 networks, a host bridge and 4 VMs."""
    lines = ["vnetgen: 1", "name: bench", "defaults: {target: el7}", "hosts:"]
    for h in range(hosts):
        name = f"h{h:05d}"
        lines += [f"  {name}:", "    bridges:", f"      br0: {{ports: [eth0], ip: 10.{h // 250}.{h % 250}.2/24,"
                  f" gateway: 10.{h // 250}.{h % 250}.1}}", "    networks:",
                  "      lan: {mode: bridge, bridge: br0}"]
        for n in range(3):
            dhcp = "" if (n == 0 and h % 2) else (
                f", dhcp: {{start: 172.{16 + n}.{h % 250}.10, end: 172.{16 + n}.{h % 250}.200, hosts: ["
                + ", ".join(f"{{mac: '52:54:01:{h % 256:02x}:{n:02x}:{v:02x}', ip: 172.{16 + n}.{h % 250}.{201 + v}}}"
                            for v in range(4)) + "]}")
            ports = ", ports: [ens2]" if n == 0 else ""
            mode = "isolated" if (n == 0 and h % 2) else "nat"
            ip = "" if (n == 0 and h % 2) else f", ip: 172.{16 + n}.{h % 250}.1/24"
            lines.append(f"      net{n}: {{mode: {mode}{ip}{dhcp}{ports}}}")
        lines.append("    vms:")
        for v in range(4):
            lines.append(f"      vm{v}: {{memory: 1024, vcpus: 1, networks: [net{v % 3}, lan], import: true,"
                         f" os_variant: generic, disk: {{path: /var/lib/libvirt/images/{name}-vm{v}.qcow2}}}}")
    lines.append("links:")
    for h in range(0, hosts - 1, 2):
        lines.append(f"  - [h{h:05d}:ens2, h{h + 1:05d}:ens2]")
    return "\n".join(lines) + "\n"


def measure(hosts: int, directory: str) -> dict:
    from vnetgen.bundle import build
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    path = os.path.join(directory, f"fleet-{hosts}.yaml")
    with open(path, "w") as handle:
        handle.write(fleet(hosts))
    pm = get_plugin_manager()
    start = time.perf_counter()
    profile, _ = load_valid(path, pm)
    loaded = time.perf_counter()
    bundle = build(profile, pm, os.path.basename(path))
    built = time.perf_counter()
    lines = sum(1 for _ in open(path))
    size = sum(len(a.content()) for a in bundle.files.values())
    return {"hosts": hosts, "lines": lines, "load_s": loaded - start, "build_s": built - loaded,
            "ms_per_host": 1000 * (built - start) / hosts, "files": len(bundle.files), "bundle_mb": size / 1e6}


def hostile(directory: str) -> dict:
    """Seconds to validate 20,000 errors, and a 6 KB profile repeating one list through aliases."""
    from vnetgen.diagnostics import InvalidProfile
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    items = ",".join(["a/b"] * 1000)
    bomb = ["vnetgen: 1", "networks:", f"  n0: {{mode: nat, ip: 10.0.0.1/24, ports: &p [{items}]}}"]
    bomb += [f"  n{i}: {{mode: nat, ip: 10.0.{i}.1/24, ports: *p}}" for i in range(1, 60)]
    cases = {"errors_20000": "vnetgen: 1\nnetworks:\n" + "".join(f"  n{i}: {{mode: nat}}\n" for i in range(20000)),
             "alias_bomb_6kb": "\n".join(bomb) + "\n"}
    pm = get_plugin_manager()
    result = {}
    for name, text in cases.items():
        path = os.path.join(directory, f"{name}.yaml")
        with open(path, "w") as handle:
            handle.write(text)
        start = time.perf_counter()
        try:
            load_valid(path, pm)
        except InvalidProfile:
            pass
        result[name] = time.perf_counter() - start
    return result


def startup() -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vnetgen", "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="10,100,1000")
    args = parser.parse_args()
    print(f"vnetgen --help: {startup() * 1000:.0f} ms (best of 5, includes the interpreter)")
    print(f"{'hosts':>6} {'lines':>7} {'load s':>7} {'build s':>8} {'ms/host':>8} {'files':>6} {'MB':>6}")
    with tempfile.TemporaryDirectory() as directory:
        for hosts in (int(h) for h in args.hosts.split(",")):
            row = measure(hosts, directory)
            print(f"{row['hosts']:>6} {row['lines']:>7} {row['load_s']:>7.2f} {row['build_s']:>8.2f} "
                  f"{row['ms_per_host']:>8.1f} {row['files']:>6} {row['bundle_mb']:>6.1f}")
        for name, seconds in hostile(directory).items():
            print(f"validate {name}: {seconds:.2f} s (refused)")
    import_rows(int(h) for h in args.hosts.split(","))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


def measure_import(hosts: int, directory: str) -> dict:
    """`vnetgen import` of `hosts` captured hosts (copies of the held two-hosts captures): reading and
    rendering, then the self-check (load, validate, plan and audit the result against the captures)."""
    import shutil
    from pathlib import Path

    from vnetgen.importer import import_captures, render_profile, self_check
    from vnetgen.plugins import get_plugin_manager

    held = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audit" / "insync" / "two-hosts"
    captures = Path(directory) / f"captures-{hosts}"
    for h in range(hosts):
        shutil.copytree(held / ("caldera02", "caldera03")[h % 2], captures / f"h{h:05d}")
    pm = get_plugin_manager()
    start = time.perf_counter()
    imported = import_captures(captures, pm=pm)
    text = render_profile(imported)
    read = time.perf_counter()
    remaining = self_check(text, imported, pm)
    checked = time.perf_counter()
    return {"hosts": hosts, "import_s": read - start, "check_s": checked - read,
            "ms_per_host": (checked - start) * 1000 / hosts, "lines": text.count("\n"), "remaining": len(remaining)}


def import_rows(sizes) -> None:
    """The import rows of the report (called from main)."""
    print(f"{'import':>6} {'lines':>7} {'read s':>7} {'check s':>8} {'ms/host':>8}")
    with tempfile.TemporaryDirectory() as directory:
        for hosts in sizes:
            row = measure_import(hosts, directory)
            print(f"{row['hosts']:>6} {row['lines']:>7} {row['import_s']:>7.2f} {row['check_s']:>8.2f} "
                  f"{row['ms_per_host']:>8.1f}")


if __name__ == "__main__":
    main()

"""Every speed figure of vnetgen as a ratio against its floor, measured in the same run.

    python benchmarks/bench.py [--quick] [--check] [--runs N] [--hosts 10,100,1000,2000]

Each figure runs the real command line (`python -m vnetgen ...`, a fresh process, start-up included)
in turn with its floor, A B A B ..., and the ratio is the median of the pairwise ratios, so a machine
whose speed drifts during the run still gives a fair ratio. Floors:

- import: a process that only imports the dependencies (typer, pluggy, jinja2, lxml, yaml);
- compose: a process that parses the profile with libyaml's C composer (`yaml.compose`, CSafeLoader),
  the least any loader that keeps line marks can do; plus `cp -r` of the bundle the build wrote, the
  least it costs to write the same bytes;
- validate: `vnetgen validate` of the same profile (the audit loads and plans it as well);
- bare virsh: the runbook rows need root and libvirtd (the lab) and say so when skipped.

The fleet profiles and the captures are generated into a temporary directory: nothing is committed.
--quick (seconds, run by the tests) uses small fleets and one run: it proves the script works, its
ratios are not the goals' figures. Only --check makes a missed goal an exit status (1). --only picks
rows (help, seed, fleet, audit, scale, hostile, import, runbook) when working on one figure.

The measured processes may write bytecode (PYTHONDONTWRITEBYTECODE is dropped from their
environment; the warm-up run writes it): an installed vnetgen is byte-compiled by pip, as its
dependencies are, and a floor that imports compiled modules must be compared with a vnetgen that
does too, not with one that compiles its 50 modules from source in every run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(os.path.dirname(HERE), "profiles", "nat-default.yaml")
PYTHON = sys.executable
DEPS = "import typer, pluggy, jinja2, lxml.etree, yaml"
COMPOSE = ("import sys, yaml\n"
           "with open(sys.argv[1], 'rb') as handle:\n"
           "    yaml.compose(handle, Loader=yaml.CSafeLoader)\n")


# --- generated inputs ------------------------------------------------------------------------------


def fleet(hosts: int, networks: int = 10, vms: int = 10) -> str:
    """A profile of `hosts` hosts (pairs joined by a trunk on ens2), each with a host bridge, `networks`
    networks (one bridged, the rest nat/route/isolated with DHCP and a static lease) and `vms` VMs."""
    out: List[str] = ["vnetgen: 1", "name: fleet", "defaults:", "  target: el7", "hosts:"]
    w = out.append
    for h in range(hosts):
        a, b, name = h // 250, h % 250, f"h{h:05d}"
        w(f"  {name}:")
        w("    bridges:")
        w("      br0:")
        w("        ports: [eth0]")
        w(f"        ip: 10.{a}.{b}.2/24")
        w(f"        gateway: 10.{a}.{b}.1")
        w("    networks:")
        w("      lan:")
        w("        mode: bridge")
        w("        bridge: br0")
        for n in range(networks - 1):
            w(f"      net{n}:")
            if n == 0 and h % 2:  # the far end of its pair's trunk: an unnumbered segment of that net0
                w("        mode: isolated")
                w("        ports: [ens2]")
                continue
            w(f"        mode: {('nat', 'route', 'isolated')[n % 3]}")
            w(f"        ip: 172.{16 + n}.{b}.1/24")
            w("        dhcp:")
            w(f"          start: 172.{16 + n}.{b}.10")
            w(f"          end: 172.{16 + n}.{b}.200")
            w("          hosts:")
            w(f"            - {{mac: '52:54:01:{h % 256:02x}:{n:02x}:01', ip: 172.{16 + n}.{b}.201}}")
            if n == 0:
                w("        ports: [ens2]")
        w("    vms:" if vms else "    vms: {}")
        for v in range(vms):
            w(f"      vm{v}:")
            w("        memory: 1024")
            w("        vcpus: 1")
            w(f"        networks: [net{v % (networks - 1)}, lan]")
            w("        import: true")
            w("        os_variant: generic")
            w(f"        disk: {{path: /var/lib/libvirt/images/{name}-vm{v}.qcow2, size: 10}}")
    w("links:" if hosts > 1 else "links: []")
    for h in range(0, hosts - 1, 2):
        w(f"  - [h{h:05d}:ens2, h{h + 1:05d}:ens2]")
    return "\n".join(out) + "\n"


def write_captures(profile_path: str, directory: str) -> None:
    """What each host's capture.sh would record on a host in sync with the profile: the network list,
    each network's definition, `brctl show` and sysctl.txt, made from the hosts' plans."""
    from vnetgen.plan import plan_profile
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    pm = get_plugin_manager()
    profile, _ = load_valid(profile_path, pm)
    for plan in plan_profile(profile, pm):
        root = os.path.join(directory, plan.name)
        os.makedirs(os.path.join(root, "net"))
        rows = [" Name      State    Autostart   Persistent", "-" * 44]
        bridges = [f"{b}\t\t8000.525400000000\tno\t\t{' '.join(bridge.ports)}"
                   for b, bridge in plan.host.bridges.items()]
        for name, net in plan.networks.items():
            rows.append(f" {name}   active   yes         yes")
            with open(os.path.join(root, "net", f"{name}.xml"), "w") as handle:
                handle.write(net.xml)
            if net.mode.libvirt_bridge:
                bridges.append(f"{net.bridge}\t\t8000.{(net.mac or '').replace(':', '')}\tyes\t\t"
                               + " ".join(net.net.ports))
        with open(os.path.join(root, "virsh-net-list.txt"), "w") as handle:
            handle.write("\n".join(rows) + "\n\n")
        with open(os.path.join(root, "brctl-show.txt"), "w") as handle:
            handle.write("bridge name\tbridge id\t\tSTP enabled\tinterfaces\n" + "\n".join(bridges) + "\n")
        with open(os.path.join(root, "sysctl.txt"), "w") as handle:
            handle.write("".join(f"{s.key} = {s.value}\n" for s in plan.sysctl))


# --- measuring -------------------------------------------------------------------------------------


class Run:
    """One finished process: wall seconds and its peak RSS (MiB), from the kernel's accounting."""

    def __init__(self, argv: Sequence[str], ok: Tuple[int, ...] = (0,)):
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        self.seconds = time.perf_counter() - start
        self.peak_mib = usage.ru_maxrss / 1024
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code not in ok:
            raise SystemExit(f"bench: {' '.join(argv)} exited {code}: {err.decode(errors='replace')[-2000:]}")


Step = Callable[[], float]


def _descendants(pid: int) -> List[int]:
    """pid and every process below it (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                todo.extend(int(child) for child in handle.read().split())
        except OSError:
            pass
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
    except (OSError, ValueError):
        return 0


def tree_memory(argv: Sequence[str]) -> float:
    """Peak memory (MiB) of a command and its worker processes together: their proportional set sizes
    (a page shared by n processes counts 1/n in each) summed, sampled every 0.05 s (a peak shorter than
    that can be missed). Run apart from the timed runs: reading smaps costs the machine time."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_pss_kib(pid) for pid in _descendants(proc.pid)))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {proc.returncode}")
    return peak / 1024


def command(argv: Sequence[str], ok: Tuple[int, ...] = (0,), before: Optional[Callable[[], None]] = None,
            peaks: Optional[List[float]] = None) -> Step:
    def step() -> float:
        if before:
            before()
        run = Run(argv, ok)
        if peaks is not None:
            peaks.append(run.peak_mib)
        return run.seconds
    return step


def chain(*steps: Step) -> Step:
    return lambda: sum(step() for step in steps)


def paired(a: Step, b: Step, runs: int) -> Tuple[float, float, float]:
    """(median A seconds, median B seconds, median of the A/B ratios), A and B in turn after a warm-up."""
    a(), b()
    times_a, times_b, ratios = [], [], []
    for _ in range(runs):
        ta, tb = a(), b()
        times_a.append(ta)
        times_b.append(tb)
        ratios.append(ta / tb)
    return statistics.median(times_a), statistics.median(times_b), statistics.median(ratios)


def vnetgen(*args: str) -> List[str]:
    return [PYTHON, "-m", "vnetgen", *args]


def remove(path: str) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


# --- the table -------------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, str, str, str, str]] = []
        self.missed: List[str] = []

    def ratio(self, figure: str, seconds: float, floor: str, floor_seconds: float, ratio: float,
              goal: float) -> None:
        met = ratio <= goal
        if not met:
            self.missed.append(figure)
        self.rows.append((figure, f"{seconds:.3f} s", f"{floor} {floor_seconds:.3f} s", f"{ratio:.2f}×",
                          f"≤ {goal}×", "yes" if met else "NO"))

    def value(self, figure: str, shown: str, goal: str, met: Optional[bool]) -> None:
        if met is False:
            self.missed.append(figure)
        self.rows.append((figure, shown, "", "", goal, "" if met is None else "yes" if met else "NO"))

    def skipped(self, figure: str, goal: str, why: str) -> None:
        self.rows.append((figure, f"skipped ({why})", "", "", goal, ""))

    def print(self) -> None:
        header = ("figure", "measured", "floor", "ratio", "goal", "met")
        rows = [header] + self.rows
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for i, row in enumerate(rows):
            print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
            if i == 0:
                print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        sys.stdout.flush()


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


def fleet_row(table: Table, tmp: str, big: int, runs: int) -> None:
    """The fleet build against C compose + cp -r of its bundle, and its peak RSS."""
    path = os.path.join(tmp, f"fleet-{big}.yaml")
    with open(path, "w") as handle:
        handle.write(fleet(big))
    out, copy = os.path.join(tmp, "fleet-bundle"), os.path.join(tmp, "fleet-copy")
    peaks: List[float] = []
    build = command(vnetgen("build", path, "-o", out), before=remove(out), peaks=peaks)
    build()  # the bundle the copy floor copies
    floor = chain(command([PYTHON, "-c", COMPOSE, path]), command(["cp", "-r", out, copy], before=remove(copy)))
    a, b, r = paired(build, floor, runs)
    table.ratio(f"build {big} hosts × 10 networks × 10 VMs", a, "C compose + cp -r of the bundle", b, r, 1.5)
    # The same build in one process (`-j 1`), for the record: what the workers bring on this machine.
    serial = command(vnetgen("build", path, "-o", out, "-j", "1"), before=remove(out))
    a1, b1, r1 = paired(serial, floor, max(1, runs // 2))
    table.value("the same build in one process (-j 1)", f"{a1:.3f} s, {r1:.2f}× the floor", "", None)
    peak = statistics.median(peaks)
    table.value(f"peak RSS, build of {big} hosts (largest process)", f"{peak:.0f} MiB", "≤ 400 MiB", peak <= 400)
    remove(out)()
    if os.path.exists("/proc/self/smaps_rollup"):
        together = tree_memory(vnetgen("build", path, "-o", out))
        table.value(f"peak memory, build of {big} hosts with its workers (PSS)", f"{together:.0f} MiB",
                    "≤ 400 MiB", together <= 400)
    remove(out)()
    remove(copy)()


def audit_row(table: Table, tmp: str, big: int, runs: int) -> None:
    """The audit of `big` captured hosts in sync against `vnetgen validate` of the same profile."""
    apath = os.path.join(tmp, f"audit-{big}.yaml")
    with open(apath, "w") as handle:
        handle.write(fleet(big, vms=0))
    captures = os.path.join(tmp, "captures")
    # In a child: loading a fleet here would swell this process, and every child forked from it
    # would then report that size as its own peak RSS.
    subprocess.run([PYTHON, os.path.abspath(__file__), "--write-captures", apath, captures], check=True)
    a, b, r = paired(command(vnetgen("audit", apath, "--captures", captures), ok=(0, 1)),
                     command(vnetgen("validate", apath)), runs)
    table.ratio(f"audit of {big} captured hosts × 10 networks", a, "vnetgen validate", b, r, 1.5)


def scale_rows(table: Table, tmp: str, sizes: List[int], runs: int) -> None:
    """Per-host build time and peak RSS at each fleet size, and whether time grows linearly."""
    per_host: Dict[int, float] = {}
    for hosts in sizes:
        path = os.path.join(tmp, f"scale-{hosts}.yaml")
        with open(path, "w") as handle:
            handle.write(fleet(hosts))
        out = os.path.join(tmp, f"scale-{hosts}")
        peaks: List[float] = []
        step = command(vnetgen("build", path, "-o", out), before=remove(out), peaks=peaks)
        seconds = statistics.median(step() for _ in range(max(1, runs // 2)))
        per_host[hosts] = seconds / hosts
        table.value(f"build {hosts} hosts: per host, peak RSS",
                    f"{1000 * seconds / hosts:.2f} ms/host, {max(peaks):.0f} MiB", "", None)
        remove(out)()
    if len(sizes) >= 3:
        # Start-up dominates the smallest fleets: linearity is judged from the second size on.
        low, high = sizes[1], sizes[-1]
        growth = per_host[high] / per_host[low]
        table.value(f"linear: per-host time at {high} / at {low} hosts", f"{growth:.2f}×", "≤ 1.25×",
                    growth <= 1.25)


ROWS = ("help", "seed", "fleet", "audit", "scale", "hostile", "import", "runbook")


def lab_available() -> bool:
    return os.geteuid() == 0 and shutil.which("virsh") is not None and shutil.which("libvirtd") is not None


def runbook_rows(table: Table, runs: int, quick: bool) -> None:
    """The runbook against bare virsh, in the lab (root and libvirtd), or why not."""
    if lab_available() and not quick:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import runbook as runbook_bench

        rows = runbook_bench.measure(10, max(1, runs // 2))
        for row in rows[:2]:
            table.ratio(f"{row['what']} ({row['virsh']} virsh processes)", row["seconds"],
                        f"bare virsh ({rows[2]['virsh']} processes)", row["floor"], row["ratio"], row["goal"])
    else:
        for figure in ("runbook first apply, 10 networks / bare virsh", "runbook no-op re-run / bare virsh"):
            table.skipped(figure, "≤ 1.3×" if "first" in figure else "≤ 0.3×",
                          "--quick" if quick else "needs the lab: root and libvirtd")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small fleets, one run: seconds, for CI")
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure misses its goal")
    parser.add_argument("--runs", type=int, default=None, help="pairs per figure (default 5, quick 1)")
    parser.add_argument("--hosts", default=None, help="fleet sizes of the scaling rows (default "
                        "10,100,1000,2000; quick 2,10)")
    parser.add_argument("--fleet", type=int, default=None, help="hosts of the fleet figures (default 1000)")
    parser.add_argument("--only", default=",".join(ROWS), help=f"rows to measure, comma-separated "
                        f"(default all: {','.join(ROWS)})")
    parser.add_argument("--write-captures", nargs=2, metavar=("PROFILE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_captures:
        write_captures(*args.write_captures)
        return 0
    only = set(args.only.split(","))
    if only - set(ROWS):
        parser.error(f"--only: no row {', '.join(sorted(only - set(ROWS)))} (rows: {', '.join(ROWS)})")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # see the module's docstring
    runs = args.runs or (1 if args.quick else 5)
    sizes = [int(h) for h in (args.hosts or ("2,10" if args.quick else "10,100,1000,2000")).split(",")]
    big = args.fleet or (10 if args.quick else 1000)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="vnetgen-bench-") as tmp:
        deps = command([PYTHON, "-c", DEPS])
        if "help" in only:
            a, b, r = paired(command(vnetgen("--help")), deps, runs * 3)
            table.ratio("vnetgen --help", a, "import of the deps", b, r, 0.5)
        if "seed" in only:
            out = os.path.join(tmp, "seed-bundle")
            a, b, r = paired(command(vnetgen("build", SEED, "-o", out), before=remove(out)), deps, runs * 3)
            table.ratio("build profiles/nat-default.yaml", a, "import of the deps", b, r, 1.3)
            # vnetgen freezes the collector once a command is done (cli.main), so it skips the
            # collection at exit that the floor's process still pays for the dependencies' objects: a
            # floor that skips it too shows the start-up cost vnetgen itself adds.
            frozen = command([PYTHON, "-c", DEPS + "; import gc; gc.freeze()"])
            a, b, r = paired(command(vnetgen("build", SEED, "-o", out), before=remove(out)), frozen, runs * 3)
            table.value("the same against the deps' import with gc.freeze() at exit",
                        f"{r:.2f}× ({a:.3f} s against {b:.3f} s)", "", None)
        if "fleet" in only:
            fleet_row(table, tmp, big, runs)
        if "audit" in only:
            audit_row(table, tmp, big, runs)
        if "scale" in only:
            scale_rows(table, tmp, sizes, runs)
        if "hostile" in only:
            for name, seconds in hostile(tmp).items():
                table.value(f"validate {name} (refused)", f"{seconds:.2f} s", "a few s", seconds < 5)
        if "import" in only:
            for hosts in ([2, 10] if args.quick else [100, 1000]):
                row = measure_import(hosts, tmp)
                table.value(f"import {hosts} captured hosts: per host", f"{row['ms_per_host']:.1f} ms/host", "",
                            None)

    if "runbook" in only:
        runbook_rows(table, runs, args.quick)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {runs} run(s) per figure"
          + (" (--quick: not the goals' sizes)" if args.quick else ""))
    table.print()
    if table.missed:
        print(f"missed: {', '.join(table.missed)}")
    return 1 if args.check and table.missed else 0


if __name__ == "__main__":
    sys.exit(main())

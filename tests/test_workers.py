"""A fleet's hosts planned and rendered in forked workers (vnetgen.workers): the same bundle, byte for
byte and mode for mode, whatever the number of workers; errors and dead workers end the build cleanly."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench  # noqa: E402  (the bench's fleet generator)

HOSTS = 40   # above workers.PARALLEL_FROM: the default build forks


def _tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _children() -> set:
    """Process ids whose parent is this process (workers not yet reaped show here, zombies too)."""
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.add(int(entry))
    return found


# --- ordered_map --------------------------------------------------------------------------------


class Thing:
    def __init__(self, name: str) -> None:
        self.name = name


def test_results_come_in_order_and_refer_to_the_parents_objects():
    from vnetgen.workers import ordered_map

    things = [Thing(f"t{i}") for i in range(11)]
    before = _children()
    out = list(ordered_map(lambda t: (t, t.name.upper(), os.getpid()), things, 3, shared=things))
    assert [name for _, name, _ in out] == [t.name.upper() for t in things]
    assert all(got is thing for (got, _, _), thing in zip(out, things))   # not copies
    pids = {pid for _, _, pid in out}
    assert len(pids) == 3 and os.getpid() not in pids   # really three other processes
    assert _children() == before   # every worker reaped


def test_an_object_not_shared_comes_back_as_an_equal_copy():
    from vnetgen.workers import ordered_map

    things = [Thing("a"), Thing("b")]
    out = list(ordered_map(lambda t: t, things, 2))
    assert [t.name for t in out] == ["a", "b"] and out[0] is not things[0]


def test_one_job_runs_in_this_process():
    from vnetgen.workers import ordered_map

    assert list(ordered_map(lambda i: os.getpid(), range(5), 1)) == [os.getpid()] * 5


def test_the_first_failing_item_in_order_raises_after_the_results_before_it():
    from vnetgen.workers import ordered_map

    def work(i):
        if i in (5, 6):
            raise ValueError(f"item {i}")
        return i

    got = []
    before = _children()
    with pytest.raises(ValueError, match="item 5"):
        for value in ordered_map(work, list(range(10)), 2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert _children() == before


def test_a_worker_that_dies_is_an_error_not_a_short_result():
    from vnetgen.workers import WorkerError, ordered_map

    def work(i):
        if i == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    got = []
    with pytest.raises(WorkerError, match="killed by signal 9"):
        for value in ordered_map(work, list(range(8)), 2):
            got.append(value)
    assert got == [0, 1, 2]


def test_a_caller_that_stops_early_leaves_no_worker_behind():
    from vnetgen.workers import ordered_map

    before = _children()
    results = ordered_map(lambda i: "x" * 100_000, list(range(200)), 2)
    assert next(results) == "x" * 100_000
    results.close()   # the workers are blocked writing: they are killed and reaped
    assert _children() == before


# --- the build ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_profile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.yaml"
    path.write_text(bench.fleet(HOSTS, vms=2))
    return path


def _build(profile: Path, out: Path, *options: str):
    from vnetgen.cli import app

    return CliRunner().invoke(app, ["build", str(profile), "-o", str(out), *options])


def test_the_bundle_is_the_same_whatever_the_number_of_workers(fleet_profile, tmp_path):
    from vnetgen.workers import PARALLEL_FROM

    assert HOSTS >= PARALLEL_FROM
    trees = {}
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"out-{jobs}"
        result = _build(fleet_profile, out, "-j", jobs)
        assert result.exit_code == 0, result.output
        assert f"for {HOSTS} host(s)" in result.output
        trees[jobs] = _tree(out)
    assert len(trees["1"]) > HOSTS * 10
    for jobs in ("2", "3"):
        assert trees[jobs] == trees["1"], jobs
    # --check compares with workers too, and finds the serial build up to date
    result = _build(fleet_profile, tmp_path / "out-1", "--check", "-j", "2")
    assert result.exit_code == 0 and "is up to date" in result.output, result.output


def test_workers_are_used_by_default_only_for_a_fleet(pm, fleet_profile, tmp_path, monkeypatch):
    """Below PARALLEL_FROM hosts, and for plans the caller keeps, everything stays in this process."""
    from vnetgen import bundle, workers
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    monkeypatch.setattr("vnetgen.workers.usable_cpus", lambda: 3)
    assert bundle.Stream(profile, pm, "f.yaml")._jobs(HOSTS) == 3
    monkeypatch.setattr("vnetgen.workers.usable_cpus", lambda: 64)
    assert bundle.Stream(profile, pm, "f.yaml")._jobs(HOSTS) == workers.MAX_JOBS == 4
    assert bundle.Stream(profile, pm, "f.yaml", jobs=9)._jobs(HOSTS) == 9
    assert bundle.Stream(profile, pm, "f.yaml")._jobs(workers.PARALLEL_FROM - 1) == 1
    assert bundle.Stream(profile, pm, "f.yaml", jobs=3)._jobs(2) == 3
    assert bundle.Stream(profile, pm, "f.yaml", keep_plans=True)._jobs(HOSTS) == 1


def test_a_host_whose_xml_is_invalid_fails_the_build_from_a_worker(pm, fleet_profile, tmp_path, monkeypatch):
    """A worker's BundleError is the build's error, for the first bad host in order; nothing is written."""
    from vnetgen import bundle, xml
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    bad = {"h00017", "h00030"}
    original = xml.rng_errors
    monkeypatch.setattr(xml, "rng_errors", lambda text: "planted" if any(f"<name>net3</name>" in text and
                        h in os.environ.get("VNETGEN_TEST_HOST", "") for h in bad) else original(text))

    def plan_host(profile, host, pm, *args, **kwargs):   # tells the planted check which host it renders
        os.environ["VNETGEN_TEST_HOST"] = host.name
        return real_plan_host(profile, host, pm, *args, **kwargs)

    from vnetgen import plan as plan_module

    real_plan_host = plan_module.plan_host
    monkeypatch.setattr(plan_module, "plan_host", plan_host)
    monkeypatch.delenv("VNETGEN_TEST_HOST", raising=False)
    out = tmp_path / "out"
    with pytest.raises(bundle.BundleError, match=r"^h00017/networks/net3.xml is not valid .*: planted$"):
        bundle.write(bundle.Stream(profile, pm, "f.yaml", jobs=2), str(out))
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_killed_worker_fails_the_build_and_writes_nothing(pm, fleet_profile, tmp_path, monkeypatch):
    from vnetgen import bundle
    from vnetgen import plan as plan_module
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    real_plan_host = plan_module.plan_host

    def plan_host(profile, host, pm, *args, **kwargs):
        if host.name == "h00021":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_plan_host(profile, host, pm, *args, **kwargs)

    monkeypatch.setattr(plan_module, "plan_host", plan_host)
    out = tmp_path / "out"
    before = _children()
    with pytest.raises(bundle.BundleError, match=r"a worker \(pid \d+\) ended before its work was done "
                                                 r"\(killed by signal 9\)"):
        bundle.write(bundle.Stream(profile, pm, "f.yaml", jobs=2), str(out))
    assert not out.exists() and os.listdir(tmp_path) == []
    assert _children() == before


def test_jobs_must_be_positive(fleet_profile, tmp_path):
    result = _build(fleet_profile, tmp_path / "out", "-j", "0")
    assert result.exit_code == 2 and not (tmp_path / "out").exists()


def test_a_worker_that_cannot_write_fails_the_build_and_leaves_nothing(pm, fleet_profile, tmp_path, monkeypatch):
    """Workers write their hosts' files into the staging directory themselves: a write that fails there
    (a full disk) is the build's error, and the staging directory goes."""
    import errno

    from vnetgen import bundle
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    real_write_file = bundle._write_file
    parent = os.getpid()

    def write_file(path, data, mode):
        if os.getpid() != parent and path.endswith("/h00025/runbook.sh"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_file(path, data, mode)

    monkeypatch.setattr(bundle, "_write_file", write_file)
    out = tmp_path / "out"
    with pytest.raises(bundle.BundleError, match="No space left on device"):
        bundle.write(bundle.Stream(profile, pm, "f.yaml", jobs=2), str(out))
    assert os.listdir(tmp_path) == []


def test_a_result_that_cannot_be_sent_back_fails_its_item_cleanly():
    from vnetgen.workers import WorkerError, ordered_map

    got = []
    with pytest.raises(WorkerError, match="the result for 3 cannot be sent back"):
        for value in ordered_map(lambda i: (lambda: i) if i == 3 else i, list(range(6)), 2):
            got.append(value)
    assert got == [0, 1, 2]


def _spy_ordered_map(monkeypatch) -> list:
    """Record each ordered_map call's (items, jobs, eager)."""
    from vnetgen import workers

    calls, real_map = [], workers.ordered_map

    def ordered_map(func, items, jobs, *args, **kwargs):
        calls.append((len(items), jobs, kwargs.get("eager", False)))
        return real_map(func, items, jobs, *args, **kwargs)

    monkeypatch.setattr(workers, "ordered_map", ordered_map)
    return calls


# --- audit ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_captures(fleet_profile, tmp_path_factory) -> Path:
    """Captures of every host in sync (bench.write_captures), then drift on h00003 and h00037: a
    network stopped, and ip_forward off."""
    captures = tmp_path_factory.mktemp("captures") / "c"
    bench.write_captures(str(fleet_profile), str(captures))
    for host in ("h00003", "h00037"):
        listing = captures / host / "virsh-net-list.txt"
        text = listing.read_text()
        listing.write_text(text.replace("   active   yes", "   inactive yes", 1))
        sysctl = captures / host / "sysctl.txt"
        sysctl.write_text(sysctl.read_text().replace("net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0"))
    return captures


def test_an_audit_reports_the_same_whatever_the_number_of_workers(pm, fleet_profile, fleet_captures,
                                                                  monkeypatch):
    from vnetgen.audit import audit_captures
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    forked = _spy_ordered_map(monkeypatch)
    reports = {jobs: audit_captures(profile, fleet_captures, pm=pm, jobs=jobs) for jobs in (1, 2, 3)}
    assert forked == [(HOSTS, 2, False), (HOSTS, 3, False)]   # -j 1 stays in this process
    serial = reports[1]
    assert not serial["in_sync"]
    drifted = [name for name, host in serial["hosts"].items() if not host["in_sync"]]
    assert drifted == ["h00003", "h00037"]
    kinds = {d["kind"] for host in serial["hosts"].values() for d in host["drift"]}
    assert kinds == {"network-inactive", "ip-forward"}, kinds
    for jobs in (2, 3):   # the same report, hosts in the same order
        assert reports[jobs] == serial and list(reports[jobs]["hosts"]) == list(serial["hosts"]) == list(profile.hosts)
    # --host picks hosts in any order; the report lists them in the profile's, with workers too
    some = ["h00039", "h00001", *(f"h{n:05d}" for n in range(4, 36))]
    assert list(audit_captures(profile, fleet_captures, some, pm=pm, jobs=2)["hosts"]) \
        == list(audit_captures(profile, fleet_captures, some, pm=pm, jobs=1)["hosts"]) == sorted(some)


def test_an_unreadable_capture_is_the_first_such_host_in_order_with_workers(pm, fleet_profile, fleet_captures,
                                                                         tmp_path):
    import shutil

    from vnetgen.audit import audit_captures
    from vnetgen.factbase import FactError
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    captures = tmp_path / "c"
    shutil.copytree(fleet_captures, captures)
    for host in ("h00021", "h00034"):
        (captures / host / "brctl-show.txt").write_text("this is not brctl show\n")
    before = _children()
    for jobs in (1, 2, 3):
        with pytest.raises(FactError, match=r"h00021/brctl-show\.txt:1: "):
            audit_captures(profile, captures, pm=pm, jobs=jobs)
    assert _children() == before


def test_a_killed_audit_worker_is_an_audit_error(pm, fleet_profile, fleet_captures, monkeypatch):
    from vnetgen import audit
    from vnetgen.profile import load_valid

    profile, _ = load_valid(str(fleet_profile), pm)
    real = audit._audit_capture

    def dies(*args):
        if args[-1] == "h00030":   # the host's name
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)

    monkeypatch.setattr(audit, "_audit_capture", dies)
    with pytest.raises(audit.AuditError, match=r"a worker \(pid \d+\) ended before its work was done "
                                               r"\(killed by signal 9\)"):
        audit.audit_captures(profile, fleet_captures, pm=pm, jobs=2)


def test_audit_jobs_on_the_command_line(fleet_profile, fleet_captures):
    import json

    from vnetgen.cli import app

    runs = {jobs: CliRunner().invoke(app, ["audit", str(fleet_profile), "--captures", str(fleet_captures),
                                           "--format", "json", "-j", jobs]) for jobs in ("1", "2")}
    assert runs["1"].exit_code == runs["2"].exit_code == 1, runs["2"].output
    assert json.loads(runs["2"].stdout) == json.loads(runs["1"].stdout)
    bad = CliRunner().invoke(app, ["audit", str(fleet_profile), "--captures", str(fleet_captures), "-j", "0"])
    assert bad.exit_code == 2


# --- audit while the profile is validated ------------------------------------------------------


def _audit_cli(profile: Path, captures: Path, *options: str):
    from vnetgen.cli import app

    return CliRunner().invoke(app, ["audit", str(profile), "--captures", str(captures), *options])


def test_a_fleet_is_audited_while_its_profile_is_validated(fleet_profile, fleet_captures, monkeypatch):
    from vnetgen import validate

    monkeypatch.setattr("vnetgen.workers.usable_cpus", lambda: 2)
    calls = _spy_ordered_map(monkeypatch)
    before = _children()
    running = []
    real_validate = validate.validate

    def validating(*args, **kwargs):
        running.append(len(_children() - before))   # the workers, forked before validation began
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(validate, "validate", validating)
    together = _audit_cli(fleet_profile, fleet_captures, "--format", "json")
    assert calls == [(HOSTS, 2, True)] and running == [2], (calls, running)
    serial = _audit_cli(fleet_profile, fleet_captures, "--format", "json", "-j", "1")
    assert together.exit_code == serial.exit_code == 1, together.output
    assert together.stdout == serial.stdout   # the same report, byte for byte
    assert _children() == before


@pytest.mark.parametrize("change, message", [
    # a target no plugin provides: planning the host raises in its worker, validation reports it
    (("  h00005:\n", "  h00005:\n    target: el99\n"), "unknown target 'el99'"),
    # a DHCP range outside its subnet: planned without complaint, refused by validation
    (("          end: 172.17.20.200\n", "          end: 172.17.21.200\n"), "172.17.21.200"),
])
def test_an_invalid_fleet_reports_its_problems_whatever_the_workers_found(fleet_profile, fleet_captures,
                                                                           tmp_path, monkeypatch, change, message):
    from vnetgen.cli import app

    text = fleet_profile.read_text()
    assert text.count(change[0]) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(*change))
    monkeypatch.setattr("vnetgen.workers.usable_cpus", lambda: 2)   # workers even on a one-CPU machine
    calls = _spy_ordered_map(monkeypatch)
    before = _children()
    audited = _audit_cli(bad, fleet_captures)
    assert calls and calls[0][2] is True   # the workers had started
    assert _children() == before           # and were stopped
    validated = CliRunner().invoke(app, ["validate", str(bad)])
    assert audited.exit_code == validated.exit_code == 2
    assert message in audited.output and "Traceback" not in audited.output
    assert audited.stderr == validated.stderr   # every problem, as validate reports them


def test_a_profile_with_a_syntax_error_starts_no_worker(fleet_profile, fleet_captures, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(fleet_profile.read_text().replace("  h00007:\n", "  h00007:\n    colour: blue\n", 1))
    calls = _spy_ordered_map(monkeypatch)
    result = _audit_cli(bad, fleet_captures)
    assert result.exit_code == 2 and "unknown key 'colour'" in result.output, result.output
    assert calls == []


def test_an_invalid_profile_wins_over_a_missing_capture(fleet_profile, fleet_captures, tmp_path):
    text = fleet_profile.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  h00005:\n", "  h00005:\n    target: el99\n", 1))
    missing = tmp_path / "nowhere"
    result = _audit_cli(bad, missing)
    assert result.exit_code == 2 and "unknown target 'el99'" in result.output and "nowhere" not in result.output
    result = _audit_cli(fleet_profile, missing)   # valid: then the capture directory is the problem
    assert result.exit_code == 2 and "no such capture directory" in result.output, result.output


# --- generations --------------------------------------------------------------------------------


def test_workers_are_replaced_after_each_generation_and_the_order_holds():
    from vnetgen.workers import ordered_map

    before = _children()
    out = list(ordered_map(lambda i: (i, os.getpid()), list(range(13)), 2, block=2, generation=4))
    assert [i for i, _ in out] == list(range(13))
    pids = [pid for _, pid in out]
    assert os.getpid() not in pids
    # 4 items a generation, 2 workers each: 13 items make 4 generations (the last of one item, one worker)
    generations = [set(pids[start:start + 4]) for start in range(0, 13, 4)]
    assert [len(g) for g in generations] == [2, 2, 2, 1]
    assert len(set().union(*generations)) == 7   # every generation's workers are new processes
    assert _children() == before


def test_the_first_item_here_loads_once_for_every_generation():
    from vnetgen.workers import ordered_map

    loaded = []   # what the first item "loads" in this process, seen by every worker after it

    def work(i):
        if not loaded:
            loaded.append(os.getpid())
        return i, os.getpid(), tuple(loaded)

    out = list(ordered_map(work, list(range(9)), 2, generation=4, first_here=True))
    assert [i for i, _, _ in out] == list(range(9))
    assert out[0][1] == os.getpid()
    assert all(pid != os.getpid() and seen == (os.getpid(),) for _, pid, seen in out[1:])


def test_a_failure_in_a_later_generation_raises_in_its_turn():
    from vnetgen.workers import ordered_map

    def work(i):
        if i == 9:
            raise ValueError("item 9")
        return i

    got = []
    before = _children()
    with pytest.raises(ValueError, match="item 9"):
        for value in ordered_map(work, list(range(14)), 2, generation=4, first_here=True):
            got.append(value)
    assert got == list(range(9))
    assert _children() == before


def test_a_caller_that_stops_in_a_generation_leaves_no_worker_behind():
    from vnetgen.workers import STARTED, ordered_map

    before = _children()
    results = ordered_map(lambda i: "x" * 100_000, list(range(200)), 2, generation=50, eager=True,
                          first_here=True)
    assert next(results) is STARTED
    assert next(results) == "x" * 100_000   # the first, made here
    for _ in range(60):                       # into the second generation
        next(results)
    results.close()
    assert _children() == before


def test_a_build_in_generations_is_the_same_bundle(fleet_profile, tmp_path, monkeypatch):
    from vnetgen import bundle

    serial = tmp_path / "serial"
    assert _build(fleet_profile, serial, "-j", "1").exit_code == 0
    monkeypatch.setattr(bundle, "GENERATION", 7)   # 40 hosts: the first here, then 6 generations
    forked = tmp_path / "forked"
    before = _children()
    result = _build(fleet_profile, forked, "-j", "2")
    assert result.exit_code == 0, result.output
    assert _tree(forked) == _tree(serial)
    assert _children() == before

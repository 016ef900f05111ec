"""Build a whole bundle in memory, then write it atomically or compare it with a directory."""
from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from .api import Artifact
from .dataclassc import dataclass
from .gcpause import paused_gc

MANIFEST = ".vnetgen-manifest"
ARCHIVES = "archives"  # transport containers of the bundle; not listed in SHA256SUMS, which they carry  # lists the files vnetgen wrote, so a rebuild may replace exactly those
# A build's workers end after this many hosts and new ones take the next (vnetgen.workers): each
# holds copies of the profile's pages for the hosts of its generation only.
GENERATION = 256
# Names at the top of a bundle beside the host directories (ansible/: the fleet playbooks to come);
# no host may take one. Documented in docs/profile.md.
TOP_LEVEL = ("REVIEW.md", "SHA256SUMS", ARCHIVES, "ansible", MANIFEST)


class BundleError(Exception):
    """A bundle cannot be written (the directory holds foreign files, or I/O failed)."""


@dataclass
class Bundle:
    """A bundle held whole in memory: its files by path, and the host plans they were made from."""
    files: Dict[str, Artifact]   # path relative to the bundle root → artifact
    plans: List[Any]

    def __iter__(self) -> Iterator[Artifact]:
        """Its artifacts, as write() and compare() take them (like a Stream)."""
        return iter(self.files.values())


def build(profile: Any, pm: Any, profile_file: str, hosts: Optional[List[str]] = None,
          archive: bool = False, against: Optional[Any] = None) -> Bundle:
    """Plan and render every (selected) host, the whole bundle in memory with every host's full plan
    (for callers that inspect it; `vnetgen build` streams it instead); pure: touches no file.
    `against` (an older profile) adds a Changes section to REVIEW.md and lets runbooks apply DHCP
    changes live; `archive` adds archives/."""
    stream = Stream(profile, pm, profile_file, hosts, against, keep_plans=True)
    return build_archived(stream) if archive else Bundle({a.path: a for a in stream}, stream.plans)


def build_archived(stream: "Stream") -> Bundle:
    """The whole bundle of `stream` in memory, with archives/ (which pack all of it)."""
    files = {artifact.path: artifact for artifact in stream}
    files.update(archives(files, [p.name for p in stream.plans]))
    return Bundle(files=files, plans=stream.plans)


@dataclass(frozen=True)
class Placed(Artifact):
    """A file a worker has already written into the staging directory: its path and mode only."""

    def content(self) -> bytes:
        raise BundleError(f"{self.path} was written by a build worker; its content is not here")


class Stream:
    """The bundle as a stream of artifacts, for write() and compare() to consume one at a time: each
    host's files, then its ansible/bundles tar; after the last host REVIEW.md, ansible/ and
    SHA256SUMS. Of a host whose files are out it keeps only their digests and what REVIEW.md says of
    it (review.for_review), so a fleet's build no longer holds every host's text and plan. Pure: plans
    and renders, touches no file (write() hands `placed` the function that writes into its staging
    directory, for the workers). A fleet's hosts are planned and rendered by forked workers
    (vnetgen.workers, `jobs`; see _jobs), in host order whatever their number. `hosts` counts the
    hosts planned so far; `plans` holds their full plans with keep_plans (and the REVIEW.md data
    otherwise)."""

    def __init__(self, profile: Any, pm: Any, profile_file: str, hosts: Optional[List[str]] = None,
                 against: Optional[Any] = None, keep_plans: bool = False, jobs: Optional[int] = None) -> None:
        from .render import one_line

        self.profile, self.pm, self.only, self.against = profile, pm, hosts, against
        self.profile_file = one_line(profile_file)
        self.keep_plans = keep_plans or against is not None   # the Changes section diffs whole plans
        self.jobs = jobs
        self.plans: List[Any] = []
        self.hosts = 0

    def __iter__(self) -> Iterator[Artifact]:
        with paused_gc():
            yield from self._artifacts()

    def placed(self, put: Callable[[str, bytes, int], None]) -> Iterator[Artifact]:
        """The stream for write(): where workers render hosts, each writes its hosts' files itself with
        `put(path, data, mode)` and the stream yields a `Placed` for each (the rest as artifacts)."""
        with paused_gc():
            yield from self._artifacts(put)

    def _artifacts(self, put: Optional[Callable[[str, bytes, int], None]] = None) -> Iterator[Artifact]:
        from .fleet import ansible_files
        from .plan import plan_hosts, plan_profile
        from .render import render, sha256_line
        from .review import for_review, host_parts, run_waves

        profile, pm = self.profile, self.pm
        previous = plan_profile(self.against, pm, self.only) if self.against is not None else None
        sums: Dict[str, str] = {}   # path → its SHA256SUMS line; tars and archives carry it, so are not in it

        def listed(artifact: Artifact) -> Artifact:
            sums[artifact.path] = sha256_line(artifact.path, artifact.content())
            return artifact

        names = [name for name in profile.hosts if not self.only or name in self.only]
        jobs = self._jobs(len(names))
        if jobs > 1:
            from .render import environment

            environment()   # jinja2 imported once, here, rather than by every worker
            work = functools.partial(self._host_in_worker, put=put)
            # Written by the workers, a host's result is small (~14 kB): runs of hosts, so each worker
            # touches its own part of the profile's memory; whole files (--check) go one by one.
            done = _in_workers(work, names, jobs, _shared(profile, pm), 16 if put is not None else 1)
        else:
            done = ((*self._host(plan)[:3], plan if self.keep_plans else for_review(plan), host_parts(plan))
                    for plan in plan_hosts(profile, pm, self.only, previous))
        parts = []   # each host's section and subgraph of REVIEW.md
        for files, host_sums, tar, plan, part in done:
            sums.update(host_sums)
            yield from files
            yield tar
            self.plans.append(plan)
            parts.append(part)
            self.hosts += 1
        plans = self.plans
        waves = run_waves(profile, plans)   # the run order, for REVIEW.md and the inventory alike
        yield listed(Artifact("REVIEW.md", render("REVIEW.md.j2", **review_context(
            profile, plans, self.profile_file, waves, self.against, previous, parts))))
        for artifact in ansible_files(waves, profile.rollout, self.profile_file).values():
            yield listed(artifact)
        yield Artifact("SHA256SUMS", "".join(sums[path] for path in sorted(sums)))

    def _host(self, plan: Any) -> Tuple[List[Artifact], Dict[str, str], Artifact, List[bytes]]:
        """A host's files (paths from the bundle's root), their SHA256SUMS lines, its ansible/bundles
        tar and the files' bytes (each text encoded once); BundleError when a network's XML is not
        valid against libvirt's schema."""
        from .fleet import host_tar
        from .render import host_artifacts, sha256_line
        from .xml import rng_errors

        files: List[Artifact] = []
        encoded: List[bytes] = []
        sums: Dict[str, str] = {}
        for artifact in host_artifacts(plan, self.profile_file):
            if artifact.path.endswith(".xml") and artifact.path.startswith("networks/"):
                problem = rng_errors(artifact.text)
                if problem:
                    raise BundleError(f"{plan.name}/{artifact.path} is not valid against libvirt's "
                                      f"network.rng: {problem}")
            path = f"{plan.name}/{artifact.path}"
            files.append(Artifact(path, artifact.text, artifact.mode))
            encoded.append(files[-1].content())
            sums[path] = sha256_line(path, encoded[-1])
        members = [(a.path, Artifact(a.path, "", a.mode, data=data)) for a, data in zip(files, encoded)]
        tar = host_tar(plan.name, members, "".join(sums[path] for path in sorted(sums)))
        return files, sums, tar, encoded

    def _host_in_worker(self, name: str, put: Optional[Callable[[str, bytes, int], None]] = None
                        ) -> Tuple[List[Artifact], Dict[str, str], Artifact, Any, Any]:
        """_host of one host in a worker process, with its tar packed there and what REVIEW.md needs
        (its part of the plan, its section and subgraph);
        with `put`, its files (tar included) are written here and stand as `Placed` in the result."""
        from .plan import plan_host
        from .review import for_review, host_parts

        plan = plan_host(self.profile, self.profile.hosts[name], self.pm)
        files, sums, tar, encoded = self._host(plan)
        tar = Artifact(tar.path, "", tar.mode, data=tar.content())
        if put is not None:
            for artifact, data in zip((*files, tar), (*encoded, tar.data)):
                put(artifact.path, data, artifact.mode)
            files, tar = [Placed(a.path, "", a.mode) for a in files], Placed(tar.path, "", tar.mode)
        return files, sums, tar, for_review(plan), host_parts(plan)

    def _jobs(self, hosts: int) -> int:
        """Worker processes for `hosts` hosts (vnetgen.workers.default_jobs: `jobs` when given, else
        one per usable CPU up to MAX_JOBS from PARALLEL_FROM hosts on). Plans the caller keeps
        (build --against, Bundle) stay in this process."""
        if self.keep_plans or hosts < 2:   # one host: nothing to share out (and workers.py not imported)
            return 1
        from .workers import default_jobs

        return default_jobs(hosts, self.jobs)


def _in_workers(func: Any, names: List[str], jobs: int, shared: List[Any], block: int) -> Iterator[Any]:
    """vnetgen.workers.ordered_map, a worker that died reported as a BundleError (nothing is written)."""
    from .workers import WorkerError, ordered_map

    try:
        yield from ordered_map(func, names, jobs, shared, block, generation=GENERATION, first_here=True)
    except WorkerError as exc:
        raise BundleError(str(exc)) from None


def _shared(profile: Any, pm: Any) -> List[Any]:
    """What a worker's results may refer to without copying it back: the profile, its hosts and their
    networks, bridges and VMs, the plugin manager and its modes and targets (vnetgen.workers)."""
    from .plan import plugin_modes, plugin_targets

    shared: List[Any] = [profile, pm, *plugin_modes(pm).values(), *plugin_targets(pm).values()]
    for host in profile.hosts.values():
        shared.append(host)
        for group in (host.networks, host.bridges, host.vms):
            shared.extend(group.values())
    return shared


def archives(files: Dict[str, Artifact], hosts: List[str]) -> Dict[str, Artifact]:
    """archives/hosts/<host>.tar.gz (that host's directory with REVIEW.md and SHA256SUMS, so its
    runbook runs as is once unpacked) and archives/fleet.tar.gz (the whole bundle)."""
    from .archive import tar_gz

    everything = {path: (a.content(), a.mode) for path, a in files.items()}
    shared = {p: everything[p] for p in ("REVIEW.md", "SHA256SUMS")}
    out = {}
    for host in hosts:
        members = dict(shared, **{p: v for p, v in everything.items() if p.startswith(host + "/")})
        path = f"{ARCHIVES}/hosts/{host}.tar.gz"
        out[path] = Artifact(path, "", data=tar_gz(f"vnetgen-{host}", members))
    out[f"{ARCHIVES}/fleet.tar.gz"] = Artifact(f"{ARCHIVES}/fleet.tar.gz", "", data=tar_gz("vnetgen-fleet", everything))
    return out


def review_context(profile: Any, plans: List[Any], profile_file: str, waves: List[List[Tuple[str, str]]],
                   against: Optional[Any] = None, previous: Optional[List[Any]] = None,
                   parts: Optional[List[Any]] = None) -> Dict[str, Any]:
    from .review import context

    return context(profile, plans, profile_file, waves, against, previous, parts)


def _owned(directory: str) -> Optional[List[str]]:
    """Files vnetgen wrote into `directory` last time, or None if it never did.

    Every entry must be a plain relative path inside DIR: an absolute path, a `..`, or an empty or
    `.` component (a hand-edited or planted manifest) is refused, since a rebuild deletes the
    entries it no longer writes.
    """
    from .safeio import MANIFEST_LIMIT, UnsafeInput, excerpt, read_bounded

    path = os.path.join(directory, MANIFEST)
    if not os.path.lexists(path):
        return None
    try:
        data = read_bounded(path, MANIFEST_LIMIT, "the bundle manifest", follow=False)
    except UnsafeInput as exc:
        raise BundleError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{path}: the bundle manifest is not UTF-8 text; remove it or choose another "
                          "directory") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        problem = _bad_entry(line)
        if problem:
            raise BundleError(f"{path}:{number}: refusing entry {excerpt(line)}: {problem}; vnetgen writes "
                              "and deletes only inside its directory (remove the line, or the manifest)")
        entries.append(line)
    return entries


def _bad_entry(entry: str) -> Optional[str]:
    """Why a manifest entry is not a plain path inside DIR, or None."""
    if entry.startswith("/"):
        return "an absolute path"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in entry):
        return "a control character or backslash"
    parts = entry.split("/")
    if ".." in parts:
        return "a '..' component"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' component"
    return None


def _existing(directory: str) -> Tuple[List[str], List[str]]:
    """(every file below `directory`, the symbolic links among them), relative paths.

    Links are never followed: a link to a directory is one entry, and nothing below it is listed.
    """
    found, links = [], []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in list(dirs):
            if os.path.islink(os.path.join(root, name)):
                dirs.remove(name)
                names.append(name)
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), directory)
            found.append(rel)
            if os.path.islink(os.path.join(root, name)):
                links.append(rel)
    return sorted(found), links


# Seconds a build waits for another build into the same parent directory before giving up.
LOCK_WAIT = 300.0
# Leftovers of a build whose process this machine cannot see (another host on a shared disk, an
# older vnetgen that did not name its pid) are removed only when older than this.
LEFTOVER_AGE = 3600.0
# Compiled when the parent holds a .vnetgen-* entry (a build's own, or a leftover), not at import.
_LEFTOVER = r"\.vnetgen-(?:old-)?(?:(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9._-]*)-)?[a-z0-9_]{8}"


_NODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _me() -> str:
    """pid@host: names our staging directories, so a later build knows whether we still run."""
    if hasattr(os, "uname"):   # the node name, which socket.gethostname() returns: without importing socket
        node = os.uname().nodename
    else:
        import socket

        node = socket.gethostname()
    host = (node if _NODE_CHARS.issuperset(node) else re.sub(r"[^A-Za-z0-9._-]", "_", node))[:64]
    return f"{os.getpid()}@{host}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, but is not ours to signal
    return True


def clean_leftovers(parent: str, now: Optional[float] = None) -> List[str]:
    """Remove staging and old directories that killed builds left in `parent`; return their names.

    Only directories named as vnetgen names them (`.vnetgen-[old-]PID@HOST-XXXXXXXX`, or an older
    vnetgen's `.vnetgen-[old-]XXXXXXXX`), never a link; one of ours is removed when its process is
    gone from this host, any other when older than LEFTOVER_AGE. Call it holding the parent's lock.
    """
    import time

    now = time.time() if now is None else now
    host = _me().split("@", 1)[1]
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(_LEFTOVER, entry.name) if entry.name.startswith(".vnetgen-") else None
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        dead = match.group("pid") is not None and match.group("host") == host and not _alive(int(match.group("pid")))
        if dead or age > LEFTOVER_AGE:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return sorted(removed)


class _Lock:
    """An exclusive flock on DIR's parent directory: builds into one place run one at a time, and
    clean_leftovers never races a build that is still staging. No lock file is left behind."""

    def __init__(self, parent: str, wait: float) -> None:
        self.parent = parent
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> "_Lock":
        import fcntl
        import time

        self.fd = os.open(self.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise BundleError(f"another vnetgen build has been writing into {self.parent} for "
                                      f"{self.wait:g} s; try again when it is done") from None
                time.sleep(0.05)
            except OSError:
                return self  # a file system without flock: build unlocked, as before

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)  # releases the lock


def write(bundle: Iterable[Artifact], directory: str, force: bool = False) -> List[str]:
    """Write the bundle (a Bundle, or a Stream consumed as it is written) so that DIR is either
    untouched or complete: build aside, then swap; an error while the stream is rendered leaves DIR
    as it was too. Returns the paths written.

    Confined to DIR: nothing is written, replaced or deleted through a symbolic link, and DIR itself
    must not be one. Builds into one parent directory are serialized by a lock on that directory.
    """
    if not directory:
        raise BundleError("the output directory is empty (-o ''): name a directory")
    directory = os.path.abspath(directory)
    if os.path.dirname(directory) == directory:
        raise BundleError(f"{directory}: refusing to write a bundle over the root directory")
    if os.path.islink(directory):
        raise BundleError(f"{directory} is a symbolic link; vnetgen never writes through one "
                          f"(give the directory it points to: {os.path.realpath(directory)})")
    parent = os.path.dirname(directory)
    try:
        os.makedirs(parent, exist_ok=True)
        with _Lock(parent, LOCK_WAIT):
            clean_leftovers(parent)
            return _write_locked(bundle, directory, force)
    except OSError as exc:
        raise BundleError(f"cannot write {directory}: {exc.strerror or exc}") from None


def _write_locked(bundle: Iterable[Artifact], directory: str, force: bool) -> List[str]:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise BundleError(f"{directory} exists and is not a directory")
    foreign: List[str] = []
    owned: List[str] = []
    if os.path.isdir(directory):
        owned = _owned(directory) or []
        found, links = _existing(directory)
        keep = set(owned) | {MANIFEST}
        # vnetgen never writes a link: any link in DIR is somebody else's, whatever the manifest says.
        foreign = sorted(set(p for p in found if p not in keep) | set(links))
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
            raise BundleError(f"{directory} holds files vnetgen did not write ({shown}); "
                              "choose another directory or pass --force")
    parent = os.path.dirname(directory)
    staging = tempfile.mkdtemp(prefix=f".vnetgen-{_me()}-", dir=parent)
    written: List[str] = []
    try:
        put = _Placer(staging)
        # A Stream's workers write their hosts' files into the staging directory themselves.
        for artifact in bundle.placed(put) if isinstance(bundle, Stream) else bundle:
            written.append(artifact.path)
            if not isinstance(artifact, Placed):
                put(artifact.path, artifact.content(), artifact.mode)
        written.sort()
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
            handle.write("".join(f"{p}\n" for p in written))
        os.chmod(staging, 0o755)
        if foreign:
            # Before anything moves into DIR (the staging directory is aside, DIR still untouched).
            _refuse_links(directory, written + [MANIFEST])
            _merge(staging, directory, written, set(owned) - set(written))  # --force: keep foreign files
        else:
            _swap(staging, directory)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"cannot write {directory}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


class _Placer:
    """Writes a file of the bundle under the staging directory, making its directory first (once per
    directory in each process: a worker has its own copy)."""

    def __init__(self, staging: str) -> None:
        self.staging = staging
        self.made = {staging}

    def __call__(self, path: str, data: bytes, mode: int) -> None:
        target = os.path.join(self.staging, path)
        parent_dir = os.path.dirname(target)
        if parent_dir not in self.made:  # one mkdir per directory, not one per file
            os.makedirs(parent_dir, exist_ok=True)
            self.made.add(parent_dir)
        _write_file(target, data, mode)


def _write_file(path: str, data: bytes, mode: int) -> None:
    """A new file with exactly `mode`, in as few system calls as the OS allows (a fleet has 10⁴ files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # not the umask's choice: the bundle's modes are part of it
    finally:
        os.close(fd)


def _swap(staging: str, directory: str) -> None:
    """Replace `directory` by `staging` with renames only, so a crash leaves one or the other."""
    if not os.path.exists(directory):
        os.rename(staging, directory)
        return
    old = tempfile.mkdtemp(prefix=f".vnetgen-old-{_me()}-", dir=os.path.dirname(directory))
    os.rmdir(old)
    os.rename(directory, old)
    try:
        os.rename(staging, directory)
    except OSError:
        os.rename(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _refuse_links(directory: str, paths: List[str]) -> None:
    """Before --force moves anything: none of our paths may pass through, or be, a link (or a non-directory)."""
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            here = os.path.join(directory, *parts[:depth])
            if os.path.islink(here):
                raise BundleError(f"{here} is a symbolic link, and vnetgen would write {path} through it; "
                                  "--force keeps foreign files but never writes through a link: remove it "
                                  "or choose another directory")
            if depth < len(parts) and os.path.exists(here) and not os.path.isdir(here):
                raise BundleError(f"{here} is not a directory, and vnetgen would write {path} below it; "
                                  "remove it or choose another directory")
            if not os.path.exists(here):
                break


def _open_dir(root: int, parts: List[str], create: bool) -> Optional[int]:
    """A descriptor of root/parts…, each component opened without following a link; None if absent."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd


def _merge(staging: str, directory: str, written: List[str], stale: set) -> None:
    """Move our files into a directory that also holds foreign ones; drop only our stale files.

    Every step goes through descriptors opened with O_NOFOLLOW, so a link planted in DIR (even after
    the check above) makes the build fail instead of writing or deleting elsewhere.
    """
    import errno

    root = os.open(directory, _DIR_FLAGS)
    try:
        for path in written + [MANIFEST]:
            parts = path.split("/")
            try:
                parent = _open_dir(root, parts[:-1], create=True)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise BundleError(f"{directory}/{path}: a component is a symbolic link or not a "
                                      "directory; vnetgen never writes through one") from None
                raise
            assert parent is not None
            try:
                try:
                    if stat.S_ISLNK(os.lstat(parts[-1], dir_fd=parent).st_mode):
                        raise BundleError(f"{directory}/{path} is a symbolic link; vnetgen never writes "
                                          "through one (remove it or choose another directory)")
                except FileNotFoundError:
                    pass
                os.replace(os.path.join(staging, path), parts[-1], dst_dir_fd=parent)
            finally:
                os.close(parent)
        for path in sorted(stale):
            parts = path.split("/")
            try:
                parent = _open_dir(root, parts[:-1], create=False)
            except OSError:
                continue  # below a link or a file now: not ours to follow
            if parent is None:
                continue
            try:
                if stat.S_ISREG(os.lstat(parts[-1], dir_fd=parent).st_mode):
                    os.unlink(parts[-1], dir_fd=parent)
            except OSError:
                pass
            finally:
                os.close(parent)
    finally:
        os.close(root)
    shutil.rmtree(staging, ignore_errors=True)


def _read_back(path: str) -> bytes:
    """A file of a bundle directory, for --check: a regular file, not a link, bounded."""
    from .safeio import BUNDLE_FILE_LIMIT, UnsafeInput, read_bounded

    try:
        return read_bounded(path, BUNDLE_FILE_LIMIT, "bundle file", follow=False)
    except UnsafeInput as exc:
        raise BundleError(str(exc)) from None


def how_it_differs(artifact: Artifact, path: str) -> str:
    """A one-line summary of how the file at `path` differs from `artifact`: lines or mode."""
    import difflib

    on_disk = _read_back(path)
    parts = []
    if on_disk != artifact.content():
        if artifact.binary:
            parts.append("binary content")
        else:
            old = on_disk.decode("utf-8", errors="replace").splitlines()
            ops = difflib.SequenceMatcher(None, old, artifact.text.splitlines(), autojunk=False).get_opcodes()
            added = sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag in ("replace", "insert"))
            removed = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag in ("replace", "delete"))
            parts.append(f"+{added} -{removed} lines")
    mode = os.lstat(path).st_mode & 0o777
    if mode != artifact.mode:
        parts.append(f"mode {mode:o} → {artifact.mode:o}")
    return ", ".join(parts)


def compare(bundle: Iterable[Artifact], directory: str) -> Tuple[List[Tuple[str, str]], List[str], List[str], int]:
    """(differ, missing, extra, count) between the built bundle (a Bundle or a Stream, consumed here)
    and `directory`: differ holds (path, how_it_differs), count the bundle's files.

    Raises BundleError for a file that is not a regular file (a link, a FIFO, a device) or is too large.
    """
    if not directory:
        raise BundleError("the output directory is empty (-o ''): name a directory")
    if os.path.isdir(directory):
        found, _ = _existing(directory)
        existing = set(found) - {MANIFEST}
    else:
        existing = set()
    differ, missing, built = [], [], set()
    for artifact in bundle:
        path = artifact.path
        built.add(path)
        full = os.path.join(directory, path)
        if path not in existing:
            missing.append(path)
            continue
        same = _read_back(full) == artifact.content()
        if not same or (os.lstat(full).st_mode & 0o777) != artifact.mode:
            differ.append((path, how_it_differs(artifact, full)))
    return sorted(differ), sorted(missing), sorted(existing - built), len(built)

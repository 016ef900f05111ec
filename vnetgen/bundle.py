"""Build a whole bundle in memory, then write it atomically or compare it with a directory."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .api import Artifact

MANIFEST = ".vnetgen-manifest"
ARCHIVES = "archives"  # transport containers of the bundle; not listed in SHA256SUMS, which they carry  # lists the files vnetgen wrote, so a rebuild may replace exactly those


class BundleError(Exception):
    """A bundle cannot be written (the directory holds foreign files, or I/O failed)."""


@dataclass
class Bundle:
    files: Dict[str, Artifact]   # path relative to the bundle root → artifact
    plans: List[Any]


def build(profile: Any, pm: Any, profile_file: str, hosts: Optional[List[str]] = None,
          archive: bool = False, against: Optional[Any] = None) -> Bundle:
    """Plan and render every (selected) host; pure: touches no file. `against` (an older profile)
    adds a Changes section to REVIEW.md and lets runbooks apply DHCP changes live."""
    from .fleet import ansible_files, host_tars
    from .plan import plan_profile
    from .render import host_artifacts, one_line, render, sha256sums
    from .xml import rng_errors

    profile_file = one_line(profile_file)

    previous = plan_profile(against, pm, hosts) if against is not None else None
    plans = plan_profile(profile, pm, hosts, previous)
    files: Dict[str, Artifact] = {}
    for plan in plans:
        for artifact in host_artifacts(plan, profile_file):
            if artifact.path.endswith(".xml") and artifact.path.startswith("networks/"):
                problem = rng_errors(artifact.text)
                if problem:
                    raise BundleError(f"{plan.name}/{artifact.path} is not valid against libvirt's "
                                      f"network.rng: {problem}")
            files[f"{plan.name}/{artifact.path}"] = Artifact(f"{plan.name}/{artifact.path}", artifact.text,
                                                             artifact.mode)
    review = render("REVIEW.md.j2", **review_context(profile, plans, profile_file, against, previous))
    files["REVIEW.md"] = Artifact("REVIEW.md", review)
    files.update(ansible_files(profile, plans, profile_file))
    files["SHA256SUMS"] = Artifact("SHA256SUMS", sha256sums(files))
    files.update(host_tars(files, [p.name for p in plans]))   # they carry SHA256SUMS: not listed in it
    if archive:
        files.update(archives(files, [p.name for p in plans]))
    return Bundle(files=files, plans=plans)


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


def review_context(profile: Any, plans: List[Any], profile_file: str, against: Optional[Any] = None,
                   previous: Optional[List[Any]] = None) -> Dict[str, Any]:
    from .review import context

    return context(profile, plans, profile_file, against, previous)


def _owned(directory: str) -> Optional[List[str]]:
    """Files vnetgen wrote into `directory` last time, or None if it never did."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]
    except OSError:
        return None


def _existing(directory: str) -> List[str]:
    found = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            found.append(os.path.relpath(os.path.join(root, name), directory))
    return found


def write(bundle: Bundle, directory: str, force: bool = False) -> None:
    """Write the bundle so that DIR is either untouched or complete: build aside, then swap."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise BundleError(f"{directory} exists and is not a directory")
    foreign: List[str] = []
    if os.path.isdir(directory):
        owned = set(_owned(directory) or ()) | {MANIFEST}
        foreign = [p for p in _existing(directory) if p not in owned]
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
            raise BundleError(f"{directory} holds files vnetgen did not write ({shown}); "
                              "choose another directory or pass --force")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".vnetgen-", dir=parent)
    try:
        for path, artifact in sorted(bundle.files.items()):
            target = os.path.join(staging, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(artifact.content())
            os.chmod(target, artifact.mode)
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
            handle.write("".join(f"{p}\n" for p in sorted(bundle.files)))
        os.chmod(staging, 0o755)
        if foreign:
            _merge(staging, directory, bundle)  # --force: never delete files vnetgen did not write
        else:
            _swap(staging, directory)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"cannot write {directory}: {exc.strerror or exc}") from None


def _swap(staging: str, directory: str) -> None:
    """Replace `directory` by `staging` with renames only, so a crash leaves one or the other."""
    if not os.path.exists(directory):
        os.rename(staging, directory)
        return
    old = tempfile.mkdtemp(prefix=".vnetgen-old-", dir=os.path.dirname(directory))
    os.rmdir(old)
    os.rename(directory, old)
    try:
        os.rename(staging, directory)
    except OSError:
        os.rename(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _merge(staging: str, directory: str, bundle: Bundle) -> None:
    """Move our files into a directory that also holds foreign ones; drop only our stale files."""
    stale = set(_owned(directory) or ()) - set(bundle.files)
    for path in sorted(bundle.files) + [MANIFEST]:
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(staging, path), target)
    for path in sorted(stale):
        try:
            os.remove(os.path.join(directory, path))
        except OSError:
            pass
    shutil.rmtree(staging, ignore_errors=True)


def how_it_differs(artifact: Artifact, path: str) -> str:
    """A one-line summary of how the file at `path` differs from `artifact`: lines or mode."""
    import difflib

    with open(path, "rb") as handle:
        on_disk = handle.read()
    parts = []
    if on_disk != artifact.content():
        if artifact.data is not None:
            parts.append("binary content")
        else:
            old = on_disk.decode("utf-8", errors="replace").splitlines()
            ops = difflib.SequenceMatcher(None, old, artifact.text.splitlines(), autojunk=False).get_opcodes()
            added = sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag in ("replace", "insert"))
            removed = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag in ("replace", "delete"))
            parts.append(f"+{added} -{removed} lines")
    mode = os.stat(path).st_mode & 0o777
    if mode != artifact.mode:
        parts.append(f"mode {mode:o} → {artifact.mode:o}")
    return ", ".join(parts)


def compare(bundle: Bundle, directory: str) -> Tuple[List[str], List[str], List[str]]:
    """(differ, missing, extra) paths between the built bundle and `directory`."""
    existing = set(_existing(directory)) - {MANIFEST} if os.path.isdir(directory) else set()
    differ, missing = [], []
    for path, artifact in sorted(bundle.files.items()):
        full = os.path.join(directory, path)
        if path not in existing:
            missing.append(path)
            continue
        try:
            with open(full, "rb") as handle:
                same = handle.read() == artifact.content()
        except OSError:
            same = False
        if not same or (os.stat(full).st_mode & 0o777) != artifact.mode:
            differ.append(path)
    extra = sorted(existing - set(bundle.files))
    return differ, missing, extra

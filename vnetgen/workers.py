"""An ordered map over forked worker processes, for the per-host work of a large fleet's build or audit.

A 1,000-host build spends most of its time planning and rendering hosts, one independent of another
(an audit: planning hosts, reading their captures and evaluating them).
`ordered_map` forks `jobs` workers after the profile is loaded (each inherits it, nothing is sent to
them), gives the items to the workers in turn (one at a time, or in runs of `block`) and yields the
results in the items' order, so what comes out is exactly what a loop in this process would give,
whatever the number of workers.

Results come back pickled through a pipe. An object that existed before the fork (the profile, its
hosts and networks, the plugins) is not copied: `shared` lists them, a worker pickles such an object
as its index in that list and the parent puts its own, identical object back (a `persistent_id`), so
what the parent gets refers to its own profile as if it had made it itself.

A worker that raises sends the exception in place of its result, and the parent raises it when that
item's turn comes: the first failing item in order wins, as in a loop. A worker that dies or is killed
is an error too, and the parent stops every worker before it returns or raises. Workers write nothing
but their pipe and leave with os._exit (no atexit handler, no buffered output of the parent's).
"""
from __future__ import annotations

import os
import pickle
import signal
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

_PIPE_SIZE = 1 << 20   # room for a few hosts' results ahead of the parent (Linux caps it at pipe-max-size)
# Per-host work runs in workers from this many hosts on: below, forking costs more than it saves.
PARALLEL_FROM = 32
MAX_JOBS = 4   # the default's cap (each worker copies the profile pages it reads): `-j N` asks for more


class WorkerError(Exception):
    """A worker ended without its results (killed, or it died)."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS says, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs(hosts: int, jobs: Optional[int] = None) -> int:
    """Worker processes for the per-host work of `hosts` hosts: `jobs` when given; by default one
    per usable CPU, at most MAX_JOBS, for PARALLEL_FROM hosts or more (else 1: this process)."""
    if jobs is not None:
        return jobs
    if hosts < PARALLEL_FROM:
        return 1
    return min(usable_cpus(), MAX_JOBS)


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, index: dict) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._index = index

    def persistent_id(self, obj: Any) -> Any:
        found = self._index.get(id(obj))
        return found[0] if found is not None and found[1] is obj else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, shared: Sequence[Any]) -> None:
        super().__init__(file)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid]


STARTED = object()   # what an `eager` ordered_map yields first, once its workers run


def ordered_map(func: Callable[[Any], Any], items: Sequence[Any], jobs: int,
                shared: Sequence[Any] = (), block: int = 1, eager: bool = False,
                generation: int = 0, first_here: bool = False) -> Iterator[Any]:
    """func(item) for every item, in order, computed by `jobs` forked workers (jobs < 2, or no fork
    on this OS: in this process). `shared`: objects made before the call that results may refer to.
    Items go to the workers in turn by runs of `block`: a worker then touches fewer of the parent's
    memory pages (each one it writes, even a reference count, is copied), but gets at most its pipe's
    worth ahead of the parent: give small results a larger block. `eager`: the first next() forks the
    workers and yields STARTED, so the caller can go on with other work while they run (in this
    process, STARTED comes first too, and the items are computed as the results are asked for).

    `generation`: the workers end after that many items (0: never) and a new set is forked for the
    next ones. The kernel copies every page of the parent's memory a worker writes to (reading an
    object writes its reference count): a worker's copies go when it ends, so the workers of a fleet
    hold the copies of one generation's hosts, not of all of theirs. `first_here`: the first item is
    computed in this process first, so that what it loads on first use (modules, schemas, caches) is
    loaded once and shared by every worker of every generation rather than loaded again by each."""
    if jobs < 2 or len(items) < 2 or not hasattr(os, "fork"):
        if eager:
            yield STARTED
        for item in items:
            yield func(item)
        return
    done = 0
    if first_here:
        first = func(items[0])   # raised here, in its turn: it is the first
        done = 1
    size = generation if generation > 0 else len(items)
    for start in range(done, len(items), size):
        results = _generation(func, items[start:start + size], jobs, shared, block)
        try:
            next(results)   # forked: the workers compute while the first item's result is taken
            if eager and start == done:
                yield STARTED
            if first_here and start == done:
                yield first
            yield from results
        finally:
            results.close()   # a caller that stops early: this generation's workers are stopped


def _generation(func: Callable[[Any], Any], items: Sequence[Any], jobs: int,
                shared: Sequence[Any], block: int) -> Iterator[Any]:
    """One set of workers for `items` (see ordered_map): the first next() forks them and yields
    STARTED, the next ones yield their results in order."""
    jobs = min(jobs, len(items))
    index = {id(obj): (number, obj) for number, obj in enumerate(shared)}
    workers: List[Tuple[int, Any]] = []   # (pid, read end)
    done = False
    try:
        for number in range(jobs):
            read, write = os.pipe()
            try:
                pid = os.fork()
            except BaseException:
                os.close(read)
                os.close(write)
                raise
            if pid == 0:   # the worker: never returns
                os.close(read)
                for _, other in workers:
                    other.close()
                _work(func, [item for position, item in enumerate(items)
                             if position // block % jobs == number], write, index)
            os.close(write)
            workers.append((pid, os.fdopen(read, "rb", buffering=_PIPE_SIZE)))
        yield STARTED
        for position in range(len(items)):
            pid, pipe = workers[position // block % jobs]
            try:
                ok, value = _Unpickler(pipe, shared).load()
            except EOFError:
                raise WorkerError(f"a worker (pid {pid}) ended before its work was done "
                                  f"({_status(pid)})") from None
            except Exception as exc:   # not a whole result: never expected, but never a traceback either
                raise WorkerError(f"a worker (pid {pid}) sent what cannot be read back: {exc}") from None
            if not ok:
                raise value
            yield value
        done = True
    finally:
        for pid, pipe in workers:
            pipe.close()   # a worker still writing gets EPIPE and leaves
        for pid, _ in workers:
            _reap(pid, kill=not done)


def _work(func: Callable[[Any], Any], items: Sequence[Any], fd: int, index: dict) -> None:
    code = 1
    try:
        try:
            import fcntl

            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
        except (ImportError, OSError):
            pass   # the default pipe size: the worker waits for the parent a little more often
        signal.signal(signal.SIGINT, signal.SIG_DFL)   # Ctrl-C: the parent cleans up, the worker just ends
        with os.fdopen(fd, "wb", buffering=_PIPE_SIZE) as out:
            for item in items:
                try:
                    message = (True, func(item))
                except Exception as exc:   # sent, raised by the parent in this item's turn
                    message = (False, _picklable(exc))
                data = _dumps(message, index)
                if data is None:   # a result that cannot be pickled: the item fails
                    message = (False, WorkerError(f"the result for {item!r} cannot be sent back"))
                    data = _dumps(message, index) or b""
                out.write(data)    # whole, or the parent would read half a result
                out.flush()   # the parent may be waiting for exactly this
                if not message[0]:
                    break
        code = 0
    except BrokenPipeError:
        code = 1   # the parent stopped reading: it is ending the build
    except BaseException:
        code = 1
        try:
            import traceback

            traceback.print_exc()   # a fault of this module, not of an item: say where
        except BaseException:
            pass
    finally:
        os._exit(code)


def _dumps(message: Any, index: dict) -> Any:
    """`message` pickled (bytes), or None when it cannot be."""
    import io

    buffer = io.BytesIO()
    try:
        _Pickler(buffer, index).dump(message)
    except Exception:
        return None
    return buffer.getvalue()


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return WorkerError(f"{type(exc).__name__}: {exc}")


def _status(pid: int) -> str:
    try:
        done, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _reap(pid: int, kill: bool) -> None:
    """Wait for a worker; with `kill` (the parent stops early: an error, or its reader went away) one
    still running is killed first."""
    try:
        if kill and os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass

"""How one process runs its groups of stages (:func:`stereoforge.stages.groups`): at once, each on a thread of its
own, so that the stages that keep one core busy (ingest's decoding, the point clouds, the encoder) run beside the
eyes, fills and composite instead of before or after them.

A group whose first stage is one of :data:`FOLLOWERS` *follows* the group that writes the files it reads: both
start together, and the follower waits for each file it reads (:meth:`Job.wait_for`) while the writer's thread
runs. Every file is renamed into place when complete, so one that exists may be read. Nothing is handed over in
memory: the follower reads the files, as a stage run on its own does (its bytes are those of a run stage by
stage, memory stays flat, and a resumed run reads the files of a stopped one the same way). Any other group waits
until the group it reads has ended.

A group that fails (an error, the ``cancel`` callback) stops the others between frames; an exception in the
calling thread (Ctrl-C, SIGTERM) does too. Each keeps the frames it finished. The error is raised (a cancel:
one :class:`~stereoforge.errors.Cancelled` that names the groups it stopped).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from ..errors import Cancelled
from ..shot import UPSTREAM
from .job import POLL_S, Job

#: The stages that may read the files of the stage before while it runs (they wait for each one): ingest's
#: frames become point clouds and eyes, the composed frames a video. Each reads the frames in their order.
FOLLOWERS = ("cloud", "eyes", "encode")


def run_all(job: Job, grouped: list[tuple[str, ...]], run: Callable[[Job, tuple[str, ...]], object]
            ) -> dict[str, tuple[float, object]]:
    """Run the groups ``grouped`` of ``job`` with ``run(job, group)``, overlapped (see above). Returns, for each
    group labelled with its stages (``eyes+inpaint+composite``), its seconds from its start to its end (the
    groups' seconds overlap) and what ``run`` returned."""
    stop = threading.Event()
    lock = threading.Lock()  # progress and log calls, one at a time (a display is not made for threads)
    shared = dataclasses.replace(job, cancel=lambda: stop.is_set() or job.cancel(),
                                 progress=_one_at_a_time(lock, job.progress), log=_one_at_a_time(lock, job.log))
    ended = {group: threading.Event() for group in grouped}
    results: dict[str, tuple[float, object]] = {}
    errors: dict[str, BaseException] = {}

    def run_group(group: tuple[str, ...]) -> None:
        label = "+".join(group)
        writer = next((other for other in grouped if UPSTREAM.get(group[0]) in other), None)
        follows = writer is not None and group[0] in FOLLOWERS
        try:
            if writer is not None and not follows:
                while not ended[writer].wait(POLL_S):
                    shared.check_cancel(label)
                shared.check_cancel(label)  # the group it waited for failed (or a cancel came meanwhile)
            started = time.perf_counter()
            result = run(dataclasses.replace(shared, upstream_ended=ended[writer] if follows else None), group)
            results[label] = (time.perf_counter() - started, result)
        except BaseException as exc:  # noqa: BLE001 - raised again by the calling thread
            with lock:
                errors[label] = exc
            stop.set()
        finally:
            ended[group].set()

    threads = [threading.Thread(target=run_group, args=(group,), name=f"stereoforge-{'+'.join(group)}")
               for group in grouped]
    # Waits on each group's ``ended``, not on Thread.join: Python 3.11 takes a join interrupted by Ctrl-C for
    # the thread's end, and would not wait again.
    try:
        for thread in threads:
            thread.start()
        for group in grouped:
            ended[group].wait()
    except BaseException:
        stop.set()  # Ctrl-C or SIGTERM here: the groups stop between frames, keeping the frames they finished
        for group, thread in zip(grouped, threads, strict=True):
            if thread.ident is not None:
                ended[group].wait()
        raise
    finally:
        for thread in threads:
            if thread.ident is not None:
                thread.join()  # it has ended its group: only its return is left
    if errors:
        try:
            raise _first_error(job, errors, ["+".join(group) for group in grouped])
        finally:  # no cycle through the dict keeps the errors' frames (a failed USD write's open file) alive
            errors.clear()
    return {"+".join(group): results["+".join(group)] for group in grouped}


def _first_error(job: Job, errors: dict[str, BaseException], labels: list[str]) -> BaseException:
    """Of ``errors`` (group label -> its error, as they came), the error that stopped the groups (the others
    stopped for it, :class:`Cancelled`), or, when the job was cancelled, one :class:`Cancelled` that names the
    groups it stopped, in the order of ``labels``."""
    failures = [exc for exc in errors.values() if not isinstance(exc, Cancelled)]
    if failures:
        return failures[0]
    if len(errors) == 1:
        return next(iter(errors.values()))
    *others, last = (label for label in labels if label in errors)
    return Cancelled(f"cancelled during {', '.join(others)} and {last}; the frames finished so far are kept in "
                     f"'{job.dir}'")


def _one_at_a_time(lock: threading.Lock, call: Callable) -> Callable:
    """``call``, made by one thread at a time (a JSON line or a progress bar is written whole)."""
    def locked(*args) -> None:
        with lock:
            call(*args)

    return locked

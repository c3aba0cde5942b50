"""A convert job spread over a Ray cluster: ``stereoforge convert ... --ray [ADDRESS]``.

This process (the driver) plans the shot once (:func:`stereoforge.pipeline.prepare`: the inputs checked, the
depth range, the rig, shot.json) and hands the stages to Ray, grouped as one process groups them where the
frames can stay in memory (:func:`stereoforge.stages.groups`, ``by_eye``). Each group is split into tasks, and
each task runs it (:func:`stereoforge.pipeline.run_group`) on its part of the shot::

    eyes+inpaint                     one task per eye, for the default inpainter (it carries each frame's fill to
                                     the next, but the two eyes are independent): the eye splatted and filled in
                                     memory, its fills written for composite
    eyes+inpaint+composite           contiguous frame ranges (whole splat batches) for an inpainter that fills
                                     each frame on its own (telea, none)
    ingest, cloud, composite, eyes   contiguous frame ranges, one per worker (composite's first range short
                                     when encode follows, see below)
    inpaint                          one task per eye, for a model (it reads the eyes from files)
    encode                           one task per video; with more than one worker it starts once the first
                                     composite range is done and makes any frame still missing itself (one a
                                     composite task is making beside it it waits for)

Every task is submitted at once, after the tasks of the group whose files it reads (Ray starts it when those
are done), so no stage waits for one it does not read. A task reads what those wrote into the shot folder, the
neighbouring frames it needs included, so the files are the bytes one process writes (only shot.json's
``created`` time differs). Every node needs stereoforge installed and the shot folder at the same path (shared
storage). A worker that dies is retried by Ray (:data:`TASK_RETRIES`) and its task skips the frames it
finished; a cancel (or Ctrl-C, SIGTERM, a task that fails) cancels the tasks: each stops at its next frame, as
one process does, when it sees the run's cancel marker in the shot folder (see :func:`_stop`), and the finished
frames stay. Each task runs on one thread (``Job.threads``; torch, OpenCV, numba, OpenMP and BLAS): the
cluster's parallelism is its workers.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from .errors import Cancelled, InputError, StereoForgeError, disk_error
from .shot import EYES, INTERMEDIATES, UPSTREAM

if TYPE_CHECKING:  # the pipeline (torch) loads when a job runs, not when a server checks its --ray address
    from .plan import Plan, Progress
    from .spec import ConvertSpec

#: ``--ray`` alone: start a Ray cluster on this machine (``ray.init(address="local")``).
LOCAL = "local"
#: Times Ray runs a task again after its worker died (a killed process, a lost node).
TASK_RETRIES = 3
#: Libraries that start a thread pool of their own size it from these; a task gets one thread of each.
ONE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "NUMBA_NUM_THREADS")}
#: The local cluster's shared-memory object store: tasks pass only the plan through it (the frames go through
#: the shot folder), so Ray's minimum is plenty.
_OBJECT_STORE_BYTES = 80 * 1024 * 1024
#: How often the driver looks at its cancel callback while tasks run (seconds).
_POLL_S = 0.2
#: A run's cancel marker in the shot folder: a hidden file, this name and the run's id (16 hex digits, new for
#: each :func:`convert`), whose existence tells the run's tasks to stop (:func:`_stop`).
CANCEL_MARKER = ".stereoforge-farm-cancel-"
_MARKER_NAME = re.compile(re.escape(CANCEL_MARKER) + "[0-9a-f]{16}")
#: How long the tasks get to see the cancel marker and end (seconds): a task looks at it between frames, but
#: not while it loads a model, say; those still running after it are cancelled by Ray.
_STOP_S = 30


def check_address(address: str) -> None:
    """Reject an address that names no Ray cluster that can be reached, in one line, before Ray tries (it would
    retry for a minute): ``local``, ``auto`` (the cluster ``ray start`` runs here), ``HOST:PORT`` (its GCS,
    port 6379 by default) or ``ray://HOST:PORT`` (Ray Client, port 10001)."""
    if address in (LOCAL, "auto"):
        return
    match = re.fullmatch(r"(?:ray://)?(\[[0-9a-fA-F:]+\]|[^:/\s]+):(\d{1,5})", address)
    if match is None:
        raise InputError(f"--ray {address!r} is not a Ray address; give HOST:PORT (a cluster's head, as 'ray start "
                         "--head' prints it, e.g. 10.0.0.5:6379), ray://HOST:10001, auto, or --ray alone for a "
                         "cluster on this machine")
    host, port = match[1].strip("[]"), int(match[2])
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise InputError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
                         "'ray start --head' on the head node and give the address it prints, or give --ray "
                         "alone for a cluster on this machine") from None


def connect(address: str = LOCAL, workers: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (:data:`LOCAL`: start one here, of ``workers`` one-thread workers,
    by default one per core), unless this process has joined one already; quietly: no dashboard, no workers'
    output echoed here."""
    check_address(address)
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed here: pip install 'stereoforge[farm]'") from None
    if ray.is_initialized():
        return
    local = address == LOCAL
    on_term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 num_cpus=workers if local else None,
                 object_store_memory=_OBJECT_STORE_BYTES if local else None)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(f"--ray {address}: cannot join the Ray cluster there ({str(exc).splitlines()[0]}); "
                         "check the address ('ray status' on the head node)") from None
    if on_term is not None:
        # Ray's core puts its own SIGTERM handler in (it aborts the process): a farm's scheduler stops the job
        # as Ctrl-C does instead, the tasks cancelled and the finished frames kept.
        signal.signal(signal.SIGTERM, _Relay(on_term) if callable(on_term) else on_term)


class _Relay:
    """A SIGTERM handler that remembers the signal: ``ray.wait`` turns whatever a handler raises into a plain
    KeyboardInterrupt, so the driver raises the handler's own exception again once the tasks are cancelled (the
    command line then exits as SIGTERM asks, 143)."""

    def __init__(self, handler: Callable) -> None:
        self.handler = handler
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        self.handler(signum, frame)

    @staticmethod
    def raise_again() -> None:
        """Raise what the SIGTERM handler raised, if a SIGTERM came."""
        relay = signal.getsignal(signal.SIGTERM)
        if isinstance(relay, _Relay) and relay.seen:
            relay.seen = False
            relay.handler(signal.SIGTERM, None)


def convert(spec: ConvertSpec, address: str = LOCAL, progress: Progress | None = None,
            cancel: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
            workers: int | None = None) -> dict:
    """Run (or resume) a convert job on the Ray cluster at ``address`` (see :func:`connect`); returns what
    :func:`stereoforge.pipeline.convert` returns, with the same files in the shot folder, and ``tasks``: each
    group of stages' label -> one dict per task, its ``cpu`` seconds, its ``start`` and ``end`` (seconds since
    the tasks were submitted, by the clock of the task's machine) and the ``worker`` (host:pid) that ran it.

    Raises :class:`InputError` for bad input or an address with no cluster, :class:`Cancelled` when
    ``cancel()`` turns true (the tasks stop at their next frame; finished frames stay) and
    :class:`~stereoforge.errors.StereoForgeError` when a task fails for good.
    """
    try:
        return _convert(spec, address, progress, cancel, log or (lambda message: None), workers)
    except OSError as exc:
        raise disk_error(exc) from None


def _convert(spec: ConvertSpec, address: str, progress, cancel, log, workers: int | None) -> dict:
    import ray

    from . import pipeline
    from .io.images import remove_stale_temporaries
    from .stages import groups, written

    started = time.perf_counter()
    connect(address, workers)
    job, stages = pipeline.prepare(spec, progress, cancel, log)
    p = job.plan
    marker = _cancel_marker(p.shot_dir)
    timings = {"plan": time.perf_counter() - started}
    shared = ray.put(p)
    width = max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES,
                      runtime_env={"env_vars": ONE_THREAD_ENV})(_run_part)
    grouped = groups(job, stages, by_eye=not pipeline.fills_frame_by_frame(p.spec))
    handed_on = written(job, stages, grouped)
    # The tasks hand frames to the next group through files; what one process would have kept in memory goes
    # at the end (eyes/, masks/, filled/ unless --keep asks for them), so the shot holds what it would hold.
    passed_on = [os.path.join(p.shot_dir, folder) for folder in INTERMEDIATES if folder not in written(job, stages)
                 and not os.path.exists(os.path.join(p.shot_dir, folder))]
    overlap = _overlaps_encode(grouped, width)
    parts = {group: split(p, group, width, overlap) for group in grouped}
    labels = {"+".join(group): "+".join(_read_from(group, grouped)) for group in grouped}
    t0, submitted = time.perf_counter(), time.time()
    results, finished = _wait(_submit(task, shared, handed_on, parts, overlap, marker),
                              {"+".join(group): [_frames(p, part) for part in ps] for group, ps in parts.items()},
                              labels, progress, cancel, marker)
    for label, read_from in labels.items():  # a group's seconds: from the end of the one it reads to its own end
        timings[label] = finished.get(label, t0) - finished.get(read_from, t0)
    videos = [video for paths, _ in results.get("encode", []) for video in paths]
    tasks = {label: [{**facts, "start": facts["start"] - submitted, "end": facts["end"] - submitted}
                     for _, facts in done] for label, done in results.items()}
    for folder in passed_on:
        shutil.rmtree(folder, ignore_errors=True)
    # A worker killed while writing left its temporary file: the task's retry wrote the frame anew.
    for path in remove_stale_temporaries(p.shot_dir):
        log(f"removed '{path}', left half-written by a Ray worker that died")
    return {**pipeline.result_of(p, videos, timings), "tasks": tasks}


def _submit(task, shared, written: tuple[str, ...], parts: dict[tuple[str, ...], list[dict]],
            overlap: bool, marker: str) -> dict[str, list]:
    """Submit every group's tasks (``parts``: group -> its parts, in the order the groups run) now, each given
    the tasks of the group it reads from, so that Ray starts it when those are done: no barrier waits for a
    group that a task does not read (the point clouds are made while the eyes are filled). The groups on the way
    to the videos go first: a worker that frees up while the other fills the slower eye makes the point clouds.
    ``overlap`` (:func:`_overlaps_encode`): encode waits for the first composite part only; ``marker``: the
    run's cancel marker (:func:`_run_part`). Returns each group's label -> its tasks' references, in the order
    the groups run."""
    grouped = list(parts)
    refs: dict[tuple[str, ...], list] = {}
    for group in sorted(grouped, key=lambda group: -_followers(group, grouped)):
        after = refs.get(_read_from(group, grouped), [])
        if overlap and group == ("encode",):
            after = after[:1]
        name = f"stereoforge.{'+'.join(group)}"
        refs[group] = [task.options(name=name).remote(shared, group, written, part, *after, marker=marker)
                       for part in parts[group]]
    return {"+".join(group): refs[group] for group in grouped}


def _overlaps_encode(grouped: list[tuple[str, ...]], workers: int) -> bool:
    """Whether the encoding overlaps the composite tasks: with more than one worker, when composite runs on its
    own before encode (reading filled/), the encode tasks start once a short first composite part is done and
    make any frame they find missing themselves (:attr:`stereoforge.stages.Job.compose`), while the other parts
    make the later frames (a video's encoding, one task, would otherwise wait for the last composite frame)."""
    return workers > 1 and ("composite",) in grouped and ("encode",) in grouped


def split(p: Plan, group: tuple[str, ...], workers: int, overlap: bool = False) -> list[dict]:
    """The parts a group of stages (:func:`stereoforge.stages.groups`) of the planned shot ``p`` is split into
    for ``workers`` workers, each the keyword arguments of :func:`stereoforge.pipeline.run_group` (``chunk``,
    ``eyes``, ``streams``, ``compose``). ``overlap`` (:func:`_overlaps_encode`): composite's first part is short
    (a 3 ``workers``-th of the shot), the others share the rest, and encode makes missing frames."""
    from . import pipeline
    from .composite import stream_names
    from .stages import Job

    if group == ("encode",):
        return [{"streams": (stream,), "compose": overlap}
                for layout in Job(p).video_layouts() for stream in stream_names(layout)]
    if "inpaint" in group and not pipeline.fills_frame_by_frame(p.spec):
        return [{"eyes": (eye,)} for eye in EYES]
    if overlap and group == ("composite",) and p.count > 1:
        # The encoder reads the frames faster than one worker composes them (at 854x480 about 35 against 50 ms
        # a frame): it must not catch up with the second part, which begins as the first does. A third of a
        # worker's share is first: the encoding then starts early and only just keeps behind.
        first = -(-p.count // (3 * workers))
        return [{"chunk": (1, first)}] + [{"chunk": (first + a, first + b)}
                                          for a, b in frame_ranges(p.count - first, workers - 1)]
    # Eyes are splatted in batches: chunks of whole batches splat the batches one run splats.
    return [{"chunk": chunk}
            for chunk in frame_ranges(p.count, workers, p.spec.batch if "eyes" in group else 1)]


def frame_ranges(count: int, parts: int, step: int = 1) -> list[tuple[int, int]]:
    """Frames 1..``count`` in at most ``parts`` contiguous ranges (first, last) of nearly equal length, each
    starting after a multiple of ``step`` frames."""
    blocks = -(-count // step)
    parts = max(1, min(parts, blocks))
    bounds = [min(count, round(i * blocks / parts) * step) for i in range(parts + 1)]
    return [(a + 1, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _frames(p: Plan, part: dict) -> int:
    """Frames of the shot a part does (a whole eye or video counts the shot's frames)."""
    first, last = part.get("chunk") or (1, p.count)
    return last - first + 1


def _run_part(p: Plan, group: tuple[str, ...], written: tuple[str, ...], part: dict,
              *after, marker: str) -> tuple[list[str] | None, dict]:
    """A Ray task: one part of one group of stages of a planned shot, on the one thread its CPU reserves;
    ``after``: the results of the tasks whose files it reads (Ray starts it once they are done). Returns what the
    group returns, and the CPU seconds the task took (what a loaded machine's clock cannot tell, the work of
    each part), when it ran (``time.time``) and where: ``bench farm`` prints the schedule. It raises
    :class:`Cancelled` between two frames once the file ``marker`` exists (:func:`_stop`; one ``stat`` a frame,
    next to the frame's own files), or at once when it starts after it."""
    cancelled = partial(os.path.exists, marker)
    if cancelled():  # started after the job's cancel: it loads nothing (the pipeline, a model)
        raise Cancelled(f"cancelled before {'+'.join(group)} started")
    from . import pipeline

    start, cpu = time.time(), time.process_time()
    result = pipeline.run_group(p, group, written, cancel=cancelled, threads=1, **part)
    return result, {"cpu": time.process_time() - cpu, "start": start, "end": time.time(),
                    "worker": f"{socket.gethostname()}:{os.getpid()}"}


def _read_from(group: tuple[str, ...], grouped: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The group whose files ``group`` reads (the one that holds its first stage's upstream stage); () when
    that stage does not run now."""
    return next((other for other in grouped if UPSTREAM.get(group[0]) in other), ())


def _followers(group: tuple[str, ...], grouped: list[tuple[str, ...]]) -> int:
    """How many groups follow ``group`` one after the other at most, each reading the one before."""
    return max((1 + _followers(other, grouped) for other in grouped if _read_from(other, grouped) == group),
               default=0)


def _wait(refs: dict[str, list], sizes: dict[str, list[int]], read_from: dict[str, str], progress,
          cancel, marker: str) -> tuple[dict, dict]:
    """The results of each group's tasks (label -> their results, in order) and when each group's last task
    finished (``time.perf_counter``). ``read_from``: the label of the group each reads from ("" for none): a
    group's progress starts when that one is done, and counts the frames of its finished tasks. A cancel, a
    Ctrl-C or a task that fails stops the others (:func:`_stop`, with the run's cancel ``marker``)."""
    import ray

    label_of = {ref: label for label, group_refs in refs.items() for ref in group_refs}
    size_of = {ref: size for label in refs for ref, size in zip(refs[label], sizes[label], strict=True)}
    done = dict.fromkeys(refs, 0)
    results: dict = {}
    finished: dict[str, float] = {}
    pending = list(label_of)

    def start(after: str) -> None:
        """The groups that read ``after``'s files may run now: their progress starts."""
        for label in refs:
            if read_from[label] == after:
                if progress:
                    progress(label, 0, sum(sizes[label]))
                if not refs[label]:  # no tasks (encode, when every layout is frames only)
                    finished[label] = time.perf_counter()
                    start(label)

    start("")
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=_POLL_S)
            for ref in ready:
                label = label_of[ref]
                results[ref] = _result(label, ref)
                done[label] += size_of[ref]
                if progress:
                    progress(label, done[label], sum(sizes[label]))
                if not any(label_of[other] == label for other in pending):
                    finished[label] = time.perf_counter()
                    start(label)
            if pending and cancel and cancel():
                running = dict.fromkeys(label_of[ref] for ref in pending if read_from[label_of[ref]] in ("", *finished))
                raise Cancelled(f"cancelled during {' and '.join(running)}; the frames finished so far are kept")
    except BaseException as exc:
        _stop(pending, marker)
        if isinstance(exc, KeyboardInterrupt):
            _Relay.raise_again()
        raise
    return {label: [results[ref] for ref in group_refs] for label, group_refs in refs.items()}, finished


def _result(stage: str, ref):
    """A task's result; its own error (bad input, a full disk, a cancel) raised here as it was raised there."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, (StereoForgeError, OSError)):
            raise cause from None
        raise StereoForgeError(f"a Ray task of the {stage} stage failed: {type(cause).__name__}: {cause}; run "
                               "the same command again to resume") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        raise StereoForgeError(f"the Ray workers of the {stage} stage died {TASK_RETRIES + 1} times "
                               f"({type(exc).__name__}); finished frames are kept: run the same command again "
                               "to resume") from None


def _cancel_marker(shot_dir: str) -> str:
    """A new run's cancel marker in ``shot_dir`` (the path: :func:`_stop` makes the file). The markers of
    earlier runs, left by a driver killed while it stopped its tasks, are removed (a new run id already keeps
    them from stopping this run's tasks): files named as markers only."""
    for name in os.listdir(shot_dir):
        if _MARKER_NAME.fullmatch(name):
            with suppress(FileNotFoundError):
                os.remove(os.path.join(shot_dir, name))
    return os.path.join(shot_dir, CANCEL_MARKER + secrets.token_hex(8))


def _stop(pending: list, marker: str) -> None:
    """Stop the tasks ``pending`` and wait until they ended: the cancel ``marker`` made, each running task stops
    between two frames (each file written whole or not at all; its :class:`Cancelled` is not a failure of the
    job), one that waits for the files of another ends with it, and one that waits for a worker ends as it
    starts. Ray's own ``ray.cancel`` comes only for a task that did not end within :data:`_STOP_S`: in a driver
    whose worker died and whose task was retried, it can abort the driver (Ray 2.60's "Tried to complete task
    that was not pending"). The marker goes after."""
    import ray

    if not pending:
        return
    try:
        try:
            open(marker, "x").close()
        except OSError:  # no marker can be made (a full disk, say): Ray cancels every task
            running = pending
        else:
            _, running = ray.wait(pending, num_returns=len(pending), timeout=_STOP_S)
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(running, num_returns=len(running), timeout=_STOP_S)
    finally:
        with suppress(FileNotFoundError):
            os.remove(marker)

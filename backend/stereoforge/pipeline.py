"""``convert``: a mono clip and its depth become a stereo shot folder.

Read this module to follow a convert job from start to end:

1. :func:`stereoforge.plan.plan` checks every input and works out the camera, the rig of each frame and the
   depth range, writing nothing;
2. :class:`stereoforge.stages.Job` checks that each stage to run finds its inputs and may write its folders;
3. :func:`stereoforge.shot_record.prepare_shot` clears the stages whose settings changed and writes
   ``shot.json``;
4. each stage's ``run(job)`` (:mod:`stereoforge.stages`: ingest, cloud, eyes, inpaint, composite, encode)
   writes its frames into the shot folder, reading what the stage before wrote; eyes, inpaint and composite
   hand their frames over in memory instead when they run together, and the stages run at once where one reads
   the files of another as they come (:func:`stereoforge.stages.runs`).

A farm splits the same steps: :func:`prepare` does 1 to 3 once, then :func:`run_group` runs a part of a group of
stages (some frames, one eye, one video) in each of several processes (:mod:`stereoforge.farm` on Ray; ``convert
--chunk`` for a farm manager's tasks).

Every file is written under a temporary name and renamed when complete, so a frame that exists is done: a re-run
skips it (resume). Memory does not grow with the clip: only a batch of frames (the inpainter's window) is in
memory at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .errors import InputError, disk_error
from .inpaint import INPAINTERS, PerFrame
from .io.images import remove_stale_temporaries
from .plan import Plan, Progress, plan
from .shot import SHOT_JSON, STAGES
from .shot_record import prepare_shot, read_record
from .spec import ConvertSpec
from .stages import Job, runs
from .stages import run as run_stages


def convert(spec: ConvertSpec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
            log: Callable[[str], None] | None = None, *, chunk: tuple[int, int] | None = None,
            prepare_only: bool = False) -> dict:
    """Run (or resume) a convert job; returns ``{"shot_dir", "videos", "timings", "frames", "size"}``.

    ``chunk``: do only shot frames first..last (1-based, inclusive) of the stages, as one task of a render farm
    does while others do the rest (see :func:`prepare`). ``prepare_only``: ready the shot folder for the
    chunks and run no stage.

    Raises :class:`InputError` for bad input, found before anything in the shot is cleared or written (and
    for a full disk or a folder that may not be written, met later: the frames finished before stay), and
    :class:`Cancelled` when ``cancel()`` turns true (the finished frames stay).
    """
    try:
        return _convert(spec, progress, cancel, log, chunk, prepare_only)
    except OSError as exc:
        raise disk_error(exc) from None


def _convert(spec: ConvertSpec, progress: Progress | None, cancel: Callable[[], bool] | None,
             log: Callable[[str], None] | None, chunk: tuple[int, int] | None, prepare_only: bool) -> dict:
    started = time.perf_counter()
    job, stages = prepare(spec, progress, cancel, log, chunk)
    timings = {"plan": time.perf_counter() - started}
    done = {} if prepare_only else runs(job, stages)
    timings.update({label: seconds for label, (seconds, _) in done.items()})
    return result_of(job.plan, done["encode"][1] if "encode" in done else [], timings)


def result_of(p: Plan, videos: list[str], timings: dict[str, float]) -> dict:
    """What a convert job returns."""
    return {"shot_dir": p.shot_dir, "videos": videos, "timings": timings, "frames": p.count,
            "size": (p.intrinsics.width, p.intrinsics.height)}


def prepare(spec: ConvertSpec, progress: Progress | None, cancel: Callable[[], bool] | None,
            log: Callable[[str], None] | None, chunk: tuple[int, int] | None = None) -> tuple[Job, tuple[str, ...]]:
    """Plan a job, check it, and ready the shot folder for the stages it runs: remove what killed runs left
    half-written, clear the stages whose settings changed and write shot.json. Returns the job and its stages,
    in order.

    With ``chunk`` (a farm's task that does some frames while other tasks do the rest of the same shot), the
    shot folder must already be ready for these settings (a run with ``prepare_only`` did it): a chunk never
    clears a stage, which other chunks may be writing, nor writes shot.json; it refuses instead.
    """
    log = log or (lambda message: None)
    job = Job(plan(spec, progress, cancel, log), progress or (lambda stage, done, total: None),
              cancel or (lambda: False), log, chunk=chunk)
    stages = tuple(st for st in STAGES if st in (spec.stages or STAGES) and (st != "cloud" or spec.cloud))
    if chunk is not None:
        _check_chunk(job.plan, stages)
    job.check_stages(stages)
    if os.path.isdir(job.dir):
        # Only the temporaries of writers that no longer run: those of other chunks at work stay.
        for path in remove_stale_temporaries(job.dir):
            job.log(f"removed '{path}', left half-written by a run that was stopped")
    if chunk is None:
        prepare_shot(job.plan, stages, job.log)
    return job, stages


def run_group(p: Plan, group: tuple[str, ...], written: tuple[str, ...], progress: Progress | None = None,
              cancel: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
              **part) -> list[str] | None:
    """Run one group of stages (:func:`stereoforge.stages.groups`) of a planned shot whose folder is ready
    (:func:`prepare`), or a part of it: ``chunk``, ``eyes`` or ``streams``, on ``threads`` (see
    :class:`~stereoforge.stages.Job`), writing the intermediate folders ``written`` names. What a farm's task
    runs; returns the videos encode wrote."""
    job = Job(p, progress or (lambda stage, done, total: None), cancel or (lambda: False),
              log or (lambda message: None), **part)
    try:
        return run_stages(job, group, written)
    except OSError as exc:
        raise disk_error(exc) from None


def fills_frame_by_frame(spec: ConvertSpec) -> bool:
    """Whether the inpaint stage may be split by frames: its inpainter fills each frame on its own (telea,
    none). The default one carries each frame's fill to the next, and a model fills chunks of frames
    cross-faded into each other: those fill each eye in order, from its first frame."""
    return spec.inpaint_model is None and isinstance(INPAINTERS[spec.inpaint](None), PerFrame)


def _check_chunk(p: Plan, stages: tuple[str, ...]) -> None:
    """A chunk runs only stages that split by frames, and finds the shot ready for its settings."""
    if "encode" in stages:
        raise InputError("--chunk: the encode stage writes whole videos, so it cannot be split by frames; leave "
                         "it out of the chunks (e.g. --stages ingest,cloud,eyes) and end with the same command "
                         "without --chunk, which encodes and skips what the chunks did")
    if "inpaint" in stages and not fills_frame_by_frame(p.spec):
        how = f"the {p.spec.inpaint_model} model" if p.spec.inpaint_model else f"--inpaint {p.spec.inpaint}"
        raise InputError(f"--chunk: {how} fills each eye frame after frame from its first, so the inpaint "
                         "stage cannot be split by frames; leave it out of the chunks and run it once without "
                         "--chunk (--stages inpaint, or the final command), or use --inpaint telea")
    recorded = (read_record(os.path.join(p.shot_dir, SHOT_JSON)) or {}).get("stages", {})
    prints = p.fingerprints()
    for stage in stages:
        if recorded.get(stage) != prints[stage]:
            raise InputError(f"--chunk: '{p.shot_dir}' is not prepared for these settings of the '{stage}' "
                             "stage; run the same command once with --prepare instead of --chunk before the "
                             "chunks (a chunk never clears a stage or writes shot.json: other chunks may be "
                             "writing the shot)")

"""``convert``: a mono clip and its depth become a stereo shot folder.

Read this module to follow a convert job from start to end:

1. :func:`stereoforge.plan.plan` checks every input and works out the camera, the rig of each frame and the
   depth range, writing nothing;
2. :class:`stereoforge.stages.Job` checks that each stage to run finds its inputs and may write its folders;
3. :func:`stereoforge.shot_record.prepare_shot` clears the stages whose settings changed and writes
   ``shot.json``;
4. each stage's ``run(job)`` (:mod:`stereoforge.stages`: ingest, cloud, eyes, inpaint, composite, encode)
   writes its frames into the shot folder, reading what the stage before wrote; eyes, inpaint and composite
   hand their frames over in memory instead when they run together (:func:`stereoforge.stages.runs`).

Every file is written under a temporary name and renamed when complete, so a frame that exists is done: a re-run
skips it (resume). Memory does not grow with the clip: only a batch of frames (the inpainter's window) is in
memory at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .errors import disk_error
from .io.images import remove_stale_temporaries
from .plan import Progress, plan
from .shot import STAGES
from .shot_record import prepare_shot
from .spec import ConvertSpec
from .stages import Job, runs


def convert(spec: ConvertSpec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
            log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) a convert job; returns ``{"shot_dir", "videos", "timings", "frames", "size"}``.

    Raises :class:`InputError` for bad input, found before anything in the shot is cleared or written (and
    for a full disk or a folder that may not be written, met later: the frames finished before stay), and
    :class:`Cancelled` when ``cancel()`` turns true (the finished frames stay).
    """
    try:
        return _convert(spec, progress, cancel, log)
    except OSError as exc:
        raise disk_error(exc) from None


def _convert(spec: ConvertSpec, progress: Progress | None, cancel: Callable[[], bool] | None,
             log: Callable[[str], None] | None) -> dict:
    started = time.perf_counter()
    log = log or (lambda message: None)
    job = Job(plan(spec, progress, cancel, log), progress or (lambda stage, done, total: None),
              cancel or (lambda: False), log)
    stages = tuple(st for st in STAGES if st in (spec.stages or STAGES) and (st != "cloud" or spec.cloud))
    job.check_stages(stages)
    if os.path.isdir(job.dir):
        for path in remove_stale_temporaries(job.dir):
            job.log(f"removed '{path}', left half-written by a run that was stopped")
    prepare_shot(job.plan, stages, job.log)
    timings = {"plan": time.perf_counter() - started}
    videos: list[str] = []
    for label, run in runs(job, stages):
        t0 = time.perf_counter()
        result = run()
        if label == "encode":
            videos = result
        timings[label] = time.perf_counter() - t0
    return {"shot_dir": job.dir, "videos": videos, "timings": timings, "frames": job.plan.count,
            "size": (job.plan.intrinsics.width, job.plan.intrinsics.height)}

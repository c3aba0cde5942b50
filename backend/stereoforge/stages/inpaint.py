"""``inpaint``: each eye's dropout filled, ``filled/{left,right}/000001.png``, by one of the weight-free
inpainters (:mod:`stereoforge.inpaint`) or, with ``--inpaint-model``, a diffusers model
(:mod:`stereoforge.models.inpaint`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..inpaint import INPAINTERS
from ..io.images import write_png
from .job import Job


def run(job: Job) -> None:
    """Fill the frames of ``job`` not filled yet, in its eyes (both, unless a farm's task does one)."""
    if job.plan.spec.inpaint_model is not None:
        from ..models.inpaint import inpaint_stage

        return inpaint_stage(job)
    make = INPAINTERS[job.plan.spec.inpaint]
    job.make_dirs("inpaint")
    # One inpainter per eye, reading its window of frames from eyes/ (whether or not they are filled yet)
    # and, when resuming, the fill of the frame before the first one to do from filled/.
    inpainters = {eye: make(job.clip(eye)) for eye in job.eyes}
    outputs = lambda n: [job.filled_frame(eye, n) for eye in job.eyes]

    def fill(eye: str, n: int) -> None:
        write_png(job.filled_frame(eye, n), inpainters[eye].fill(n))

    # The eyes are independent of each other: each on its own thread (OpenCV and numpy's array work
    # releases the GIL), frame by frame, so a cancel between frames leaves no eye behind the other.
    with ThreadPoolExecutor(len(job.eyes), thread_name_prefix="stereoforge-inpaint") as pool:
        for n in job.frames_to_do("inpaint", outputs):
            for future in [pool.submit(fill, eye, n) for eye in job.eyes]:
                future.result()

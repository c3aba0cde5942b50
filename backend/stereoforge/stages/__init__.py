"""The convert pipeline's stages, one module each, in the order they run (:data:`stereoforge.shot.STAGES`)::

    ingest     source/000001.png, depth/000001.exr      the frames, and depth in metres
    cloud      cloud/000001.usdc ..., cloud.usdc          per-frame RGB-D point clouds (USD)
    eyes       eyes/{left,right}/000001.exr, masks/...    both eyes splatted, alpha = coverage, dropout masks
    inpaint    filled/{left,right}/000001.png             dropout filled
    composite  out/frames/<layout>/<layout>_000001.png   the stereo frames of each layout (.exr: exr-multiview)
    encode     out/video/<shot>_<layout>.mp4              the videos (.mov for ProRes, --container), with stereo
                                                          metadata and the source's audio

Each module has one entry point, ``run(job)``: it reads what the stage before wrote into the shot folder and
writes its own frames, skipping those that exist (every file is written under a temporary name and renamed
when complete, so a frame that exists is done). :data:`RUN` maps each stage's name to it; a farm runner calls
the stages through it, one at a time, with a :class:`Job`.

``convert`` runs them through :func:`runs`: eyes, inpaint and composite, when they run in one process, hand
their frames over in memory and write eyes/, masks/ and filled/ only where asked (``--keep``) or where a stage
that reads them does not run now (:data:`stereoforge.shot.INTERMEDIATES`); the other files are the same.
"""

from __future__ import annotations

from collections.abc import Callable

from ..shot import INTERMEDIATES, STAGES
from . import cloud, composite, encode, eyes, ingest, inpaint
from .job import Job
from .writes import Writes

_MODULES = {module.__name__.rpartition(".")[2]: module for module in (ingest, cloud, eyes, inpaint, composite, encode)}

#: Stage name -> its ``run(job)``, in the order the stages run. (``encode`` returns the videos' paths.)
RUN: dict[str, Callable[[Job], object]] = {stage: _MODULES[stage].run for stage in STAGES}
#: The stages that may hand their frames over in memory, in order.
IN_MEMORY = ("eyes", "inpaint", "composite")


def written(job: Job, stages: tuple[str, ...]) -> tuple[str, ...]:
    """The intermediate folders (:data:`~stereoforge.shot.INTERMEDIATES`) that a run of ``stages`` writes: those
    kept (``--keep``), those that a stage not run now reads, and all of them for an inpainting model (which
    reads the eyes from the files)."""
    spec = job.plan.spec
    return tuple(folder for folder, readers in INTERMEDIATES.items()
                 if folder in (spec.keep or ()) or spec.inpaint_model is not None
                 or not set(readers) <= set(stages))


def runs(job: Job, stages: tuple[str, ...]) -> list[tuple[str, Callable[[], object]]]:
    """How a run of ``stages`` (in order) goes: ``(label, call)`` pairs. Each stage runs on its own, except
    that eyes, inpaint and composite that run together (one after the other, without an inpainting model) run
    as one, labelled ``eyes+inpaint+composite`` (or two of them), handing their frames over in memory."""
    together = [] if job.plan.spec.inpaint_model is not None else [st for st in IN_MEMORY if st in stages]
    if together and together != list(IN_MEMORY[IN_MEMORY.index(together[0]):][:len(together)]):
        together = []  # not one after the other (eyes and composite without inpaint): each on its own
    if len(together) < 2:
        together = []
    label = "+".join(together)
    plan: list[tuple[str, Callable[[], object]]] = []
    for stage in stages:
        if stage not in together:
            plan.append((stage, lambda stage=stage: RUN[stage](job)))
        elif stage == together[0]:
            plan.append((label, lambda: _together(job, tuple(together), written(job, stages), label)))
    return plan


def _together(job: Job, together: tuple[str, ...], written: tuple[str, ...], label: str) -> None:
    """Run eyes + inpaint, inpaint + composite, or all three, frames handed over in memory."""
    with eyes.EyeFrames(job, write=tuple(f for f in ("eyes", "masks") if f in written)) as frames:
        in_memory = frames if "eyes" in together else None
        if "composite" not in together:
            return inpaint.run(job, in_memory)
        with Writes() as writes, inpaint.Fills(job, writes, in_memory, keep="filled" in written) as fills:
            composite.run(job, fills, label)


__all__ = ["RUN", "Job", "runs", "written"]

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
when complete, so a frame that exists is done). :data:`RUN` maps each stage's name to it.

:func:`groups` decides which stages run together, in one process and in a farm's tasks, and :func:`run` runs a
group: eyes, inpaint and composite, when they run in one group, hand their frames over in memory and write
eyes/, masks/ and filled/ only where asked (``--keep``) or where a stage that reads them does not run now or
runs in another group (:func:`written`); the other files are the same. ``convert`` runs the groups through
:func:`runs`, at once where one reads the files of another as they come (:mod:`.overlap`: the point clouds
and the eyes from ingest's frames, the videos from the composed frames); a farm's task runs one group on its
part of the shot (:func:`stereoforge.pipeline.run_group`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..composite import MULTIVIEW_EXR
from ..shot import INTERMEDIATES, STAGES, UPSTREAM
from . import cloud, composite, encode, eyes, ingest, inpaint, overlap
from .job import Job
from .writes import Writes

_MODULES = {module.__name__.rpartition(".")[2]: module for module in (ingest, cloud, eyes, inpaint, composite, encode)}

#: Stage name -> its ``run(job)``, in the order the stages run. (``encode`` returns the videos' paths.)
RUN: dict[str, Callable[[Job], object]] = {stage: _MODULES[stage].run for stage in STAGES}
#: The stages that may hand their frames over in memory, in order.
IN_MEMORY = ("eyes", "inpaint", "composite")


def groups(job: Job, stages: tuple[str, ...], by_eye: bool = False) -> list[tuple[str, ...]]:
    """How a run of ``stages`` (in order) goes: each stage on its own, except that eyes, inpaint and composite
    that run one after the other (without an inpainting model, which reads the eyes from the files) run as one
    group, handing their frames over in memory. ``by_eye``: the inpainting runs one eye at a time (a farm's task
    per eye, for an inpainter that carries each fill to the next frame), so composite, which takes both eyes,
    runs on its own after it."""
    together = [] if job.plan.spec.inpaint_model is not None else [st for st in IN_MEMORY if st in stages]
    if together and together != list(IN_MEMORY[IN_MEMORY.index(together[0]):][:len(together)]):
        together = []  # not one after the other (eyes and composite without inpaint): each on its own
    if by_eye and "inpaint" in together:
        together = together[:together.index("inpaint") + 1]
    if len(together) < 2:
        together = []
    return [tuple(together) if together and stage == together[0] else (stage,)
            for stage in stages if stage not in together[1:]]


def written(job: Job, stages: tuple[str, ...], grouped: list[tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """The intermediate folders (:data:`~stereoforge.shot.INTERMEDIATES`) that a run of ``stages``, in
    ``grouped`` (:func:`groups`; by default as one process runs them), writes: those kept (``--keep``), those
    that a stage not run now reads, those that a stage of another group than their writer's reads, and all of
    them for an inpainting model (which reads the eyes from the files)."""
    spec = job.plan.spec
    grouped = groups(job, stages) if grouped is None else grouped

    def handed_over(folder: str) -> bool:
        """Whether the stages run now that read ``folder`` run in the group of the stage that writes it (the
        composite stage reads masks/ for exr-multiview only), or that stage does not run now."""
        writer = UPSTREAM[INTERMEDIATES[folder][0]]
        readers = {st for st in INTERMEDIATES[folder] if st in stages and (
            folder != "masks" or st != "composite" or MULTIVIEW_EXR in spec.layouts)}
        return writer not in stages or any({writer, *readers} <= set(group) for group in grouped)

    return tuple(folder for folder, readers in INTERMEDIATES.items()
                 if folder in (spec.keep or ()) or spec.inpaint_model is not None
                 or not set(readers) <= set(stages) or not handed_over(folder))


def run(job: Job, group: tuple[str, ...], written: tuple[str, ...]) -> object:
    """Run one group of stages (:func:`groups`) of ``job``, writing the intermediate folders ``written`` asks
    for; returns what the stage returns (encode: the videos' paths)."""
    job.limit_threads()
    if len(group) == 1:
        return RUN[group[0]](job)
    return _together(job, group, written, "+".join(group))


def runs(job: Job, stages: tuple[str, ...]) -> dict[str, tuple[float, object]]:
    """Run ``stages`` (in order) in one process, their groups (:func:`groups`) at once where one may read the
    files of another as they come (:mod:`.overlap`). Returns, for each group labelled with its stages
    (``eyes+inpaint+composite``), its seconds (the groups' seconds overlap) and what it returned (encode: the
    videos' paths)."""
    grouped = groups(job, stages)
    to_write = written(job, stages, grouped)
    return overlap.run_all(job, grouped, lambda group_job, group: run(group_job, group, to_write))


def _together(job: Job, together: tuple[str, ...], written: tuple[str, ...], label: str) -> None:
    """Run eyes + inpaint, inpaint + composite, or all three, frames handed over in memory."""
    with eyes.EyeFrames(job, write=tuple(f for f in ("eyes", "masks") if f in written)) as frames:
        in_memory = frames if "eyes" in together else None
        if "composite" not in together:
            return inpaint.run(job, in_memory)
        with Writes(job.writers) as writes, inpaint.Fills(job, writes, in_memory, keep="filled" in written) as fills:
            composite.run(job, fills, label)


__all__ = ["RUN", "Job", "groups", "run", "runs", "written"]

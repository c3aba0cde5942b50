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
when complete, so a frame that exists is done). :data:`RUN` maps each stage's name to it; ``convert``, the
add-on's backend and a farm runner call the stages through it, with a :class:`Job`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..shot import STAGES
from . import cloud, composite, encode, eyes, ingest, inpaint
from .job import Job

_MODULES = {module.__name__.rpartition(".")[2]: module for module in (ingest, cloud, eyes, inpaint, composite, encode)}

#: Stage name -> its ``run(job)``, in the order the stages run. (``encode`` returns the videos' paths.)
RUN: dict[str, Callable[[Job], object]] = {stage: _MODULES[stage].run for stage in STAGES}

__all__ = ["RUN", "Job"]

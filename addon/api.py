"""Studio scripts: run a shot from Python with no UI context.

    from bl_ext.user_default.stereoforge import run_shot
    result = run_shot(bpy.data.scenes["sh010"], source="PROMPT", prompt="a red fox in the snow",
                      video_model="/models/wan", depth_model="/models/depth-anything", output_dir="/shots/sh010")

It does what ``bpy.ops.stereoforge.run()`` does in background mode (blocking, progress lines on stdout, Ctrl-C
cancels), but needs no operator context, takes the settings as keywords, and returns the backend's result or
raises, so a farm script can act on either.
"""

from __future__ import annotations

import bpy

from . import jobs
from .props import abspath


class ShotError(Exception):
    """The shot could not run; the message says why and what to do (a bad setting, the backend, a cancel)."""


def run_shot(scene=None, stages: tuple[str, ...] = jobs.STAGES, **settings) -> dict:
    """Set ``settings`` (properties of ``scene.stereoforge``, e.g. ``source``, ``prompt``, ``depth_model``,
    ``output_dir``; ``layout`` as a set) on ``scene`` (default: the current scene) and run ``stages`` of the
    pipeline to the end.

    Returns ``{"shot_dir", "videos", ...}``: the result of the last backend stage. Raises :class:`ShotError`;
    an unknown setting raises ``ValueError`` before anything changes.
    """
    scene = scene or bpy.context.scene
    s = scene.stereoforge
    unknown = sorted(name for name in settings if name not in s.bl_rna.properties)
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not StereoForge settings; the names are those of "
                         "scene.stereoforge (see each property's tooltip in the panel)")
    for name, value in settings.items():
        setattr(s, name, set(value) if name == "layout" else value)
    with bpy.context.temp_override(scene=scene):
        context = bpy.context
        try:
            source, depth, backend = jobs.check_inputs(context, stages)
            job = jobs.Job(context, stages, source, depth, backend, interactive=False)
            job.run_blocking()
        except (jobs.StepError, jobs.BackendError, jobs.JobCancelled) as exc:
            raise ShotError(str(exc)) from None
    return {"shot_dir": abspath(s.output_dir), **job.result}

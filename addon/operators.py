"""Operators: Run (every stage), one per stage, Cancel, Check Backend, New Seed, Refresh Models and Load Result.

From a script (``bpy.ops.stereoforge.run()``, execute) a job blocks until it is done and returns
``{'FINISHED'}``; errors come back as an ERROR report, which a script sees as a RuntimeError. From a button
(invoke) in the UI the job runs in a modal operator driven by a timer: the backend's jobs are polled over HTTP,
Blender renders frame by frame as render jobs, progress shows in the panel, the status bar and the cursor, and
Esc or Cancel stops it. The timer is a window-manager event timer rather than ``bpy.app.timers`` because a modal
operator also receives Esc and has the window context that render jobs need.
"""

from __future__ import annotations

import os

import bpy

from . import client, jobs
from .client import BackendError, JobCancelled
from .props import MODEL_KINDS

#: The job running now (one at a time), so that Cancel and unregister can stop it.
_active: jobs.Job | None = None


def active_job() -> jobs.Job | None:
    return _active


def _errors(exc: BaseException) -> tuple[str, str]:
    """(report type, message) for the exceptions a job raises on purpose."""
    if isinstance(exc, JobCancelled):
        return "WARNING", f"StereoForge: {exc}"
    return "ERROR", f"StereoForge: {exc}"


class _JobOperator:
    """Runs ``stages`` of the pipeline on the scene's shot (see the module docstring)."""

    bl_options = {"REGISTER"}
    stages: tuple[str, ...] = ()

    @classmethod
    def poll(cls, context):
        return _active is None

    def _start(self, context, interactive: bool) -> jobs.Job | None:
        try:
            source, depth, backend = jobs.check_inputs(context, self.stages)
        except jobs.StepError as exc:
            self.report({"ERROR"}, f"StereoForge: {exc}")
            return None
        return jobs.Job(context, self.stages, source, depth, backend, interactive)

    def _finish(self, context, job: jobs.Job, exc: BaseException | None) -> set[str]:
        global _active
        _active = None
        state = context.window_manager.stereoforge_job
        for kind, note in job.notes:
            self.report({kind}, f"StereoForge: {note}")
        if exc is not None:
            kind, message = _errors(exc)
            state.message = message
            self.report({kind}, message)
            return {"CANCELLED"}
        videos = job.result.get("videos") or []
        if videos:
            state.video = videos[0]
        state.message = "; ".join([f"{self.bl_label}: done"] + [note for _, note in job.notes] +
                                  ([f"video: {videos[0]}"] if videos else []))
        self.report({"INFO"}, f"StereoForge: {state.message}")
        return {"FINISHED"}

    def execute(self, context):
        global _active
        job = self._start(context, interactive=False)
        if job is None:
            return {"CANCELLED"}
        _active = job
        try:
            job.run_blocking()
        except (jobs.StepError, BackendError, JobCancelled) as exc:
            return self._finish(context, job, exc)
        except BaseException:
            _active = None
            raise
        return self._finish(context, job, None)

    def invoke(self, context, event):
        global _active
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._start(context, interactive=True)
        if job is None:
            return {"CANCELLED"}
        _active = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        _redraw(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = _active
        if job is None:  # unregistered or reset underneath us
            return self._end_modal(context, None, None)
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            for _ in range(50):  # a few quick steps per tick; stop when the job waits
                hint = job.advance()
                if hint in (jobs.DONE, jobs.WAIT):
                    break
        except (jobs.StepError, BackendError, JobCancelled) as exc:
            return self._end_modal(context, job, exc)
        except Exception as exc:  # a bug: end the job cleanly, keep the traceback in the console
            import traceback

            traceback.print_exc()
            return self._end_modal(context, job, jobs.StepError(f"internal error: {exc!r}"))
        context.window_manager.progress_update(int(100 * job.state.factor))
        _redraw(context)
        if hint == jobs.DONE:
            return self._end_modal(context, job, None)
        return {"RUNNING_MODAL"}

    def _end_modal(self, context, job, exc):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _redraw(context)
        if job is None:
            return {"CANCELLED"}
        return self._finish(context, job, exc)


def _redraw(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR", "PROPERTIES"):
                area.tag_redraw()


class STEREOFORGE_OT_run(_JobOperator, bpy.types.Operator):
    """Run the whole pipeline: load, point clouds, stereo camera, eyes, inpainting and composite"""

    bl_idname = "stereoforge.run"
    bl_label = "Run"
    stages = jobs.STAGES


class STEREOFORGE_OT_load(_JobOperator, bpy.types.Operator):
    """Load (or render) the source frames and their depth, and make the per-frame point clouds"""

    bl_idname = "stereoforge.load"
    bl_label = "Load"
    stages = ("load",)


class STEREOFORGE_OT_import_clouds(_JobOperator, bpy.types.Operator):
    """Import the shot's point clouds (cloud.usdc) as one streaming point-cloud object"""

    bl_idname = "stereoforge.import_clouds"
    bl_label = "Import Point Clouds"
    stages = ("import_clouds",)


class STEREOFORGE_OT_setup_camera(_JobOperator, bpy.types.Operator):
    """Make the shot's own camera a stereo camera with the rig (keyed per frame when the rig moves)"""

    bl_idname = "stereoforge.setup_camera"
    bl_label = "Set Up Stereo Camera"
    stages = ("setup_camera",)


class STEREOFORGE_OT_render_eyes(_JobOperator, bpy.types.Operator):
    """Render the left and right eyes of every frame into the shot folder"""

    bl_idname = "stereoforge.render_eyes"
    bl_label = "Render Eyes"
    stages = ("render_eyes",)


class STEREOFORGE_OT_inpaint(_JobOperator, bpy.types.Operator):
    """Fill the dropout of the eyes (the backend)"""

    bl_idname = "stereoforge.inpaint"
    bl_label = "Inpaint"
    stages = ("inpaint",)


class STEREOFORGE_OT_composite(_JobOperator, bpy.types.Operator):
    """Composite the filled eyes into the stereo layouts and encode the videos (the backend)"""

    bl_idname = "stereoforge.composite"
    bl_label = "Composite"
    stages = ("composite",)


class STEREOFORGE_OT_cancel(bpy.types.Operator):
    """Stop the running job: the backend stops and no new frame is rendered; finished frames stay"""

    bl_idname = "stereoforge.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return _active is not None

    def execute(self, context):
        if _active is not None:
            _active.cancel()
        return {"FINISHED"}


class STEREOFORGE_OT_check_backend(bpy.types.Operator):
    """Check that the backend runs, and report its version, devices and models"""

    bl_idname = "stereoforge.check_backend"
    bl_label = "Check Backend"
    bl_options = {"REGISTER"}

    def execute(self, context):
        from . import prefs

        try:
            found = prefs.backend(context).check()
        except BackendError as exc:
            self.report({"ERROR"}, f"StereoForge: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"StereoForge backend: {client.describe(found)}")
        return {"FINISHED"}


class STEREOFORGE_OT_new_seed(bpy.types.Operator):
    """Draw a new random seed: the next run makes a new take (earlier takes stay on disk)"""

    bl_idname = "stereoforge.new_seed"
    bl_label = "New Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        import random

        context.scene.stereoforge.seed = random.randrange(2**31)
        return {"FINISHED"}


class STEREOFORGE_OT_refresh_models(bpy.types.Operator):
    """Ask the backend which models it has, for the model pickers (a Hugging Face id can still be typed)"""

    bl_idname = "stereoforge.refresh_models"
    bl_label = "Refresh Models"
    bl_options = {"REGISTER"}

    def execute(self, context):
        from . import prefs

        try:
            listed = prefs.backend(context).models()
        except BackendError as exc:
            self.report({"ERROR"}, f"StereoForge: {exc}")
            return {"CANCELLED"}
        fill_models(context.window_manager.stereoforge_models, listed)
        counts = ", ".join(f"{len(getattr(context.window_manager.stereoforge_models, kind))} {kind}"
                           for kind in MODEL_KINDS)
        self.report({"INFO"}, f"StereoForge: models: {counts}")
        return {"FINISHED"}


def fill_models(models, listed: dict) -> None:
    """Put the backend's list (``{stage: [model, ...]}``) into the pickers' collections, by kind."""
    for kind, (stage, detail) in MODEL_KINDS.items():
        collection = getattr(models, kind)
        collection.clear()
        for model in listed.get(stage, []):
            if detail is None or model.get("detail") == detail:
                item = collection.add()
                item.name = model["id"]
                item.description = f"{model.get('class_name')}, {model.get('where')}: {model.get('path')}"
    models.listed = True


class STEREOFORGE_OT_load_result(bpy.types.Operator):
    """Load the last stereo video as an image (movie) for review in an Image Editor"""

    bl_idname = "stereoforge.load_result"
    bl_label = "Load Result"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return bool(context.window_manager.stereoforge_job.video)

    def execute(self, context):
        path = context.window_manager.stereoforge_job.video
        if not os.path.exists(path):
            self.report({"ERROR"}, f"StereoForge: '{path}' does not exist any more; run Composite again")
            return {"CANCELLED"}
        image = bpy.data.images.load(path, check_existing=True)
        shown = False
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "IMAGE_EDITOR":
                    area.spaces.active.image = image
                    shown = True
        self.report({"INFO"}, f"StereoForge: loaded '{image.name}'" +
                    ("" if shown else "; open it in an Image Editor"))
        return {"FINISHED"}


CLASSES = (STEREOFORGE_OT_run, STEREOFORGE_OT_load, STEREOFORGE_OT_import_clouds, STEREOFORGE_OT_setup_camera,
           STEREOFORGE_OT_render_eyes, STEREOFORGE_OT_inpaint, STEREOFORGE_OT_composite, STEREOFORGE_OT_cancel,
           STEREOFORGE_OT_check_backend, STEREOFORGE_OT_new_seed, STEREOFORGE_OT_refresh_models,
           STEREOFORGE_OT_load_result)
STAGE_OPERATORS = ("load", "import_clouds", "setup_camera", "render_eyes", "inpaint", "composite")


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    global _active
    if _active is not None:  # disabling the add-on mid-job: stop the backend, keep its frames
        _active.cancel()
        _active.close()
        _active = None
    client.stop_local_backends()  # nothing of the add-on stays behind, its backend process included
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

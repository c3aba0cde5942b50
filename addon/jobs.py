"""Pipeline jobs: the stages the panel's buttons run, as steps that can block or be advanced a bit at a time.

A :class:`Job` is a list of steps; each step is a generator that does a little work per ``next()`` and yields
:data:`WAIT` when it is waiting on something else (a backend job, a render job). In background mode
(``blender -b`` scripts, farms) :meth:`Job.run_blocking` runs the steps to the end, sleeping on ``WAIT``; in the
UI a modal operator calls :meth:`Job.advance` from a timer, so Blender stays responsive, and renders each frame
as a render job. Cancelling asks the backend to stop at its next frame or denoising step (it keeps every
finished frame) and starts no new render. With a video model, the Load stage first generates the take's video.

Every input is checked by :func:`check_inputs` before a job touches the scene or the disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import bpy

from . import client, prefs, render, takes
from . import scene as sflscene
from . import shot as shotlib
from .client import BackendError, JobCancelled
from .props import abspath
from .shot_contract import EXIT_CANCELLED, SHOT_JSON, STAGE_OUTPUTS

#: What :meth:`Job.advance` returns: the job is over / it waits on something else (come back later).
DONE = "done"
WAIT = "wait"

#: The stages a user can run one by one, in pipeline order.
STAGES = ("load", "import_clouds", "setup_camera", "render_eyes", "inpaint", "composite")
STAGE_LABELS = {
    "load": "Load source and depth",
    "import_clouds": "Import point clouds",
    "setup_camera": "Set up stereo camera",
    "render_eyes": "Render eyes",
    "inpaint": "Inpaint",
    "composite": "Composite",
}


class StepError(Exception):
    """A stage could not run; the message says why and what to do."""


def check_inputs(context, stages: tuple[str, ...]) -> tuple[str, str, object]:
    """Check everything ``stages`` need before anything changes; returns ``(source, depth, backend)``.

    ``source``/``depth`` are the paths the backend reads (for the Scene source: where its render goes).
    Raises :class:`StepError` with a message the user can act on.
    """
    s = context.scene.stereoforge
    if not s.output_dir.strip():
        raise StepError("no Output Folder: set where the shot goes (Output > Output Folder)")
    _check_relative_paths(s)
    shot_dir = abspath(s.output_dir)
    if os.path.exists(shot_dir) and not os.path.isdir(shot_dir):
        raise StepError(f"the Output Folder '{shot_dir}' is a file; give a folder")
    _check_writable(shot_dir)
    _check_frame_range(context.scene, s)
    source = depth = ""
    if "load" in stages:
        source, depth = _check_source(context, s, shot_dir)
    needs_backend = {"load", "inpaint", "composite"} & set(stages) or (
        "render_eyes" in stages and s.eye_renderer == "SPLATTER")
    backend = None
    if needs_backend:
        try:
            backend = prefs.backend(context)
            backend.prepare()  # a local backend starts here, once per Blender session
        except BackendError as exc:
            raise StepError(str(exc)) from None
    if "load" not in stages:
        if not os.path.exists(os.path.join(shot_dir, SHOT_JSON)):
            raise StepError(f"'{shot_dir}' holds no shot yet; run 'Load' (or Run) first")
        source, depth = _recorded_inputs(shot_dir)
        if "setup_camera" in stages or ("render_eyes" in stages and s.eye_renderer == "BLENDER"):
            if "import_clouds" not in stages:
                try:
                    sflscene.shot_objects(context.scene, shot_dir)
                except sflscene.SceneError as exc:
                    raise StepError(str(exc)) from None
    if "import_clouds" in stages and "load" not in stages and not os.path.exists(shotlib.cloud_path(shot_dir)):
        raise StepError(f"'{shotlib.cloud_path(shot_dir)}' does not exist; run 'Load' first")
    return source, depth, backend


def _check_relative_paths(s) -> None:
    """``//`` means "beside the .blend file": an unsaved file has no such place."""
    if bpy.data.filepath:
        return
    for name, label in (("output_dir", "Output Folder"), ("source_path", "Source Path"),
                        ("depth_path", "Depth Path")):
        value = getattr(s, name).strip()
        if value.startswith("//"):
            raise StepError(f"the {label} '{value}' is relative to the .blend file, which is not saved yet; save "
                            "the file first or give an absolute path")


def _check_writable(shot_dir: str) -> None:
    """The shot folder (and the Scene source's render beside it) can be made: tried in the nearest folder
    that exists, with a probe that is removed at once (permissions alone do not tell, e.g. for root)."""
    place = shot_dir
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        raise StepError(f"the Output Folder '{shot_dir}' cannot be made: '{place}' is a file; give a folder "
                        "path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".stereoforge-probe-", dir=place))
    except OSError as exc:
        raise StepError(f"the Output Folder '{shot_dir}' cannot be written ({exc.strerror} in '{place}'); "
                        "give a folder you can write to") from None


def _check_frame_range(scene, s) -> None:
    last = s.frame_last or None
    if last is not None and last < s.frame_first:
        raise StepError(f"the frame range {s.frame_first}-{last} is empty; set Last Frame to {s.frame_first} or "
                        "more (0: to the end)")
    if s.source == "SCENE":
        frames = scene_frames(scene, s)
        if not frames or frames[-1] > scene.frame_end:
            raise StepError(f"the frame range {s.frame_first}-{last or 'end'} does not fit the scene's frames "
                            f"{scene.frame_start}-{scene.frame_end} (counted from 1 at its start); set First "
                            "and Last Frame inside it")


def scene_frames(scene, s) -> list[int]:
    """The scene frames the Scene source renders: the panel's range counted from the scene's start as 1."""
    first = scene.frame_start + s.frame_first - 1
    last = scene.frame_end if not s.frame_last else scene.frame_start + s.frame_last - 1
    return list(range(first, last + 1))


def _check_source(context, s, shot_dir: str) -> tuple[str, str]:
    if s.source == "SCENE":
        camera = s.source_camera or context.scene.camera
        if camera is not None and camera.get(sflscene.SHOT_PROP) and s.source_camera is None:
            camera = None
        problem = render.check_scene_camera(context.scene, camera)
        if problem:
            raise StepError(problem)
        return render.scene_source_dirs(shot_dir)
    if s.source == "PROMPT" and not s.prompt.strip():
        raise StepError("no Prompt: say what the video shows (Source > Prompt)")
    if s.source != "PROMPT":
        if not s.source_path.strip():
            raise StepError(f"no Source Path: pick the {s.source.lower()} to convert")
        source = abspath(s.source_path)
        if not os.path.exists(source):
            raise StepError(f"the source '{source}' does not exist; check the Source Path")
    if s.generates():
        if not s.video_model.strip():
            raise StepError("no Video Model: pick a text-to-video model (Source > Video Model; Refresh lists the "
                            "backend's) or type a Hugging Face id")
        source = takes.generated_frames(takes.take_for(shot_dir, s.take_settings()))
    return source, _check_depth(s, source)


def _check_depth(s, source: str) -> str:
    """The depth files to read, or "" when the Depth Model estimates the depth."""
    if not s.depth_path.strip():
        if s.depth_model.strip():
            return ""
        raise StepError(f"the source '{source}' has no depth: set a Depth Path (a depth file, a folder of "
                        "per-frame depth files or an .npy stack) or a Depth Model")
    depth = abspath(s.depth_path)
    if not os.path.exists(depth):
        raise StepError(f"the depth '{depth}' does not exist; check the Depth Path")
    return depth


def _recorded_inputs(shot_dir: str) -> tuple[str, str]:
    """The source and depth of an existing shot, as its shot.json records them (later stages re-send them:
    the backend recognises its own shot by the same options)."""
    try:
        spec = shotlib.read_shot(shot_dir).get("spec", {})
    except ValueError as exc:
        raise StepError(str(exc)) from None
    return spec.get("source", ""), spec.get("depth", "")


class Job:
    """One run of some stages on the scene's shot. Create it only after :func:`check_inputs` passed."""

    def __init__(self, context, stages: tuple[str, ...], source: str, depth: str, backend, interactive: bool):
        self.scene = context.scene
        self.settings = context.scene.stereoforge
        self.state = context.window_manager.stereoforge_job
        self.shot_dir = abspath(self.settings.output_dir)
        self.stages = [st for st in STAGES if st in stages]
        self.source, self.depth, self.backend = source, depth, backend
        self.interactive = interactive
        # The Scene source knows its focal length exactly; later stages must send the backend the same one.
        self.focal_px: float | None = None
        if self.settings.source == "SCENE" and "load" not in self.stages:
            self.focal_px = shotlib.read_shot(self.shot_dir).get("spec", {}).get("focal_px")
        #: ``(report kind, line)`` the job has to say besides "done" (the Scene source's engine).
        self.notes: list[tuple[str, str]] = []
        # A video model makes the frames first: into this take (the source is its generated/ folder).
        self.take = os.path.dirname(source) if "load" in self.stages and self.settings.generates() else None
        self.models = prefs.model_options(context) if backend is not None else {}
        self.cancelled = False
        self.child: client.Job | None = None
        self._printed: tuple | None = None
        self.result: dict = {}
        self._steps = self._all_steps()
        self.state.running = True
        self.state.cancel_requested = False
        self.state.message = ""
        self.state.shot_dir = self.shot_dir
        self.state.step_count = len(self.stages)

    # -- driving --------------------------------------------------------------------------------------------

    def _all_steps(self) -> Iterator[str | None]:
        for index, stage in enumerate(self.stages):
            self.state.step = STAGE_LABELS[stage]
            self.state.step_index = index + 1
            self.progress(STAGE_LABELS[stage], 0, 0)
            yield from getattr(self, "_" + stage)()

    def advance(self) -> str | None:
        """Do a little work; returns DONE when the job is over, WAIT when it waits on the backend or a render.

        Raises StepError, BackendError or JobCancelled.
        """
        if self.state.cancel_requested and not self.cancelled:
            self.cancel()
        try:
            return next(self._steps)
        except StopIteration:
            self.close()
            return DONE
        except BaseException:
            self.close()
            raise

    def run_blocking(self) -> None:
        """Run to the end (background mode). Ctrl-C cancels: the backend stops at its next frame or denoising
        step, Blender after the frame it renders; finished frames stay. A second Ctrl-C stops at once."""
        try:
            with _ctrl_c_cancels(self):
                while (hint := self.advance()) != DONE:
                    if hint == WAIT:
                        time.sleep(0.05)
        except KeyboardInterrupt:
            child = self.child
            self.cancel()
            if child is not None:
                child.stop()
            self.close()
            raise JobCancelled(client.CANCELLED_MESSAGE) from None

    def cancel(self) -> None:
        self.cancelled = True
        self.state.cancel_requested = True
        if self.child is not None:
            self.child.cancel()

    def close(self) -> None:
        self._steps.close()
        if self.child is not None and self.child.running:
            self.child.cancel()
        self.state.running = False

    def progress(self, stage: str, done: int, total: int) -> None:
        self.state.stage, self.state.done, self.state.total = stage, done, total
        line = (self.state.step_index, stage, done, total)
        if not self.interactive and line != self._printed:  # background mode: a log line per step and frame
            self._printed = line
            count = f" {done}/{total}" if total else ""
            print(f"StereoForge [{self.state.step_index}/{self.state.step_count}] {self.state.step}: {stage}{count}",
                  flush=True)

    def _check_cancel(self) -> None:
        if self.cancelled:
            raise JobCancelled("cancelled; the frames finished so far are kept in "
                               f"'{self.shot_dir}', run again to resume")

    # -- talking to the backend -----------------------------------------------------------------------------

    def _spec(self, stages: list[str]) -> dict:
        spec = self.settings.convert_spec(self.source, self.depth, focal_px=self.focal_px,
                                          first_frame=self._first_frame(), models=self.models)
        return {**spec, "stages": stages}

    def _backend(self, stages: list[str]) -> Iterator[str | None]:
        yield from self._run_backend(self._spec(stages), "convert")
        meta = self._meta()
        self.state.parallax = shotlib.parallax_summary(meta)
        self.state.parallax_frames = json.dumps([self._first_frame(), shotlib.parallax_frames(meta)])

    def _run_backend(self, spec: dict, kind: str) -> Iterator[str | None]:
        while not self.backend.ready():  # a local backend's first start: seconds, the UI keeps drawing
            self.progress("starting the backend", 0, 0)
            self._check_cancel()
            yield WAIT
        self._check_cancel()
        self.child = self.backend.start(spec, kind)
        while True:
            for event in self.child.poll():
                if event.get("event") == "notice":  # e.g. the rig narrowed for comfort: the user should know
                    message = str(event.get("message", ""))
                    self.notes.append(("WARNING" if message.startswith("warning") else "INFO", message))
                    continue
                self.progress(event.get("stage", ""), int(event.get("done", 0)), int(event.get("total", 0)))
            if self.child.result is not None:
                break
            if self.cancelled:
                self.child.cancel()
            yield WAIT
        self.result = self.child.result
        self.child = None

    def _generate(self) -> Iterator[str | None]:
        """The take's video, unless it is already on disk (the backend resumes a finished take at once)."""
        takes.write_record(self.take, self.settings.take_settings())
        yield from self._run_backend(self.settings.generate_spec(self.take, self.models), "generate")

    # -- the stages -----------------------------------------------------------------------------------------

    def _load(self):
        if self.settings.source == "SCENE":
            yield from self._render_scene_source()
        if self.take is not None:
            yield from self._generate()
        yield from self._backend(["ingest", "cloud"])

    def _first_frame(self) -> int:
        """The scene frame that shows shot frame 1: the scene's first frame (for the Scene source, the first
        frame it rendered)."""
        if self.settings.source == "SCENE":
            return scene_frames(self.scene, self.settings)[0]
        return self.scene.frame_start

    def _import_clouds(self):
        self._check_cancel()
        meta = self._meta()
        camera_world = None
        if self.settings.source == "SCENE":
            frames = scene_frames(self.scene, self.settings)
            camera_world = _camera_path(self.scene, self._source_camera(), frames)
        try:
            sflscene.import_clouds(bpy.context, self.shot_dir, meta, self._first_frame(), camera_world)
        except sflscene.SceneError as exc:
            raise StepError(str(exc)) from None
        yield

    def _setup_camera(self):
        self._check_cancel()
        meta, objects = self._meta(), self._objects()
        sflscene.setup_camera(objects["camera"], meta, _shot_first_frame(objects))
        yield

    def _render_eyes(self):
        if self.settings.eye_renderer == "SPLATTER":
            if shotlib.has_blender_eyes(self.shot_dir):  # the backend would take Blender's eyes for its own
                shotlib.clear_eyes(self.shot_dir)
            yield from self._backend(["eyes"])
            return
        meta, objects = self._meta(), self._objects()
        first = _shot_first_frame(objects)
        camera = objects["camera"]
        sflscene.setup_camera(camera, meta, first)
        samples = self.settings.samples
        shotlib.prepare_blender_eyes(self.shot_dir, shotlib.eyes_record(meta, _render_record(samples, camera)))
        count = int(meta["frames"])
        frames = shotlib.missing_frames(self.shot_dir, count)
        coll = sflscene.shot_collection(self.scene, self.shot_dir)
        with sflscene.eye_scene(coll, camera, meta, first, samples) as eyes:
            yield from self._render_frames(
                "render eyes", frames, count - len(frames), count,
                begin=lambda n: render.begin_eye_frame(eyes, self.shot_dir, n, first),
                finish=lambda n: render.finish_eye_frame(self.shot_dir, n))

    def _inpaint(self):
        yield from self._backend(["inpaint"])

    def _composite(self):
        yield from self._backend(["composite", "encode"])

    # -- rendering ------------------------------------------------------------------------------------------

    def _render_frames(self, label: str, frames: list[int], done: int, total: int,
                       begin: Callable[[int], dict], finish: Callable[[int], bool]):
        self.progress(label, done, total)
        for n in frames:
            self._check_cancel()
            kwargs = begin(n)
            scene = bpy.data.scenes[kwargs["scene"]]
            # Rendered as the context's scene: rendering another scene by name streams the point cache at the
            # context scene's frame, not at the rendered scene's (found in Blender 4.5).
            with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
                if self.interactive:
                    started = bpy.ops.render.render("INVOKE_DEFAULT", **kwargs)
                    if not {"RUNNING_MODAL", "FINISHED"} & started:
                        raise StepError("Blender could not start the render (is another render running?)")
                else:
                    bpy.ops.render.render(**kwargs)
            while self.interactive and bpy.app.is_job_running("RENDER"):
                yield WAIT
            if not finish(n):
                if self.interactive or self.cancelled:
                    self.cancel()
                    self._check_cancel()
                raise StepError(f"Blender's render of frame {n} wrote no output; check the console")
            done += 1
            self.progress(label, done, total)
            yield

    def _render_scene_source(self):
        """The Scene source: the source camera's frames (16-bit PNG through the scene's colour management) and
        its Z pass as depth in metres, beside the shot folder. Re-rendered whole each time (the scene may have
        changed), so what the backend made from an earlier render is cleared."""
        scene, camera = self.scene, self._source_camera()
        color_dir, depth_dir = self.source, self.depth
        for folder in (color_dir, depth_dir, os.path.join(depth_dir, ".render")):
            os.makedirs(folder, exist_ok=True)
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    os.remove(path)
        _clear_ingest(self.shot_dir)
        self.focal_px = render.scene_focal_px(scene, camera)
        shots = {c for c in scene.collection.children_recursive if c.get(sflscene.SHOT_PROP)}
        engine, samples = self.settings.source_engine, self.settings.source_samples
        note = render.source_engine_note(engine, samples, sflscene.has_gpu())
        if note:
            self.notes.append(note)
        copy = render.make_source_scene(scene, camera, shots, engine, samples)
        try:
            frames = scene_frames(scene, self.settings)
            yield from self._render_frames(
                "render scene", frames, 0, len(frames),
                begin=lambda f: render.begin_scene_frame(copy, color_dir, depth_dir, f),
                finish=lambda f: render.finish_scene_frame(color_dir, depth_dir, f))
        finally:
            bpy.data.scenes.remove(copy)
            scratch = os.path.join(depth_dir, ".render")
            if os.path.isdir(scratch) and not os.listdir(scratch):
                os.rmdir(scratch)

    # -- helpers --------------------------------------------------------------------------------------------

    def _meta(self) -> dict:
        try:
            return shotlib.read_shot(self.shot_dir)
        except ValueError as exc:
            raise StepError(str(exc)) from None

    def _objects(self) -> dict:
        try:
            return sflscene.shot_objects(self.scene, self.shot_dir)
        except sflscene.SceneError as exc:
            raise StepError(str(exc)) from None

    def _source_camera(self):
        camera = self.settings.source_camera or self.scene.camera
        problem = render.check_scene_camera(self.scene, camera)
        if problem:
            raise StepError(problem)
        return camera


@contextlib.contextmanager
def _ctrl_c_cancels(job: Job):
    """While ``job`` runs blocking: the first Ctrl-C (SIGINT) cancels it, a second one stops the process.

    Blender's own handler would only flag a break that the next frame's render ignores, and Python's
    KeyboardInterrupt would end the run without stopping the backend's job.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def cancel(signum, frame):
        if job.cancelled:
            raise KeyboardInterrupt
        print("StereoForge: Ctrl-C: stopping after the current frame (press it again to stop now)", flush=True)
        job.cancel()

    previous = signal.signal(signal.SIGINT, cancel)
    second = _SecondCtrlC() if os.name == "posix" else None
    try:
        yield
    finally:
        if second is not None:
            second.close()
        signal.signal(signal.SIGINT, previous)


class _SecondCtrlC:
    """A thread woken by SIGINT itself (``signal.set_wakeup_fd``) that ends the process at the second Ctrl-C.

    While Cycles renders a frame, Python's main thread is inside the render and runs no signal handler until the
    frame is done; this thread runs anyway. It stops the local backend and exits with 130: the frame being
    rendered is lost, the finished ones stay (each is written under a temporary name, then renamed).
    """

    def __init__(self):
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        self.previous = signal.set_wakeup_fd(self.write)
        threading.Thread(target=self._watch, name="stereoforge-ctrl-c", daemon=True).start()

    def _watch(self) -> None:
        count = 0
        while data := os.read(self.read, 64):
            count += data.count(signal.SIGINT)
            if count >= 2:
                print("StereoForge: stopped; the frames finished so far are kept", flush=True)
                client.stop_local_backends()
                os._exit(EXIT_CANCELLED)
        os.close(self.read)

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous)
        os.close(self.write)  # the watcher reads the end and leaves


def _camera_path(scene, camera, frames: list[int]) -> Callable[[int], object]:
    """``frame -> world matrix`` of ``camera`` at each of ``frames``, sampled now (frame_set evaluates its
    animation; the scene's current frame comes back afterwards)."""
    current, subframe = scene.frame_current, scene.frame_subframe
    matrices = {}
    try:
        for frame in frames:
            scene.frame_set(frame)
            matrices[frame] = camera.matrix_world.copy()
    finally:
        scene.frame_set(current, subframe=subframe)
    return matrices.__getitem__


def _shot_first_frame(objects: dict) -> int:
    return int(objects["cloud"].get(sflscene.FIRST_FRAME_PROP, 1))


def _render_record(samples: int, camera) -> dict:
    data, stereo = camera.data, camera.data.stereo
    return {"samples": samples, "filter_width": 1.0, "lens": round(data.lens, 6),
            "sensor_width": round(data.sensor_width, 6), "stereo": [stereo.convergence_mode, stereo.pivot]}


def _clear_ingest(shot_dir: str) -> None:
    """Remove what the backend made from an earlier Scene source render: it knows files by name, not content."""
    import shutil

    for rel in STAGE_OUTPUTS["ingest"] + STAGE_OUTPUTS["cloud"]:
        path = os.path.join(shot_dir, rel)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    shotlib.clear_eyes(shot_dir)

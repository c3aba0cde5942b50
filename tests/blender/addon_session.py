"""One Blender session for tests/test_addon.py: install the add-on zip into a fresh user folder and run a scenario.

Run with a Python that has ``bpy`` (4.5), with ``BLENDER_USER_RESOURCES`` pointing at an empty folder::

    python tests/blender/addon_session.py SCENARIO ZIP ARGS_JSON

It prints Blender's own log, then one line ``RESULT: {...}`` (JSON) for the test to read. ``bpy`` state is global
to the process, so every scenario runs in its own process.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import bpy
from mathutils import Vector

MODULE = "bl_ext.user_default.stereoforge"
OPERATORS = ("run", "load", "import_clouds", "setup_camera", "render_eyes", "inpaint", "composite", "cancel",
             "check_backend", "load_result")
PANELS = ("STEREOFORGE_PT_main", "STEREOFORGE_PT_source", "STEREOFORGE_PT_depth", "STEREOFORGE_PT_rig",
          "STEREOFORGE_PT_inpaint", "STEREOFORGE_PT_output")


def install(zip_path: str) -> None:
    result = bpy.ops.extensions.package_install_files(repo="user_default", filepath=zip_path,
                                                      enable_on_install=True)
    assert result == {"FINISHED"}, result


def operator_exists(name: str) -> bool:
    try:
        getattr(bpy.ops.stereoforge, name).get_rna_type()
        return True
    except (KeyError, AttributeError):
        return False


def registered() -> dict:
    """What of the add-on is registered in Blender right now."""
    from bpy.types import STATUSBAR_HT_header

    draw_funcs = getattr(STATUSBAR_HT_header.draw, "_draw_funcs", [])
    return {
        "enabled": MODULE in bpy.context.preferences.addons,
        "operators": [name for name in OPERATORS if operator_exists(name)],
        "panels": {name: getattr(getattr(bpy.types, name, None), "bl_category", None) for name in PANELS
                   if hasattr(bpy.types, name)},
        "panel_space": getattr(getattr(bpy.types, "STEREOFORGE_PT_main", None), "bl_space_type", None),
        "panel_region": getattr(getattr(bpy.types, "STEREOFORGE_PT_main", None), "bl_region_type", None),
        "scene_property": hasattr(bpy.types.Scene, "stereoforge"),
        "wm_property": hasattr(bpy.types.WindowManager, "stereoforge_job"),
        "types": sorted(name for name in dir(bpy.types) if name.upper().startswith("STEREOFORGE")),
        "status_bar": sum(1 for f in draw_funcs if getattr(f, "__module__", "").startswith(MODULE)),
    }


def scene_snapshot() -> dict:
    """Everything in the file a bad input must leave as it was."""
    scene = bpy.context.scene
    r = scene.render
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "collections": sorted(c.name for c in bpy.data.collections),
        "materials": sorted(m.name for m in bpy.data.materials),
        "cache_files": sorted(c.name for c in bpy.data.cache_files),
        "scenes": sorted(s.name for s in bpy.data.scenes),
        "view_layers": sorted(v.name for v in scene.view_layers),
        "camera": scene.camera.name if scene.camera else None,
        "render": [r.engine, r.use_multiview, r.resolution_x, r.resolution_y, r.film_transparent,
                   scene.frame_start, scene.frame_end, scene.view_settings.view_transform],
        "source_camera": scene.stereoforge.source_camera.name if scene.stereoforge.source_camera else None,
    }


def configure(settings: dict) -> None:
    s = bpy.context.scene.stereoforge
    for name, value in settings.items():
        setattr(s, name, set(value) if name == "layout" else value)


def shot_state(shot_dir: str) -> dict:
    """The imported shot as the test checks it: objects, modifier, camera, multiview, points per frame."""
    scene = bpy.context.scene
    cloud = [o for o in scene.objects if o.type == "POINTCLOUD" and o.get("stereoforge_shot") == shot_dir]
    cam = next((o for o in scene.objects if o.type == "CAMERA" and o.get("stereoforge_shot") == shot_dir), None)
    out = {"clouds": [o.name for o in cloud], "camera": cam.name if cam else None,
           "scene_camera": scene.camera.name if scene.camera else None}
    if cloud:
        obj = cloud[0]
        out["modifiers"] = [m.type for m in obj.modifiers]
        out["material"] = obj.data.materials[0].name if obj.data.materials else None
        counts, colours = [], []
        with open(os.path.join(shot_dir, "shot.json")) as f:
            count = json.load(f)["frames"]
        first = obj["stereoforge_first_frame"]
        for frame in range(first, first + count):
            scene.frame_set(frame)
            evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
            counts.append(len(evaluated.data.points))
            colours.append(sorted(a.name for a in evaluated.data.attributes))
        out["points_per_frame"] = counts
        out["attributes"] = colours[0] if colours else []
    if cam:
        st = cam.data.stereo
        out["stereo"] = {"interocular_distance": st.interocular_distance,
                         "convergence_distance": st.convergence_distance,
                         "convergence_mode": st.convergence_mode, "pivot": st.pivot}
        out["lens"] = cam.data.lens
        out["sensor_width"] = cam.data.sensor_width
        out["camera_forward"] = list(cam.matrix_world.to_3x3() @ Vector((0, 0, -1)))
        out["camera_location"] = list(cam.matrix_world.translation)
    r = scene.render
    out["render"] = {"use_multiview": r.use_multiview, "views_format": r.views_format,
                     "resolution": [r.resolution_x, r.resolution_y, r.resolution_percentage],
                     "film_transparent": r.film_transparent, "engine": r.engine,
                     "frames": [scene.frame_start, scene.frame_end]}
    return out


class FakeLayout:
    """Stands in for a UILayout when panels are drawn without a window: checks that every property and
    operator a panel draws exists."""

    def __init__(self, drawn: list):
        self.drawn = drawn

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: self
        if name in ("label", "separator", "progress"):
            return lambda *a, **k: self.drawn.append((name, k.get("text", "")))
        raise AttributeError(name)

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.drawn.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert search_name in search_data.bl_rna.properties, f"no collection {search_name!r} to search"
        self.prop(data, name)

    def operator(self, idname, **kwargs):
        assert operator_exists(idname.split(".")[1]), idname
        self.drawn.append(("operator", idname))


def draw_panels() -> dict:
    """Draw every panel for every source, idle and with a job running; returns what each showed."""
    from types import SimpleNamespace

    module = __import__(MODULE + ".ui", fromlist=["ui"])
    s = bpy.context.scene.stereoforge
    state = bpy.context.window_manager.stereoforge_job
    shown = {}
    for running in (False, True):
        state.running, state.stage, state.done, state.total = running, "render eyes", 2, 5
        for source in ("PROMPT", "IMAGE", "VIDEO", "SCENE"):
            s.source = source
            for kind in ("RELATIVE", "DISPARITY"):
                s.depth_kind = kind
                for name in PANELS:
                    drawn = []
                    getattr(bpy.types, name).draw(SimpleNamespace(layout=FakeLayout(drawn)), bpy.context)
                    shown[f"{name} {source} {kind} {'running' if running else 'idle'}"] = drawn
        drawn = []
        module.draw_status(SimpleNamespace(layout=FakeLayout(drawn)), bpy.context)
        shown[f"status {'running' if running else 'idle'}"] = drawn
    state.running = False
    return shown


# -- scenarios ------------------------------------------------------------------------------------------------

def lifecycle(zip_path: str, args: dict) -> dict:
    import addon_utils

    install(zip_path)
    first = registered()
    report = {"drawn": draw_panels()}
    try:
        bpy.ops.stereoforge.check_backend()
        report["check"] = "ok"
    except RuntimeError as exc:
        report["check"] = str(exc)
    addon_utils.disable(MODULE, default_set=True)
    disabled = registered()
    addon_utils.enable(MODULE, default_set=True)
    again = registered()
    return {"first": first, "disabled": disabled, "again": again, **report}


def headless(zip_path: str, args: dict) -> dict:
    install(zip_path)
    before = {o.name for o in bpy.data.objects}
    configure(args["settings"])
    started = time.perf_counter()
    result = bpy.ops.stereoforge.run()  # the README's headless script
    seconds = time.perf_counter() - started
    state = bpy.context.window_manager.stereoforge_job
    shot_dir = os.path.abspath(args["settings"]["output_dir"])
    out = {"result": sorted(result), "seconds": seconds, "message": state.message, "video": state.video,
           "new_objects": sorted({o.name for o in bpy.data.objects} - before), **shot_state(shot_dir)}
    if state.video:
        bpy.ops.stereoforge.load_result()
        out["review_images"] = [(i.name, i.source) for i in bpy.data.images if i.filepath == state.video]
    if args.get("rerun"):  # resume: nothing left to do, nothing re-rendered
        stamps = {p: os.path.getmtime(p) for p in _eye_files(shot_dir)}
        out["rerun_result"] = sorted(bpy.ops.stereoforge.run())
        out["rerun_touched"] = sorted(p for p, t in stamps.items() if os.path.getmtime(p) != t)
    return out


def _eye_files(shot_dir: str) -> list[str]:
    found = []
    for eye in ("left", "right"):
        folder = os.path.join(shot_dir, "eyes", eye)
        found += [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
    return found


def bad_inputs(zip_path: str, args: dict) -> dict:
    install(zip_path)
    base = args["settings"]
    results = {}
    for case, change in args["cases"].items():
        configure(base)
        prefs = bpy.context.preferences.addons[MODULE].preferences
        prefs.python = change.pop("_python", "")
        if change.pop("_no_camera", False):
            bpy.context.scene.camera = None
        stage = change.pop("_operator", "run")
        configure(change)
        before = scene_snapshot()
        try:
            outcome = sorted(getattr(bpy.ops.stereoforge, stage)())
            message = bpy.context.window_manager.stereoforge_job.message
        except RuntimeError as exc:
            outcome, message = ["ERROR"], str(exc)
        results[case] = {"outcome": outcome, "message": message, "unchanged": scene_snapshot() == before,
                         "files": sorted(os.listdir(base["output_dir"])) if os.path.isdir(base["output_dir"])
                         else []}
        bpy.ops.wm.read_homefile(use_empty=False)
    return results


def scene_source(zip_path: str, args: dict) -> dict:
    """A small scene (a wall and a box at known distances) converted through the Scene source."""
    install(zip_path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    install(zip_path)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.frame_start, scene.frame_end = 5, 6
    world = bpy.data.worlds.new("World")
    scene.world = world
    mat = bpy.data.materials.new("grey")
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Emission Strength"].default_value = 1.0
    mat.node_tree.nodes["Principled BSDF"].inputs["Emission Color"].default_value = (0.6, 0.4, 0.2, 1)
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    wall = bpy.context.object
    wall.data.materials.append(mat)
    bpy.ops.mesh.primitive_cube_add(size=1, location=(0.5, 3, 0))
    bpy.context.object.data.materials.append(mat)
    cam_data = bpy.data.cameras.new("Camera")
    camera = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(camera)
    camera.location = (0, 0, 0)
    camera.rotation_euler = (math.pi / 2, 0, 0)  # looking along +Y
    camera.keyframe_insert("location", frame=5)
    camera.location = (0.2, 0, 0)
    camera.keyframe_insert("location", frame=6)
    scene.camera = camera
    configure(args["settings"])
    result = bpy.ops.stereoforge.run()
    shot_dir = os.path.abspath(args["settings"]["output_dir"])
    out = {"result": sorted(result), **shot_state(shot_dir)}
    # Where do the cloud's points land in the world? On the wall (y = 6) and the box front (y = 2.5).
    cloud = next(o for o in scene.objects if o.type == "POINTCLOUD")
    ys = {}
    for frame in (5, 6):
        scene.frame_set(frame)
        evaluated = cloud.evaluated_get(bpy.context.evaluated_depsgraph_get())
        m = evaluated.matrix_world
        ys[frame] = sorted({round((m @ p.co).y, 2) for p in evaluated.data.points})
        out[f"x_range_{frame}"] = [min((m @ p.co).x for p in evaluated.data.points),
                                   max((m @ p.co).x for p in evaluated.data.points)]
    out["world_y"] = ys
    out["source_camera"] = scene.stereoforge.source_camera.name if scene.stereoforge.source_camera else None
    out["scenes"] = [s.name for s in bpy.data.scenes]
    out["scene_camera"] = scene.camera.name if scene.camera else None
    return out


def ticks(zip_path: str, args: dict) -> dict:
    """The UI's way of running a job (the modal operator's timer calling ``Job.advance``), cancelled from the
    panel during the eye render, then resumed with Run. In background mode Blender runs an INVOKE_DEFAULT
    render at once, so this drives every line of the interactive path but the window's event loop."""
    import importlib

    install(zip_path)
    jobs = importlib.import_module(MODULE + ".jobs")
    client = importlib.import_module(MODULE + ".client")
    configure(args["settings"])
    context = bpy.context
    state = context.window_manager.stereoforge_job
    source, depth, backend = jobs.check_inputs(context, jobs.STAGES)
    job = jobs.Job(context, jobs.STAGES, source, depth, backend, interactive=True)
    hints, stages, message = [], [], None
    try:
        while (hint := job.advance()) != jobs.DONE:
            hints.append(hint)
            if state.stage not in stages:
                stages.append(state.stage)
            if state.stage == "render eyes" and state.done >= 1:
                state.cancel_requested = True  # what the panel's Cancel button (or Esc) does
            if hint == jobs.WAIT:
                time.sleep(0.02)
    except client.JobCancelled as exc:
        message = str(exc)
    shot_dir = os.path.abspath(args["settings"]["output_dir"])
    kept = {p: os.path.getmtime(p) for p in _eye_files(shot_dir)}
    resumed = sorted(bpy.ops.stereoforge.run())
    return {"cancelled": message, "running_after": state.running, "waits": hints.count(jobs.WAIT),
            "steps": len(hints), "stages": stages, "kept": sorted(os.path.basename(p) for p in kept),
            "resumed": resumed, "rerendered": sorted(p for p, t in kept.items() if os.path.getmtime(p) != t),
            "eyes_after": len(_eye_files(shot_dir))}


SCENARIOS = {"lifecycle": lifecycle, "headless": headless, "ticks": ticks, "bad_inputs": bad_inputs,
             "scene_source": scene_source}


def main(scenarios: dict = SCENARIOS) -> None:
    scenario, zip_path = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    result = scenarios[scenario](zip_path, args)
    sys.stdout.flush()
    print("RESULT: " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()

"""Blender sessions for tests/test_addon_guest.py: the add-on as a guest in an artist's scene.

Run like tests/blender/addon_session.py (whose helpers it uses)::

    python tests/blender/guest_session.py SCENARIO ZIP ARGS_JSON

and it prints one line ``RESULT: {...}``. The artist's scene is set up away from Blender's defaults first (frame
range, camera, colour management, engine, film, view layers, resolution), then runs are made on it; each run
reports the scene's settings before and after.
"""

from __future__ import annotations

import json
import math
import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from addon_session import MODULE, configure, draw_panels, install, main  # noqa: E402


def artist_scene() -> None:
    """A scene as an artist leaves it: nothing at Blender's defaults that a run could have reset."""
    scene = bpy.context.scene
    r = scene.render
    scene.frame_start, scene.frame_end, scene.frame_current = 3, 40, 7
    r.fps, r.fps_base = 25, 1.0
    r.resolution_x, r.resolution_y, r.resolution_percentage = 128, 96, 75
    r.engine = "BLENDER_WORKBENCH"
    r.film_transparent = False
    r.use_multiview = False
    r.filepath = "//renders/artist_"
    r.image_settings.file_format = "JPEG"
    view = scene.view_settings
    view.view_transform, view.look, view.exposure, view.gamma = "Filmic", "High Contrast", 0.5, 1.2
    scene.view_layers[0].name = "Beauty"
    extra = scene.view_layers.new("Background")
    extra.use = False
    # An emissive wall and box for the Scene source, seen by the artist's camera along +Y.
    mat = bpy.data.materials.new("artist paint")
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Emission Strength"].default_value = 1.0
    bsdf.inputs["Emission Color"].default_value = (0.6, 0.4, 0.2, 1)
    for name in ("Cube", "Light"):
        if name in bpy.data.objects:
            bpy.data.objects.remove(bpy.data.objects[name])
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    bpy.context.object.data.materials.append(mat)
    bpy.ops.mesh.primitive_cube_add(size=1, location=(0.5, 3, 0))
    bpy.context.object.data.materials.append(mat)
    camera = bpy.data.objects["Camera"]
    camera.location, camera.rotation_euler = (0, 0, 0), (math.pi / 2, 0, 0)
    camera.data.lens = 30.0
    scene.camera = camera
    artist_camera = bpy.data.objects.new("Artist Camera", bpy.data.cameras.new("Artist Camera"))
    scene.collection.objects.link(artist_camera)
    bpy.ops.object.select_all(action="DESELECT")
    artist_camera.select_set(True)
    bpy.context.view_layer.objects.active = artist_camera


def settings() -> dict:
    """Everything of the artist's scene and file a run must leave as it was (the shot's own collection and
    what is in it are left out: adding them is what a run does)."""
    scene = bpy.context.scene
    r, view, layer = scene.render, scene.view_settings, bpy.context.view_layer
    shots = [c for c in bpy.data.collections if c.get("stereoforge_shot")]
    ours = {o.name for c in shots for o in c.all_objects}
    return {
        "frames": [scene.frame_start, scene.frame_end, scene.frame_current, r.fps, r.fps_base],
        "camera": scene.camera.name if scene.camera else None,
        "colour": [scene.display_settings.display_device, view.view_transform, view.look,
                   round(view.exposure, 6), round(view.gamma, 6)],
        "engine": r.engine,
        "film_transparent": r.film_transparent,
        "view_layers": [[v.name, v.use] for v in scene.view_layers],
        "resolution": [r.resolution_x, r.resolution_y, r.resolution_percentage, r.use_multiview],
        "output": [r.filepath, r.image_settings.file_format],
        "scenes": sorted(s.name for s in bpy.data.scenes),
        "objects": sorted(o.name for o in bpy.data.objects if o.name not in ours),
        "collections": sorted(c.name for c in bpy.data.collections if c not in shots),
        "active": layer.objects.active.name if layer.objects.active else None,
        "selected": sorted(o.name for o in layer.objects if o.select_get()),
    }


def shot_objects() -> dict:
    """The shot collections in the file and what each holds."""
    return {c.name: sorted(o.name for o in c.all_objects) for c in bpy.data.collections if c.get("stereoforge_shot")}


def _cancel_after_first_eye(scene, *args) -> None:
    """What the panel's Cancel does, pressed once the first eye frame is rendered."""
    if scene.name.startswith("StereoForge eyes"):
        bpy.context.window_manager.stereoforge_job.cancel_requested = True


def run(spec: dict) -> dict:
    """One Run with ``spec["settings"]`` (and the artist's ``spec["engine"]``, ``spec["cancel"]``)."""
    scene = bpy.context.scene
    if "engine" in spec:
        scene.render.engine = spec["engine"]
    camera = scene.camera.data
    for frame, value in spec.get("camera_keys", []):  # the artist keys the camera's own stereo interocular
        camera.stereo.interocular_distance = value
        camera.keyframe_insert("stereo.interocular_distance", frame=frame)
    state = bpy.context.window_manager.stereoforge_job
    state.message = ""
    panel = scene.stereoforge
    for name in panel.bl_rna.properties.keys():  # each run starts from the panel's defaults
        panel.property_unset(name)
    configure(spec["settings"])
    if spec.get("cancel"):
        bpy.app.handlers.render_post.append(_cancel_after_first_eye)
    before = settings()
    try:
        outcome = sorted(getattr(bpy.ops.stereoforge, spec.get("operator", "run"))())
        message = state.message
    except RuntimeError as exc:
        outcome, message = ["ERROR"], str(exc)
    finally:
        if spec.get("cancel"):
            bpy.app.handlers.render_post.remove(_cancel_after_first_eye)
    after = settings()
    return {"outcome": outcome, "message": message, "before": before, "after": after,
            "changed": sorted(k for k in before if before[k] != after[k]), "shots": shot_objects(),
            "parallax": state.parallax, "parallax_at_start": state.parallax_at(scene.frame_start)}


def panel_tooltips() -> dict:
    """Each panel property's tooltip, and the depth kinds offered."""
    properties = bpy.context.scene.stereoforge.bl_rna.properties
    found = {prop.identifier: prop.description for prop in properties}
    found["depth_kind items"] = " ".join(item.identifier for item in properties["depth_kind"].enum_items)
    return found


def untouched(zip_path: str, args: dict) -> dict:
    import importlib

    install(zip_path)
    drawn = draw_panels()
    artist_scene()
    render = importlib.import_module(MODULE + ".render")
    scene = importlib.import_module(MODULE + ".scene")
    notes = {engine: render.source_engine_note(engine, 16, scene.has_gpu()) for engine in ("CYCLES", "EEVEE")}
    props = panel_tooltips()
    return {"runs": {name: run(spec) for name, spec in args["runs"].items()}, "notes": notes, "tooltips": props,
            "drawn": sorted({name for items in drawn.values() for kind, name in items if kind == "prop"})}


def animated_rig(zip_path: str, args: dict) -> dict:
    """The panel's interocular keyed from ``args["keys"]`` (scene frame: metres); one Run with Blender's eyes.
    Returns what Blender's curve gives at each shot frame, and what the stereo camera holds there."""
    install(zip_path)
    artist_scene()
    scene = bpy.context.scene
    configure(args["settings"])
    s = scene.stereoforge
    for frame, value in args["keys"]:
        s.interocular = value
        s.keyframe_insert("interocular", frame=frame)
    outcome = sorted(bpy.ops.stereoforge.run())
    shot_dir = os.path.abspath(args["settings"]["output_dir"])
    with open(os.path.join(shot_dir, "shot.json")) as f:
        count = json.load(f)["frames"]
    camera = next(o for o in bpy.data.objects if o.type == "CAMERA" and o.get("stereoforge_shot") == shot_dir)
    fcurve = scene.animation_data.action.fcurves.find("stereoforge.interocular")
    curve, on_camera = [], []
    for n in range(count):
        frame = scene.frame_start + n
        curve.append(fcurve.evaluate(frame))
        scene.frame_set(frame)
        on_camera.append(camera.data.stereo.interocular_distance)
    message = bpy.context.window_manager.stereoforge_job.message
    # A depth budget beside the keyed interocular: the budget sets the interocular (the panel greys it out).
    s.max_parallax, s.eye_renderer, s.output_dir = 2.0, "SPLATTER", args["budget_dir"]
    budget = sorted(bpy.ops.stereoforge.run())
    return {"outcome": outcome, "message": message, "curve": curve, "camera": on_camera,
            "first_frame": scene.frame_start, "scenes": [x.name for x in bpy.data.scenes], "budget": budget}


SCENARIOS = {"untouched": untouched, "animated_rig": animated_rig}


if __name__ == "__main__":
    main(SCENARIOS)

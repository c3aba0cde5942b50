"""The shot in the Blender scene: the streaming point cloud, its material, the stereo camera, the eye render setup.

``import_clouds`` brings ``cloud.usdc`` in through Blender's USD importer. In Blender 4.5 that gives, in the
active collection: an EMPTY for ``/Shot`` (rotated 90 degrees about X: USD's Y-up becomes Blender's Z-up), a
POINTCLOUD for ``/Shot/Cloud`` with a Mesh Sequence Cache modifier that reads each frame's points as the
timeline moves (point attributes ``position``, ``radius`` = half the USD width, ``displayColor`` = linear
colour), and a CAMERA for ``/Shot/Camera``, child of the empty at identity: in world space it is exactly the
source camera (at the origin, looking along +Y). The stereo camera is that camera with Blender's stereo
settings from the shot's rig, so the clouds sit where the source camera saw them.

Everything imported goes into one collection per shot, tagged with the shot folder, so re-importing replaces
it. That collection is all a run adds to the artist's scene: the eyes render in a scene of StereoForge's own
(:func:`eye_scene`) that holds only the shot's collection and is removed afterwards, so the artist's frame
range, camera, colour management, engine, film and view layers stay as they were.
"""

from __future__ import annotations

import contextlib
import os

import bpy

from . import shot as shotlib

#: Custom property on the shot's collection and objects: the absolute shot folder.
SHOT_PROP = "stereoforge_shot"
#: Custom property on the cloud: the scene frame that shows shot frame 1.
FIRST_FRAME_PROP = "stereoforge_first_frame"
EYES_VIEW_LAYER = "StereoForge Eyes"
MATERIAL = "StereoForge Points"


class SceneError(Exception):
    """The scene cannot do what was asked; the message says why and what to do."""


def shot_collection(scene, shot_dir: str):
    """The collection this shot was imported into, in ``scene`` (None if not imported)."""
    for coll in scene.collection.children_recursive:
        if coll.get(SHOT_PROP) == shot_dir:
            return coll
    return None


def shot_objects(scene, shot_dir: str) -> dict:
    """``{"root", "cloud", "camera"}`` of an imported shot; raises SceneError when it is not imported."""
    coll = shot_collection(scene, shot_dir)
    found = {}
    if coll is not None:
        for obj in coll.objects:
            kind = {"EMPTY": "root", "POINTCLOUD": "cloud", "CAMERA": "camera"}.get(obj.type)
            if kind and obj.get(SHOT_PROP) == shot_dir:
                found[kind] = obj
    if set(found) != {"root", "cloud", "camera"}:
        raise SceneError(f"the point clouds of '{shot_dir}' are not in the scene '{scene.name}'; run "
                         "'Import Point Clouds' first")
    return found


def remove_shot(scene, shot_dir: str) -> None:
    """Remove an earlier import of this shot (its collection, objects and cache file) from the file."""
    coll = shot_collection(scene, shot_dir)
    if coll is None:
        return
    doomed = {coll}
    for obj in coll.objects:
        doomed.add(obj)
        if obj.data is not None and obj.data.users == 1:
            doomed.add(obj.data)
        for owner in (obj, obj.data):  # the keys that follow a camera path or an animated rig
            action = owner.animation_data.action if owner is not None and owner.animation_data else None
            if action is not None and action.users == 1:
                doomed.add(action)
        for mod in obj.modifiers:
            if mod.type == "MESH_SEQUENCE_CACHE" and mod.cache_file and mod.cache_file.users == 1:
                doomed.add(mod.cache_file)
    bpy.data.batch_remove(doomed)


def points_material():
    """An emission material that shows each point's own colour exactly: the render reproduces the source."""
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None and mat.get(SHOT_PROP) == "material":
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    mat[SHOT_PROP] = "material"
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    color = nodes.new("ShaderNodeAttribute")
    color.attribute_type = "GEOMETRY"
    color.attribute_name = "displayColor"
    color.location = (-400, 0)
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    emission.location = (-150, 0)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (100, 0)
    links.new(color.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], out.inputs["Surface"])
    return mat


def import_clouds(context, shot_dir: str, meta: dict, first_frame: int = 1, camera_world=None) -> dict:
    """Import the shot's ``cloud.usdc`` into ``context.scene`` as one collection; returns its objects.

    Nothing else of the scene changes: its frame range, frame rate, selection and active object stay. If
    anything goes wrong part way, what was imported is removed again.

    Args:
        first_frame: the scene frame that shows shot frame 1.
        camera_world: for the Scene source, a function ``frame -> 4x4 matrix``: the source camera's world
            matrix at that scene frame; the shot is keyed to follow it, so the clouds land on the scene.
    """
    path = shotlib.cloud_path(shot_dir)
    if not os.path.exists(path):
        raise SceneError(f"'{path}' does not exist; run the Load stage first (it writes the point clouds)")
    scene, view_layer = context.scene, context.view_layer
    remove_shot(scene, shot_dir)
    name = os.path.basename(shot_dir.rstrip(os.sep)) or "shot"
    coll = bpy.data.collections.new(f"StereoForge {name}")
    coll[SHOT_PROP] = shot_dir
    scene.collection.children.link(coll)
    try:
        with _selection_kept(view_layer):
            objects = _import_usd(view_layer, coll, path)
        _finish_import(objects, name, shot_dir, meta, first_frame, camera_world)
    except BaseException:
        remove_shot(scene, shot_dir)
        raise
    return objects


@contextlib.contextmanager
def _selection_kept(view_layer):
    """The USD importer selects what it made and makes it active: the artist's selection comes back."""
    active, selected = view_layer.objects.active, [o for o in view_layer.objects if o.select_get()]
    previous_collection = view_layer.active_layer_collection
    try:
        yield
    finally:
        view_layer.active_layer_collection = previous_collection
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active


def _import_usd(view_layer, coll, path: str) -> dict:
    view_layer.active_layer_collection = _layer_collection(view_layer.layer_collection, coll)
    result = bpy.ops.wm.usd_import(filepath=path, import_materials=False, import_lights=False,
                                   create_world_material=False, set_frame_range=False, relative_path=False)
    by_type = {obj.type: obj for obj in coll.all_objects}
    if "FINISHED" not in result or not {"EMPTY", "POINTCLOUD", "CAMERA"} <= set(by_type):
        raise SceneError(f"Blender's USD import of '{path}' did not give a point cloud and a camera "
                         f"(got {', '.join(sorted(by_type)) or 'nothing'}); run the Load stage again")
    return {"root": by_type["EMPTY"], "cloud": by_type["POINTCLOUD"], "camera": by_type["CAMERA"]}


def _finish_import(objects: dict, name: str, shot_dir: str, meta: dict, first_frame: int, camera_world) -> None:
    for kind, label in (("root", ""), ("cloud", " cloud"), ("camera", " stereo camera")):
        objects[kind].name = f"{name}{label}"
        objects[kind][SHOT_PROP] = shot_dir
    cloud = objects["cloud"]
    cloud.data.materials.clear()
    cloud.data.materials.append(points_material())
    cloud[FIRST_FRAME_PROP] = first_frame
    # A one-frame shot's points are not time-sampled: the importer makes no cache to stream them.
    for mod in cloud.modifiers:
        if mod.type == "MESH_SEQUENCE_CACHE":
            mod.cache_file.frame_offset = first_frame - 1  # reads time code (scene frame - offset): shot frame n
    if camera_world is not None:
        root = objects["root"]
        for n in range(int(meta["frames"])):
            frame = first_frame + n
            # The imported camera sits at identity under the root: the root *is* the source camera.
            root.matrix_world = camera_world(frame)
            root.keyframe_insert("location", frame=frame)
            root.keyframe_insert("rotation_euler", frame=frame)


def _layer_collection(layer_collection, collection):
    if layer_collection.collection == collection:
        return layer_collection
    for child in layer_collection.children:
        found = _layer_collection(child, collection)
        if found is not None:
            return found
    return None


def _set_fps(scene, fps: float) -> None:
    """Blender's fps is an integer over a base: 29.97 becomes 30 / 1.001."""
    whole = round(fps)
    if abs(fps - whole) < 1e-3:
        scene.render.fps, scene.render.fps_base = int(whole), 1.0
    else:
        ntsc = round(fps * 1.001)
        scene.render.fps, scene.render.fps_base = int(ntsc), ntsc / fps


def setup_camera(camera_obj, meta: dict, first_frame: int) -> None:
    """Make ``camera_obj`` (the shot's own camera) the shot's stereo camera: the source intrinsics and Blender's
    stereo settings from the rig the backend resolved (``shot.json``), keyed frame by frame when the rig
    moves (shot frame n at scene frame ``first_frame + n - 1``). Only the camera changes, not the scene."""
    cam, data = meta["camera"], camera_obj.data
    near, far = (meta.get("depth_range_m") or [0.1, 1000.0])[:2]
    data.type = "PERSP"
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = float(cam.get("sensor_width_mm", 36.0))
    data.lens = float(cam["lens_mm"])
    data.shift_x = data.shift_y = 0.0
    data.clip_start = max(1e-3, min(0.1, float(near) * 0.5))
    data.clip_end = max(1000.0, float(far) * 2.0)
    data.dof.use_dof = False
    stereo = data.stereo
    rig = meta["rig"]
    stereo.convergence_mode = rig["convergence_mode"]
    stereo.pivot = rig["pivot"]
    _clear_animation(data)
    per_frame = shotlib.rig_frames(meta)
    for name in shotlib.ANIMATED_RIG:
        values = per_frame[name]
        setattr(stereo, name, float(values[0]))
        if len(set(values)) > 1:
            for n, value in enumerate(values):
                setattr(stereo, name, float(value))
                data.keyframe_insert(f"stereo.{name}", frame=first_frame + n)
    if data.animation_data is not None and data.animation_data.action is not None:
        for fcurve in data.animation_data.action.fcurves:  # the backend's values at every frame, as they are
            for key in fcurve.keyframe_points:
                key.interpolation = "LINEAR"


def _clear_animation(data) -> None:
    """Drop the keys an earlier setup put on the camera (its action too: nothing else uses it)."""
    action = data.animation_data.action if data.animation_data is not None else None
    data.animation_data_clear()
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)


@contextlib.contextmanager
def eye_scene(collection, camera_obj, meta: dict, first_frame: int, samples: int):
    """A scene of StereoForge's own that renders the shot's collection through its stereo camera; removed
    afterwards, so the artist's scene and its settings are never touched.

    Cycles renders emission-only points with no bounces and no denoising; a 1-pixel box filter gives each
    pixel the area its points cover, as the backend's splatter does. Transparent film: alpha = coverage. The
    points carry their final colour, so the view transform is Standard. Output: multilayer half-float EXR
    (RGBA + Z), one file per eye.
    """
    name = os.path.basename(meta.get("spec", {}).get("output_dir", "").rstrip(os.sep)) or "shot"
    eyes = bpy.data.scenes.new(f"StereoForge eyes {name}")
    try:
        eyes.collection.children.link(collection)
        eyes.camera = camera_obj
        eyes.frame_start, eyes.frame_end = first_frame, first_frame + int(meta["frames"]) - 1
        _set_fps(eyes, float(meta.get("fps") or 24.0))
        eyes.view_layers[0].name = EYES_VIEW_LAYER
        layer = eyes.view_layers[0]
        layer.use_pass_z = layer.use_pass_combined = True
        _stereo_output(eyes, meta["camera"])
        _cycles_for_points(eyes, samples)
        yield eyes
    finally:
        bpy.data.scenes.remove(eyes)


def _stereo_output(eyes, cam: dict) -> None:
    r = eyes.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(cam["width"]), int(cam["height"]), 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.use_file_extension = True
    r.use_compositing = r.use_sequencer = False
    im = r.image_settings
    im.file_format, im.color_mode, im.color_depth, im.exr_codec = "OPEN_EXR_MULTILAYER", "RGBA", "16", "ZIP"
    stereo_views(r)
    standard_view(eyes)


def _cycles_for_points(eyes, samples: int) -> None:
    r = eyes.render
    r.film_transparent = True
    r.use_motion_blur = False
    r.use_border = False
    box_filtered_cycles(eyes, samples)
    eyes.cycles.device = "GPU" if has_gpu() else "CPU"
    eyes.cycles.transparent_max_bounces = 8


def stereo_views(render) -> None:
    """Render both eyes as Blender's stereo views, each into its own file: ``<path>_L.<ext>``, ``<path>_R.<ext>``
    (the eye renders here, and the ground truth of ``tools/blender_truth.py``)."""
    render.use_multiview = True
    render.views_format = "STEREO_3D"
    render.views["left"].use = render.views["right"].use = True
    render.views["left"].file_suffix, render.views["right"].file_suffix = "_L", "_R"
    render.image_settings.views_format = "INDIVIDUAL"


def standard_view(scene) -> None:
    """Colour as it was lit, untouched: sRGB display, the Standard view transform (not AgX, Blender's default,
    which tone-maps), no look, exposure 0, gamma 1, no curves."""
    scene.display_settings.display_device = "sRGB"
    view = scene.view_settings
    view.view_transform, view.look, view.exposure, view.gamma = "Standard", "None", 0.0, 1.0
    view.use_curve_mapping = False


def box_filtered_cycles(scene, samples: int) -> None:
    """Cycles that only anti-aliases: camera rays with no bounces (the materials emit their final colour), a
    1-pixel box filter (each sample lands inside its own pixel, so a pixel is the area that covers it), the same
    ``samples`` everywhere and on every frame, no denoiser."""
    scene.render.engine = "CYCLES"
    c = scene.cycles
    c.samples = samples
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.pixel_filter_type = "BOX"
    c.filter_width = 1.0
    c.max_bounces = 0
    c.use_animated_seed = False


def has_gpu() -> bool:
    """True when the user has set up a GPU for Cycles in the preferences."""
    addon = bpy.context.preferences.addons.get("cycles")
    try:
        return bool(addon and addon.preferences.has_active_device())
    except (AttributeError, RuntimeError):
        return False

"""The shot in the Blender scene: the streaming point cloud, its material, the stereo camera, the eye render setup.

``import_clouds`` brings ``cloud.usdc`` in through Blender's USD importer. In Blender 4.5 that gives, in the
active collection: an EMPTY for ``/Shot`` (rotated 90 degrees about X: USD's Y-up becomes Blender's Z-up), a
POINTCLOUD for ``/Shot/Cloud`` with a Mesh Sequence Cache modifier that reads each frame's points as the
timeline moves (point attributes ``position``, ``radius`` = half the USD width, ``displayColor`` = linear
colour), and a CAMERA for ``/Shot/Camera``, child of the empty at identity: in world space it is exactly the
source camera (at the origin, looking along +Y). The stereo camera is that camera with Blender's stereo
settings from the shot's rig, so the clouds sit where the source camera saw them.

Everything imported goes into one collection per shot, tagged with the shot folder, so re-importing replaces
it and the eye render can leave the rest of the scene out (its own view layer).
"""

from __future__ import annotations

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

    Args:
        first_frame: the scene frame that shows shot frame 1 (the Scene source keeps its own frame range).
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
    previous_active = view_layer.active_layer_collection
    view_layer.active_layer_collection = _layer_collection(view_layer.layer_collection, coll)
    frame_range = (scene.frame_start, scene.frame_end)
    before = set(bpy.data.objects)
    try:
        result = bpy.ops.wm.usd_import(filepath=path, import_materials=False, import_lights=False,
                                       create_world_material=False, set_frame_range=False,
                                       relative_path=False)
    finally:
        view_layer.active_layer_collection = previous_active
    new = [obj for obj in bpy.data.objects if obj not in before]
    by_type = {obj.type: obj for obj in new}
    if "FINISHED" not in result or not {"EMPTY", "POINTCLOUD", "CAMERA"} <= set(by_type):
        for obj in new:
            bpy.data.objects.remove(obj)
        bpy.data.collections.remove(coll)
        raise SceneError(f"Blender's USD import of '{path}' did not give a point cloud and a camera "
                         f"(got {', '.join(sorted(o.type for o in new)) or 'nothing'}); run the Load stage again")
    objects = {"root": by_type["EMPTY"], "cloud": by_type["POINTCLOUD"], "camera": by_type["CAMERA"]}
    for kind, label in (("root", ""), ("cloud", " cloud"), ("camera", " stereo camera")):
        objects[kind].name = f"{name}{label}"
        objects[kind][SHOT_PROP] = shot_dir
    cloud = objects["cloud"]
    cloud.data.materials.clear()
    cloud.data.materials.append(points_material())
    cloud[FIRST_FRAME_PROP] = first_frame
    # A one-frame cloud has no time samples: Blender imports its points as they are, with no cache to offset.
    for mod in cloud.modifiers:
        if mod.type == "MESH_SEQUENCE_CACHE":
            mod.cache_file.frame_offset = first_frame - 1  # the cache reads time code (scene frame - offset)

    count = int(meta["frames"])
    if camera_world is None:
        scene.frame_start, scene.frame_end = first_frame, first_frame + count - 1
        _set_fps(scene, float(meta.get("fps") or 24.0))
    else:
        scene.frame_start, scene.frame_end = frame_range
        root = objects["root"]
        for n in range(count):
            frame = first_frame + n
            # The imported camera sits at identity under the root: the root *is* the source camera.
            root.matrix_world = camera_world(frame)
            root.keyframe_insert("location", frame=frame)
            root.keyframe_insert("rotation_euler", frame=frame)
    return objects


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


def setup_camera(scene, camera_obj, meta: dict) -> None:
    """Make ``camera_obj`` the shot's stereo camera: the source intrinsics and Blender's stereo settings from
    the rig the backend resolved (``shot.json``), multiview STEREO_3D, the source resolution at 100 %."""
    cam, rig, data = meta["camera"], meta["rig"], camera_obj.data
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
    stereo.interocular_distance = float(rig["interocular_distance"])
    stereo.convergence_distance = float(rig["convergence_distance"])
    stereo.convergence_mode = rig["convergence_mode"]
    stereo.pivot = rig["pivot"]
    scene.camera = camera_obj
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(cam["width"]), int(cam["height"]), 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.use_multiview = True
    r.views_format = "STEREO_3D"
    r.views["left"].use = r.views["right"].use = True
    r.views["left"].file_suffix, r.views["right"].file_suffix = "_L", "_R"
    # The points carry their final colour: show it as it is.
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0


def setup_eye_render(scene, collection, samples: int):
    """Cycles settings for the eyes and a view layer that renders only the shot's collection.

    Emission-only points need no bounces and no denoising; a 1-pixel box filter gives each pixel the area
    its points cover, as the backend's splatter does. Transparent film: alpha = coverage.
    """
    r = scene.render
    r.engine = "CYCLES"
    r.film_transparent = True
    r.use_motion_blur = False
    r.use_border = False
    c = scene.cycles
    c.device = "GPU" if _has_gpu() else "CPU"
    c.samples = samples
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.pixel_filter_type = "BOX"
    c.filter_width = 1.0
    c.max_bounces = 0
    c.transparent_max_bounces = 8
    c.use_animated_seed = False
    layer = scene.view_layers.get(EYES_VIEW_LAYER) or scene.view_layers.new(EYES_VIEW_LAYER)
    layer.use_pass_z = True
    layer.use_pass_combined = True
    for child in layer.layer_collection.children:
        child.exclude = child.collection != collection
    return layer


def _has_gpu() -> bool:
    """True when the user has set up a GPU for Cycles in the preferences."""
    addon = bpy.context.preferences.addons.get("cycles")
    try:
        return bool(addon and addon.preferences.has_active_device())
    except (AttributeError, RuntimeError):
        return False

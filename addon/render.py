"""Blender renders: both eyes of a shot frame, and the Scene source (the scene camera's frames and depth).

One frame at a time, so a job can stop between frames and the UI can run each frame as a render job. A frame
is rendered in two halves: :func:`begin_eye_frame` / :func:`begin_scene_frame` set the frame up and return the
render operator's arguments; after the render, :func:`finish_eye_frame` / :func:`finish_scene_frame` move what
it wrote to the frame's final names (atomically: a frame that exists is done).

Found in Blender 4.5 headless (bpy from PyPI):

* A multiview render with ``write_still`` and ``image_settings.views_format = 'INDIVIDUAL'`` writes one file per
  view, the view's ``file_suffix`` (``_L``/``_R``) inserted before the extension: ``<filepath>_L.exr``.
* The eyes render in a scene of StereoForge's own (``scene.eye_scene``) that holds only the shot's collection,
  rendered by name (``render(scene=...)``); the artist's scene and its settings are not touched.
* The multilayer EXR names its channels ``<view layer>.Combined.R/G/B/A`` and ``<view layer>.Depth.Z``, which is
  what the backend reads; pixels that no ray hit get Z = 1e10.
* A compositor File Output node names its file after frame 1 when another scene than the context's renders,
  so the Scene source renders each frame's depth into a scratch folder and renames it.
"""

from __future__ import annotations

import glob
import os

import bpy

from . import shot as shotlib
from .shot_contract import frame_name

#: EEVEE's engine name in Blender 4.2 to 4.5.
EEVEE = "BLENDER_EEVEE_NEXT"
#: Cycles writes this depth where a ray hits nothing; the Scene source turns it into 0, "no point".
NO_HIT_DEPTH = 1e9


def _scratch(shot_dir: str, n: int) -> str:
    return os.path.join(shot_dir, "eyes", f".render_{n:06d}")


def begin_eye_frame(eyes, shot_dir: str, n: int, first_frame: int) -> dict:
    """Put the eye scene (:func:`scene.eye_scene`) on shot frame ``n``; returns the keyword arguments of
    ``bpy.ops.render.render``."""
    eyes.frame_set(first_frame + n - 1)
    eyes.render.filepath = _scratch(shot_dir, n)
    return {"write_still": True, "scene": eyes.name}


def finish_eye_frame(shot_dir: str, n: int) -> bool:
    """Move the two eyes Blender wrote into ``eyes/left`` and ``eyes/right``; False if they are not there
    (the render was cancelled)."""
    base = _scratch(shot_dir, n)
    written = {eye: f"{base}{suffix}.exr" for eye, suffix in (("left", "_L"), ("right", "_R"))}
    if not all(os.path.exists(path) for path in written.values()):
        for path in written.values():
            if os.path.exists(path):
                os.remove(path)
        return False
    for eye, path in written.items():
        os.replace(path, shotlib.eye_path(shot_dir, eye, n))
    return True


# -- the Scene source ---------------------------------------------------------------------------------------

def scene_source_dirs(output_dir: str) -> tuple[str, str]:
    """Where the Scene source's frames and depth go: beside the shot folder (the backend never reads its
    inputs from inside the folder it writes)."""
    base = output_dir.rstrip(os.sep) + ".scene"
    return os.path.join(base, "color"), os.path.join(base, "depth")


#: ``scene.stereoforge.source_engine``: how the Scene source renders its centre view and Z pass.
ENGINE_CYCLES, ENGINE_EEVEE, ENGINE_SCENE = "CYCLES", "EEVEE", "SCENE"


def source_engine_note(engine: str, samples: int, has_gpu: bool) -> tuple[str, str] | None:
    """What the Scene source says about the engine it renders with, as ``(report kind, line)``: a warning for
    EEVEE on a machine without a GPU."""
    if engine == ENGINE_CYCLES:
        return "INFO", (f"Scene source: rendering with Cycles at {samples} samples (Source Engine: EEVEE or the "
                        "scene's own engine instead)")
    if engine == ENGINE_EEVEE and not has_gpu:
        return "WARNING", ("Scene source: EEVEE on a machine with no GPU renders in software, minutes per frame; "
                           "Cycles at low samples is much faster")
    return None


def make_source_scene(scene, camera, exclude_collections, engine: str, samples: int) -> bpy.types.Scene:
    """A throw-away copy of ``scene`` (sharing its objects) that renders ``camera`` mono, with a compositor
    that writes the Z pass as depth in metres (0 where nothing was hit). The artist's scene is not touched.

    ``engine`` is one of ``ENGINE_*``: Cycles at ``samples`` (the default: fast on a CPU, and its Z pass is
    what the pipeline was checked with), EEVEE, or whatever the scene renders with.
    """
    copy = scene.copy()
    copy.name = f"{scene.name} (StereoForge source)"
    copy.camera = camera
    if engine == ENGINE_CYCLES:
        copy.render.engine = "CYCLES"
        copy.cycles.samples = samples
        copy.cycles.use_adaptive_sampling = False
    elif engine == ENGINE_EEVEE:
        copy.render.engine = EEVEE
    r = copy.render
    r.use_multiview = False
    r.use_compositing = True
    r.use_sequencer = False
    r.use_file_extension = True
    im = r.image_settings
    im.file_format, im.color_mode, im.color_depth, im.compression = "PNG", "RGB", "16", 15
    layer = copy.view_layers[0] if len(copy.view_layers) == 1 else (
        copy.view_layers.get(bpy.context.view_layer.name) or copy.view_layers[0])
    for vl in copy.view_layers:
        vl.use = vl == layer
    layer.use_pass_z = True
    for child in layer.layer_collection.children:
        if child.collection in exclude_collections:
            child.exclude = True
    copy.use_nodes = True
    tree = copy.node_tree
    tree.nodes.clear()
    source = tree.nodes.new("CompositorNodeRLayers")
    source.scene, source.layer = copy, layer.name
    hit = tree.nodes.new("CompositorNodeMath")
    hit.operation, hit.inputs[1].default_value = "LESS_THAN", NO_HIT_DEPTH
    depth = tree.nodes.new("CompositorNodeMath")
    depth.operation = "MULTIPLY"
    tree.links.new(source.outputs["Depth"], hit.inputs[0])
    tree.links.new(source.outputs["Depth"], depth.inputs[0])
    tree.links.new(hit.outputs[0], depth.inputs[1])
    out = tree.nodes.new("CompositorNodeOutputFile")
    out.name = "StereoForge depth"
    out.format.file_format, out.format.color_depth, out.format.color_mode = "OPEN_EXR", "32", "BW"
    out.format.exr_codec = "ZIP"
    out.file_slots[0].path = "depth_"
    tree.links.new(depth.outputs[0], out.inputs[0])
    composite = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(source.outputs["Image"], composite.inputs["Image"])
    return copy


def begin_scene_frame(copy, color_dir: str, depth_dir: str, frame: int) -> dict:
    copy.frame_set(frame)
    copy.render.filepath = os.path.join(color_dir, f"{frame:06d}")
    copy.node_tree.nodes["StereoForge depth"].base_path = os.path.join(depth_dir, ".render")
    return {"write_still": True, "scene": copy.name}


def finish_scene_frame(color_dir: str, depth_dir: str, frame: int) -> bool:
    scratch = glob.glob(os.path.join(depth_dir, ".render", "*.exr"))
    if not os.path.exists(os.path.join(color_dir, frame_name(frame, "png"))) or len(scratch) != 1:
        for path in scratch:
            os.remove(path)
        return False
    os.replace(scratch[0], os.path.join(depth_dir, frame_name(frame, "exr")))
    return True


def scene_focal_px(scene, camera) -> float:
    """Focal length in pixels of ``camera`` at the scene's output resolution (Blender's sensor fit rules)."""
    data, r = camera.data, scene.render
    width = r.resolution_x * r.resolution_percentage / 100.0
    height = r.resolution_y * r.resolution_percentage / 100.0
    fit = data.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width >= height else "VERTICAL"
        sensor = data.sensor_width
    else:
        sensor = data.sensor_width if fit == "HORIZONTAL" else data.sensor_height
    return data.lens / sensor * (width if fit == "HORIZONTAL" else height)


def check_scene_camera(scene, camera) -> str | None:
    """Why ``camera`` cannot be a Scene source (None when it can)."""
    if camera is None:
        return (f"the scene '{scene.name}' has no camera; add one (or pick it as the Source Camera) to use the "
                "Scene source")
    if camera.type != "CAMERA":
        return f"'{camera.name}' is not a camera"
    data = camera.data
    if data.type != "PERSP":
        return f"camera '{camera.name}' is {data.type.lower()}; the Scene source needs a perspective camera"
    if abs(data.shift_x) > 1e-6 or abs(data.shift_y) > 1e-6:
        return (f"camera '{camera.name}' has a lens shift ({data.shift_x:g}, {data.shift_y:g}); set it to 0, "
                "the pipeline puts the principal point at the image centre")
    if abs(scene.render.pixel_aspect_x - scene.render.pixel_aspect_y) > 1e-6:
        return "the scene's pixel aspect is not 1:1; set Pixel Aspect X and Y equal"
    return None

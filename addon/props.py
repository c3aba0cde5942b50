"""``scene.stereoforge``: every setting of the panel, and ``window_manager.stereoforge_job``: the running job.

A headless script sets the same properties the artist sees (the tooltip names each one), then calls
``bpy.ops.stereoforge.run()``. Values the backend works out from the clip (convergence distance, frame rate)
are 0 for "automatic".
"""

from __future__ import annotations

import json
import math

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import takes

SOURCES = [
    ("PROMPT", "Prompt", "Generate the mono video from a text prompt with a video model"),
    ("IMAGE", "Image", "One still image (with an image-to-video Video Model: a clip that starts from it)"),
    ("VIDEO", "Video", "A video file or a folder of frames"),
    ("SCENE", "Scene", "Render this scene's camera, with its Z pass as depth"),
]
DEPTH_KINDS = [
    ("METRIC", "Metric", "Metres along the camera axis (planar depth, as Cycles' Z pass)"),
    ("RELATIVE", "Relative", "Affine-invariant inverse depth (as Depth Anything outputs), mapped to Near..Far"),
    ("DISPARITY", "Disparity", "Pixels between a stereo pair, with the Baseline"),
    ("AFFINE", "Affine", "Affine-invariant depth, bigger = farther (as Marigold outputs), mapped to Near..Far"),
]
CONVERGENCE_MODES = [
    ("OFFAXIS", "Off-Axis", "Parallel eyes with shifted image windows: the convergence plane has zero parallax"),
    ("PARALLEL", "Parallel", "Parallel eyes: everything in front of the screen"),
    ("TOE", "Toe-in", "Eyes turned towards the convergence point"),
]
PIVOTS = [
    ("LEFT", "Left", "The source is the left eye; only the right eye is rendered new"),
    ("CENTER", "Center", "The source is the centre view; both eyes are rendered from it"),
    ("RIGHT", "Right", "The source is the right eye"),
]
EYE_RENDERERS = [
    ("BLENDER", "Blender", "Cycles renders both eyes of the imported point clouds through the stereo camera"),
    ("SPLATTER", "Backend", "The backend's forward splatter renders the eyes (fast, no Blender render)"),
]
INPAINTERS = [
    ("BACKGROUND", "Background", "Fill dropout from the farther neighbour (the background the camera never saw)"),
    ("TELEA", "Telea", "OpenCV's Telea inpainting"),
    ("NONE", "None", "Leave dropout black (to check the raw eyes)"),
    ("MODEL", "Model", "A diffusers inpainting pipeline (Inpainting Model) fills the dropout, chunk by chunk"),
]
LAYOUTS = [
    ("SBS", "Side by Side", "Full side-by-side, left eye on the left"),
    ("SBS_HALF", "Half Side by Side", "Half-width side-by-side (3D TVs)"),
    ("TB", "Top-Bottom", "Full top-bottom, left eye on top"),
    ("TB_HALF", "Half Top-Bottom", "Half-height top-bottom"),
    ("ANAGLYPH", "Anaglyph", "Red-cyan anaglyph (Dubois)"),
    ("SEPARATE", "Separate Eyes", "Two videos, one per eye"),
    ("VR180", "VR180", "Each eye as a half-sphere, side by side, tagged for headsets"),
    ("EXR_MULTIVIEW", "Multi-view EXR", "One EXR per frame holding both eyes as views (Nuke, Blender); no video"),
]
CODECS = [("H264", "H.264", "Plays everywhere"), ("H265", "H.265", "Smaller files"),
          ("H265_10", "H.265 10-bit", "Main 10: less banding in gradients"),
          ("PRORES", "ProRes 422 HQ", "For editorial, in .mov"),
          ("PRORES4444", "ProRes 4444", "For editorial with full colour resolution, in .mov")]
DEVICES = [("AUTO", "Auto", "CUDA when the backend sees a GPU, else CPU"), ("CPU", "CPU", ""),
           ("CUDA", "CUDA", "")]
DTYPES = [("AUTO", "Auto", "bfloat16 or float16 on a GPU, float32 on the CPU"), ("FLOAT32", "float32", ""),
          ("FLOAT16", "float16", ""), ("BFLOAT16", "bfloat16", "")]
OFFLOADS = [("NONE", "None", "Models stay on the device"),
            ("MODEL", "Model", "Each model part moves to the GPU only while it runs: a little slower, much less "
                               "VRAM"),
            ("SEQUENTIAL", "Sequential", "Layer by layer: slowest, least VRAM")]
#: The model pickers: the kinds the backend's list is filtered by, as (window-manager collection, stage, detail).
MODEL_KINDS = {"video": ("video", "text-to-video"), "image_video": ("video", "image-to-video"),
               "depth": ("depth", None), "inpaint": ("inpaint", None)}

#: The lens the backend assumes when none is given: 35 mm on a 36 mm-wide sensor.
SENSOR_WIDTH_MM = 36.0

# -- shot settings of a stereographer (issue 12): engine, frame range, comfort, device per shot
SOURCE_ENGINES = [
    ("CYCLES", "Cycles", "Cycles at Source Samples: quick on a CPU, and its Z pass is exact"),
    ("EEVEE", "EEVEE", "EEVEE: fast with a GPU, very slow without one (software OpenGL)"),
    ("SCENE", "Scene's Engine", "Whatever the scene renders with, at its own settings"),
]
SHOT_DEVICES = [("PREFS", "Preferences", "The device set in the add-on's preferences")] + DEVICES
#: Panel properties that may be keyframed: each becomes a per-frame curve for the backend.
ANIMATABLE = {"interocular": "interocular_curve", "convergence_distance": "convergence_curve",
              "max_parallax": "max_parallax_curve"}
#: The Scene source camera's own stereo settings that may be keyframed instead, by panel property.
CAMERA_STEREO = {"interocular": "interocular_distance", "convergence_distance": "convergence_distance"}


class StereoForgeSettings(bpy.types.PropertyGroup):
    # -- source
    source: EnumProperty(name="Source", items=SOURCES, default="VIDEO",
                         description="Where the mono frames come from")
    prompt: StringProperty(name="Prompt", description="What the generated video shows")
    negative_prompt: StringProperty(name="Negative Prompt", description="What the generated video should not show")
    video_model: StringProperty(name="Video Model",
                                description="Prompt: a diffusers text-to-video pipeline; Image: an image-to-video "
                                            "pipeline (empty: the image is one frame). A Hugging Face id or a "
                                            "folder")
    num_frames: IntProperty(name="Frames", default=0, min=0,
                            description="Frames to generate (0: the model's own; some families round it)")
    width: IntProperty(name="Width", default=0, min=0, subtype="PIXEL",
                       description="Width of the generated video (0: the model's own)")
    height: IntProperty(name="Height", default=0, min=0, subtype="PIXEL",
                        description="Height of the generated video (0: the model's own)")
    steps: IntProperty(name="Steps", default=0, min=0, description="Denoising steps (0: the model's own)")
    guidance: FloatProperty(name="Guidance", default=0.0, min=0.0,
                            description="Classifier-free guidance scale (0: the model's own)")
    seed: IntProperty(name="Seed", default=0, min=0, description="Noise seed: a new seed makes a new take")
    source_path: StringProperty(name="Source Path", subtype="FILE_PATH",
                                description="The image, the video file (mp4/mov/mkv/webm) or the folder of frames")
    source_camera: PointerProperty(name="Source Camera", type=bpy.types.Object,
                                   poll=lambda self, obj: obj.type == "CAMERA",
                                   description="Scene source: the camera to render (empty: the scene camera; "
                                               "set on the first run, since the stereo camera then becomes "
                                               "the scene camera)")
    lens: FloatProperty(name="Source Lens", default=35.0, min=1.0, max=5000.0, unit="CAMERA",
                        description="Focal length of the source camera on a sensor Sensor Width wide (35 mm on "
                                    "36 mm: about 54 degrees horizontally); the Scene source uses the scene "
                                    "camera's")
    # -- depth
    depth_model: StringProperty(name="Depth Model",
                                description="A depth model (Hugging Face id or folder: Depth Anything, DPT, "
                                            "ZoeDepth, Marigold...) that estimates the depth when no Depth Path "
                                            "is given")
    depth_path: StringProperty(name="Depth Path", subtype="FILE_PATH",
                               description="Depth of the source: one file per image (.npy/.exr/16-bit .png), a "
                                           "folder of per-frame files, or one .npy/.npz stack")
    depth_kind: EnumProperty(name="Depth Kind", items=DEPTH_KINDS, default="RELATIVE",
                             description="What the depth files hold")
    depth_scale: FloatProperty(name="Depth Scale", default=1.0, min=1e-9, precision=4,
                               description="Multiply the depth files' values by this first (0.001 for millimetres)")
    near: FloatProperty(name="Near", default=1.0, min=1e-4, unit="LENGTH",
                        description="Relative depth: distance of the nearest point")
    far: FloatProperty(name="Far", default=10.0, min=1e-4, unit="LENGTH",
                       description="Relative depth: distance of the farthest point")
    baseline: FloatProperty(name="Baseline", default=0.0, min=0.0, unit="LENGTH", precision=4,
                            description="Disparity depth: the stereo pair's baseline (0: the interocular)")
    # -- stereo rig (Blender's stereo camera)
    interocular: FloatProperty(name="Interocular Distance", default=0.065, min=1e-5, unit="LENGTH", precision=4,
                               description="Distance between the eyes (Blender's stereo interocular distance); "
                                           "keyframe it for a rig that moves over the shot (the Scene source also "
                                           "follows its camera's keyed stereo interocular)")
    convergence_distance: FloatProperty(name="Convergence Distance", default=0.0, min=0.0, unit="LENGTH",
                                        description="Distance of the zero-parallax plane (0: automatic, the "
                                                    "middle of the clip's depth range in parallax)")
    convergence_mode: EnumProperty(name="Convergence Mode", items=CONVERGENCE_MODES, default="OFFAXIS",
                                   description="Blender's stereo convergence mode")
    pivot: EnumProperty(name="Pivot", items=PIVOTS, default="CENTER",
                        description="Which view stays where the source camera is")
    max_parallax: FloatProperty(name="Depth Budget", default=0.0, min=0.0, max=20.0, subtype="PERCENTAGE",
                                description="Parallax of the nearest point in % of the image width; sets the "
                                            "interocular distance (0: off, use the interocular distance)")
    eye_renderer: EnumProperty(name="Eye Renderer", items=EYE_RENDERERS, default="BLENDER",
                               description="Who renders the left and right eyes")
    samples: IntProperty(name="Eye Samples", default=16, min=1, max=4096,
                         description="Cycles samples per pixel of the eye renders (the points are emissive, so "
                                     "samples only antialias their edges)")
    # -- inpainting
    inpaint: EnumProperty(name="Inpainting", items=INPAINTERS, default="BACKGROUND",
                          description="How dropout (pixels no point reached) is filled")
    inpaint_model: StringProperty(name="Inpainting Model",
                                  description="A diffusers inpainting pipeline (Hugging Face id or folder)")
    inpaint_prompt: StringProperty(name="Inpainting Prompt",
                                   description="Prompt of the inpainting model (empty: the surroundings guide it)")
    inpaint_steps: IntProperty(name="Inpainting Steps", default=0, min=0,
                               description="Denoising steps of the inpainting model (0: its own)")
    inpaint_chunk: IntProperty(name="Chunk", default=8, min=1, description="Frames per inpainting call")
    inpaint_tile: IntProperty(name="Tile", default=512, min=128, subtype="PIXEL",
                              description="Larger frames are inpainted in tiles of this size, overlapping by "
                                          "64 pixels")
    # -- output
    layout: EnumProperty(name="Layout", items=LAYOUTS, default={"SBS"}, options={"ENUM_FLAG"},
                         description="Stereo layouts to composite and encode")
    codec: EnumProperty(name="Codec", items=CODECS, default="H264", description="Video codec")
    crf: IntProperty(name="Quality (CRF)", default=18, min=0, max=51,
                     description="Video quality, 0 lossless .. 51 worst (18 looks clean)")
    fps: FloatProperty(name="Frame Rate", default=0.0, min=0.0,
                       description="Frames per second of the output (0: the source's, or 24)")
    output_dir: StringProperty(name="Output Folder", subtype="DIR_PATH",
                               description="The shot folder: source, depth, point clouds, eyes, masks, filled "
                                           "eyes and the stereo videos go there")
    # -- shot settings of a stereographer (issue 12)
    frame_first: IntProperty(name="First Frame", default=1, min=1,
                             description="First frame of the source to convert, counted from 1 (the Scene "
                                         "source: from the scene's start frame)")
    frame_last: IntProperty(name="Last Frame", default=0, min=0,
                            description="Last frame of the source to convert, inclusive (0: to the end)")
    source_engine: EnumProperty(name="Source Engine", items=SOURCE_ENGINES, default="CYCLES",
                                description="Scene source: the engine that renders the centre view and its Z "
                                            "pass (the scene's own engine setting is not changed)")
    source_samples: IntProperty(name="Source Samples", default=16, min=1, max=4096,
                                description="Scene source with Cycles: samples per pixel of the centre view")
    depth_smoothing: FloatProperty(name="Depth Smoothing", default=1.0, min=0.0, max=60.0, unit="TIME_ABSOLUTE",
                                   description="Relative and affine depth: seconds over which the depth "
                                               "normalisation may change (0: each frame on its own, flickers)")
    depth_edge_radius: IntProperty(name="Depth Edge Radius", default=4, min=0, max=64, subtype="PIXEL",
                                   description="Soft depth edges up to this many pixels wide are made sharp, so "
                                               "no stray points smear into the holes (0: a renderer's exact "
                                               "depth)")
    lens_from_camera: BoolProperty(name="Lens from Scene Camera", default=False,
                                   description="Image and Video sources: take the focal length and sensor width "
                                               "of the scene camera instead of Source Lens and Sensor Width")
    sensor_width: FloatProperty(name="Sensor Width", default=SENSOR_WIDTH_MM, min=1.0, max=200.0,
                                unit="CAMERA", description="Width of the source camera's sensor in mm "
                                                           "(36: full frame; Super 35 is about 24.9)")
    device: EnumProperty(name="Device", items=SHOT_DEVICES, default="PREFS",
                         description="Where the backend computes this shot (torch device)")
    max_far_parallax: FloatProperty(name="Far Parallax Limit", default=0.0, min=0.0, max=20.0,
                                    subtype="PERCENTAGE",
                                    description="Largest parallax behind the screen (the farthest point) in % of "
                                                "the width; a larger one is clamped with a warning (0: off)")
    screen_width: FloatProperty(name="Screen Width", default=0.0, min=0.0, unit="LENGTH",
                                description="Width of the screen the shot is made for; far parallax wider "
                                            "than the viewer's eyes (65 mm) there would make the eyes diverge, "
                                            "so it is clamped with a warning (0: not checked)")
    floating_window: BoolProperty(name="Floating Window", default=False,
                                  description="Black out the frame sides where something in front of the "
                                              "screen is cut by the frame edge (a window violation)")

    def generates(self) -> bool:
        """True when the mono frames come from a video model (a prompt, or an image and an image-to-video
        model)."""
        return self.source == "PROMPT" or (self.source == "IMAGE" and bool(self.video_model.strip()))

    def take_settings(self) -> dict:
        """What makes a take: the same settings are the same take (resumed), others a new one."""
        image = abspath(self.source_path) if self.source == "IMAGE" else None
        return {"source": self.source, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "video_model": self.video_model.strip(), "image": image, "num_frames": self.num_frames,
                "width": self.width, "height": self.height, "steps": self.steps,
                "guidance": _decimal(self.guidance), "seed": self.seed}

    def generate_spec(self, take_dir: str, models: dict) -> dict:
        """The backend's ``generate`` spec of a take: the video only, into ``take_dir``."""
        t = self.take_settings()
        return {"output_dir": take_dir, "video_only": True, "prompt": t["prompt"], "video_model": t["video_model"],
                "image": t["image"], "negative_prompt": t["negative_prompt"] or None,
                "num_frames": t["num_frames"] or None, "width": t["width"] or None,
                "height": t["height"] or None, "steps": t["steps"] or None, "guidance": t["guidance"] or None,
                "seed": t["seed"], "fps": _decimal(self.fps) or None, **models}

    def convert_spec(self, source: str, depth: str, focal_px: float | None = None, first_frame: int = 1,
                     models: dict | None = None) -> dict:
        """The backend's convert spec (``ConvertSpec`` field names) for these settings.

        ``depth`` empty: the Depth Model estimates it. ``focal_px`` overrides the lens (the Scene source knows
        its camera exactly). ``first_frame`` is the scene frame that shows shot frame 1: keyframed rig settings
        are sampled from there on. ``models``: where and how models run (device, dtype, offload: the
        preferences; a shot's own Device wins).
        """
        budget = self.max_parallax > 0
        scene_source = self.source == "SCENE"
        inpaint_model = self.inpaint == "MODEL"
        f = _decimal
        spec = {
            **(models or {}),
            "source": source,
            "output_dir": abspath(self.output_dir),
            "depth": depth or None,
            "depth_model": None if depth else self.depth_model.strip(),
            "depth_kind": "metric" if scene_source else self.depth_kind.lower(),
            "depth_scale": None if scene_source else f(self.depth_scale),
            "near": f(self.near),
            "far": f(self.far),
            "baseline": f(self.baseline) or None,
            "focal_px": focal_px,
            "hfov": None if focal_px else self._hfov(),
            "interocular": None if budget else f(self.interocular),
            "convergence_distance": f(self.convergence_distance) or None,
            "convergence_mode": self.convergence_mode,
            "pivot": self.pivot,
            "max_parallax": f(self.max_parallax) if budget else None,
            "inpaint": "background" if inpaint_model else self.inpaint.lower(),
            "inpaint_model": self.inpaint_model.strip() if inpaint_model else None,
            "inpaint_prompt": self.inpaint_prompt if inpaint_model else None,
            "inpaint_steps": (self.inpaint_steps or None) if inpaint_model else None,
            "inpaint_chunk": self.inpaint_chunk if inpaint_model else None,
            "inpaint_tile": self.inpaint_tile if inpaint_model else None,
            "seed": self.seed if inpaint_model else None,
            "layouts": [layout.lower().replace("_", "-") for layout, *_ in LAYOUTS if layout in self.layout],
            "fps": f(self.fps) or None,
            "codec": self.codec.lower().replace("_", "-"),
            "crf": self.crf,
            # Blender draws every point as a sphere, so it needs them all (stride 1) at full resolution.
            "cloud_stride": 1 if self.eye_renderer == "BLENDER" else None,
        }
        spec.update(self._shot_spec(scene_source, first_frame))
        return spec

    def _shot_spec(self, scene_source: bool, first_frame: int) -> dict:
        """The spec fields of the stereographer's shot settings: frames, depth, comfort, device, keyed rig."""
        f = _decimal
        spec = {
            "depth_smoothing": f(self.depth_smoothing),
            "depth_edge_radius": 0 if scene_source else self.depth_edge_radius,
            "frames": None if scene_source or (self.frame_first, self.frame_last) == (1, 0) else
            (self.frame_first, self.frame_last or None),
            "max_far_parallax": f(self.max_far_parallax) or None,
            "screen_width": f(self.screen_width) or None,
            "floating_window": self.floating_window or None,
        }
        if self.device != "PREFS":
            spec["device"] = self.device.lower()
        camera = (self.source_camera or self.id_data.camera) if scene_source else None
        for name, field in ANIMATABLE.items():
            curve = _keyframed(self.id_data, f"stereoforge.{name}", first_frame)
            if curve is None and camera is not None and name in CAMERA_STEREO:
                curve = _keyframed(camera.data, f"stereo.{CAMERA_STEREO[name]}", first_frame)
            if curve is not None:  # the panel property and its spec field share a name
                spec[field], spec[name] = curve, None
        if spec.get("max_parallax_curve") or self.max_parallax > 0:  # the budget sets the interocular
            spec["interocular"] = spec["interocular_curve"] = None
        return spec

    def _hfov(self) -> float:
        """Horizontal field of view of the source: Source Lens on Sensor Width, or the scene camera's."""
        camera = self.id_data.camera
        if self.lens_from_camera and camera is not None and camera.type == "CAMERA":
            lens, sensor = camera.data.lens, camera.data.sensor_width
        else:
            lens, sensor = self.lens, self.sensor_width
        return math.degrees(2 * math.atan(sensor / 2 / lens))


def _take_items(settings, context):
    return takes.enum_items(abspath(settings.output_dir))


def _take_chosen(settings, context):
    takes.restore(settings, abspath(settings.output_dir), settings.take)


# Given as an object, not an annotation: Blender evaluates string annotations (this module's ``from __future__
# import annotations``) where the callbacks' names are not defined.
StereoForgeSettings.__annotations__["take"] = EnumProperty(
    name="Take", items=_take_items, update=_take_chosen,
    description="The takes generated for this shot so far: choose one to get its settings back (and its video, "
                "kept on disk)")


class StereoForgeModel(bpy.types.PropertyGroup):
    """One model the backend has (``name`` is its id or folder), for the model pickers."""

    description: StringProperty(name="Description")


class StereoForgeModels(bpy.types.PropertyGroup):
    """The backend's models by kind (:data:`MODEL_KINDS`), filled by Refresh Models. Not saved with the file."""

    video: CollectionProperty(type=StereoForgeModel)
    image_video: CollectionProperty(type=StereoForgeModel)
    depth: CollectionProperty(type=StereoForgeModel)
    inpaint: CollectionProperty(type=StereoForgeModel)
    listed: BoolProperty(name="Listed", description="The list was fetched from the backend")


class StereoForgeJobState(bpy.types.PropertyGroup):
    """What the panel and the status bar show about the running (or last) job. Not saved with the file."""

    running: BoolProperty(name="Running")
    cancel_requested: BoolProperty(name="Cancel Requested")
    step: StringProperty(name="Step")
    step_index: IntProperty(name="Step Index")
    step_count: IntProperty(name="Step Count")
    stage: StringProperty(name="Stage")
    done: IntProperty(name="Done")
    total: IntProperty(name="Total")
    message: StringProperty(name="Message")
    shot_dir: StringProperty(name="Shot Folder", subtype="DIR_PATH")
    video: StringProperty(name="Video", subtype="FILE_PATH")
    # -- issue 12: the shot's parallax range (shot.json), as the Stereo Rig panel shows it
    parallax: StringProperty(name="Parallax", description="The shot's parallax range in % of the image width: "
                                                          "nearest point (negative: in front of the screen) and "
                                                          "farthest, over all frames")
    parallax_frames: StringProperty(name="Parallax per Frame",
                                    description="JSON: [first scene frame, [[near %, far %] per shot frame]]")

    def parallax_at(self, frame: int) -> tuple[float, float] | None:
        """``(near %, far %)`` of the shot at scene ``frame``, None outside the shot or before a run."""
        if not self.parallax_frames:
            return None
        first, frames = json.loads(self.parallax_frames)
        return tuple(frames[frame - first]) if 0 <= frame - first < len(frames) else None

    @property
    def factor(self) -> float:
        return self.done / self.total if self.total else 0.0


def _keyframed(owner, data_path: str, first_frame: int) -> str | None:
    """The property ``data_path`` of ``owner`` (an ID: the scene, a camera) keyframed: its value at every shot
    frame up to its last key, as the backend's inline curve ``"1:V1,2:V2,..."`` (shot frame n is scene frame
    ``first_frame + n - 1``; after the last key the value holds, as Blender's curve does). None when it is not
    animated."""
    anim = owner.animation_data
    fcurve = anim.action.fcurves.find(data_path) if anim and anim.action else None
    if fcurve is None or not fcurve.keyframe_points:
        return None
    last = max(key.co.x for key in fcurve.keyframe_points)
    count = max(1, math.ceil(last) - first_frame + 1)
    return ",".join(f"{n}:{_decimal(fcurve.evaluate(first_frame + n - 1))}" for n in range(1, count + 1))


def _decimal(value: float) -> float:
    """A property's value as the user typed it: Blender stores floats in single precision (0.065 comes back as
    0.064999997...), and the backend should see 0.065."""
    return float(f"{value:.7g}")


def abspath(path: str) -> str:
    """A path from a property: Blender's ``//`` (relative to the .blend) expanded, made absolute."""
    import os

    return os.path.abspath(bpy.path.abspath(path)) if path else ""


CLASSES = (StereoForgeSettings, StereoForgeModel, StereoForgeModels, StereoForgeJobState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.stereoforge = PointerProperty(type=StereoForgeSettings, name="StereoForge")
    bpy.types.WindowManager.stereoforge_job = PointerProperty(type=StereoForgeJobState, name="StereoForge Job")
    bpy.types.WindowManager.stereoforge_models = PointerProperty(type=StereoForgeModels, name="StereoForge Models")


def unregister() -> None:
    del bpy.types.WindowManager.stereoforge_models
    del bpy.types.WindowManager.stereoforge_job
    del bpy.types.Scene.stereoforge
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

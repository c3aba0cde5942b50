"""Ground truth for stereo conversion, rendered by Blender: centre view, planar depth and true stereo eyes.

Builds a small procedural scene (no external assets), renders it with Cycles on the CPU and writes, for frames
1..N (numbered from 1, six digits):

    out_dir/
      center/000001.png   the centre camera: 8-bit sRGB PNG, view transform "Standard", look None
      depth/000001.exr    float32 channel ``Z``: planar depth in metres along the camera's -Z axis (Cycles' Z
                          pass of the centre camera; +inf where no geometry is hit), ZIP compressed
      left/000001.png     with eyes: the same frame through Blender's own stereo camera (left eye) ...
      right/000001.png    ... and right eye; same colour settings as the centre
      truth.json          camera, rig and clip facts (see :func:`render_truth`)

Run it with a Python that has ``bpy`` (Blender as a module, 4.5)::

    python tools/blender_truth.py --scene planes --out /tmp/truth --width 160 --height 90 --frames 2

or import it and call :func:`render_truth`. ``bpy`` state is global to the process, so callers that need a
clean Blender (tests) run this file in a subprocess.

Rendering: textures are procedural (checker, noise, wave) with features several pixels wide at 480 px; the
shading is view-independent (no highlights) and computed in the materials, so there are no lights to sample and
the renders are noise-free apart from anti-aliasing: no denoiser, camera rays only. Box pixel filter 1 px, fixed
seed, no motion blur or depth of field, opaque film. The same arguments give byte-identical files.
Measured on 2 shared CPU cores at 480x270, 16 samples: about 0.7-0.8 s per frame for the centre view (render
and saving), 1.5 s for the two eyes.

Conventions, each checked against Blender 4.5 renders (see the notes at the end of this docstring):

- Camera: lens ``lens_mm`` on a ``sensor_width_mm`` sensor, ``sensor_fit = 'HORIZONTAL'``, no shift, so
  ``focal_px = lens_mm / sensor_width_mm * width`` for any aspect and the principal point is the image centre
  (``cx = width / 2``, ``cy = height / 2`` with pixel centres at +0.5).
- Depth: Cycles' Z pass is *planar* depth (distance along the camera's -Z axis, not the ray length) and is
  sampled at the pixel centre. Checked: on a fronto-parallel wall at 5 m the corner pixel reads 5.0 (ray
  length would be 5.8 at a 480x270 corner), and on a floor seen at 30 degrees the pass matches the analytic
  planar depth at pixel centres to 1e-4 m, with any pixel filter and sample count.
- Eyes: ``scene.render.use_multiview`` with ``views_format = 'STEREO_3D'``. Before rendering, a probe render
  engine asks Blender itself for each view's camera model matrix and off-axis shift
  (``RenderEngine.camera_model_matrix`` / ``camera_shift_x`` after ``active_view_set``), and the script
  asserts that the left eye sits at -interocular/2 along the camera's +X (pivot CENTER; 0 for LEFT,
  -interocular for RIGHT) and the right eye on the other side. The measured offsets and shifts go into
  truth.json (``views``). With OFFAXIS, a point at depth Z appears ``focal_px * interocular * (1/Z - 1/C)``
  pixels further right in the left eye than in the right eye (C = convergence distance). Measured on the
  'planes' scene at 480x270 (interocular 0.065 m, C = 4 m): the 2 m plane is 7.60 px further right in the
  left eye (expected 7.58), the 8 m plane 3.79 px further left (expected 3.79). Warping the centre view by its
  depth into each eye with this model matches Blender's eye at 45 dB PSNR on the demo scene (25 dB with the
  eyes swapped, 23 dB without the off-axis shift).

Notes on bpy 4.5 headless, found while writing this:

- The multilayer EXR that ``Image.save_render`` writes from the Render Result names the depth channel
  ``ViewLayer.Depth.Z`` (view layer "ViewLayer", pass "Depth"; the python OpenEXR package groups the colour as
  ``ViewLayer.Combined``).
- ``Image.save_render`` of a multiview result with ``views_format = 'INDIVIDUAL'`` raises "could not be
  saved" (while still writing some files), so the eyes are written by the render itself
  (``write_still``): Blender appends each view's ``file_suffix`` (``_L``/``_R``) before the extension.
- The stereo pivot defaults to LEFT in Blender (the left eye is the camera itself); this script always sets it.
- 8-bit outputs are dithered by default (``render.dither_intensity = 1``): set to 0 here so PNGs are clean
  and deterministic.
- PNGs carry text metadata (date, render time); Cycles adds ``cycles.ViewLayer.*`` timings even with every
  ``render.use_stamp_*`` off, so the text chunks are stripped after saving.
- Pixels with no geometry read 1e10 in the Z pass (written here as +inf). The view transform defaults to AgX.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable

import bpy  # first: importing bpy is what makes bmesh and mathutils importable

# isort: split
import bmesh
import numpy as np
import OpenEXR
from mathutils import Matrix, Vector

# The checkout's backend and add-on, whichever Python with bpy runs this script (numpy is all the backend's rig
# module needs; the add-on, bpy): the rig's names and default, and the render settings the add-on's eyes use.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(_CHECKOUT, "backend"), _CHECKOUT]
from addon.render import NO_HIT_DEPTH  # noqa: E402
from addon.scene import box_filtered_cycles, standard_view, stereo_views  # noqa: E402

from stereoforge.rig import CONVERGENCE_MODES, DEFAULT_INTEROCULAR, PIVOTS  # noqa: E402

SCENES = ("demo", "planes", "orbit")

# Lighting is computed in the materials, not traced: each surface emits albedo * (ambient + sun), with
#   ambient = AMBIENT * (0.75 + 0.25 * n.z)       a sky-like term, brighter on upward-facing surfaces
#   sun     = SUN * max(0, n . SUN_TOWARDS)       Lambertian light from one direction (no cast shadows)
# where n is the shading normal. Both terms depend on the surface only, never on the viewpoint, so the eyes see
# exactly the colours the centre sees; there are no lights to sample, so the only noise left is anti-aliasing
# (no denoiser needed), and a frame renders in a fraction of the time a sun lamp with shadows takes.
AMBIENT = 0.5
SUN = 0.5
#: Unit vector towards the sun (world axes): behind (-Y), above and to the right of a camera looking along +Y.
SUN_TOWARDS = tuple(Vector((0.35, -0.6, 0.72)).normalized())


_DESCRIPTIONS = {
    "demo": "A room (floor, side walls, back wall at 9 m) with a ball on a stand, a cube, a column, a tall "
            "box and a globe between 1.8 and 7 m; the camera trucks sideways and dollies in slightly while a "
            "small cube flies across. Rendered with Blender Cycles; depth is Cycles' planar Z pass.",
    "planes": "Three fronto-parallel textured planes at 2, 4 and 8 m (the 8 m plane fills the background); "
              "static camera.",
    "orbit": "Objects on a checkered floor inside a walled yard; the camera orbits slowly around them, looking "
             "at the centre, while a sphere crosses the set.",
}


# --------------------------------------------------------------------------------------------- materials

def _socket(sockets, identifier: str):
    """A node socket by its identifier (Mix nodes have several inputs called 'A': one per data type)."""
    for socket in sockets:
        if socket.identifier == identifier:
            return socket
    raise KeyError(identifier)


def _material(name: str, pattern: str, color_a, color_b, scale: float, mottle_scale: float = 1.0):
    """A matte, view-independent material with a procedural colour pattern, lit as described at the top.

    The pattern is in object coordinates, which are metres for the meshes made here, so ``scale`` sets the
    feature size: a checker square is ``1 / scale`` m, noise blobs and wave bands are about that size too.
    A low-frequency noise "mottle" (features about ``1 / mottle_scale`` m) darkens the pattern by up to 35%
    so that no two patches of a repeating pattern look alike (which keeps image matching unambiguous).

    Args:
        pattern: 'checker', 'noise' or 'wave'.
        color_a, color_b: linear RGB in 0..1.
    """
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    # Shift the pattern by a quarter feature so flat faces through the object's origin (local z = 0) do not
    # lie on a checker boundary, where rounding flips squares along a seam.
    offset = nodes.new("ShaderNodeMapping")
    offset.inputs["Location"].default_value = (0.25 / scale, 0.25 / scale, 0.25 / scale)
    links.new(coords.outputs["Object"], offset.inputs["Vector"])
    if pattern == "checker":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value = (*color_a, 1.0)
        tex.inputs["Color2"].default_value = (*color_b, 1.0)
        tex.inputs["Scale"].default_value = scale
        links.new(offset.outputs["Vector"], tex.inputs["Vector"])
        color = tex.outputs["Color"]
    elif pattern in ("noise", "wave"):
        if pattern == "noise":
            tex = nodes.new("ShaderNodeTexNoise")
            tex.inputs["Detail"].default_value = 1.5
            tex.inputs["Roughness"].default_value = 0.4
        else:
            tex = nodes.new("ShaderNodeTexWave")
            tex.wave_type = "BANDS"
            tex.bands_direction = "DIAGONAL"
            tex.inputs["Distortion"].default_value = 2.0
            tex.inputs["Detail"].default_value = 1.0
        tex.inputs["Scale"].default_value = scale
        links.new(offset.outputs["Vector"], tex.inputs["Vector"])
        ramp = nodes.new("ShaderNodeValToRGB")
        lo, hi = (0.35, 0.65) if pattern == "noise" else (0.2, 0.8)
        ramp.color_ramp.elements[0].position, ramp.color_ramp.elements[0].color = lo, (*color_a, 1.0)
        ramp.color_ramp.elements[1].position, ramp.color_ramp.elements[1].color = hi, (*color_b, 1.0)
        links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
        color = ramp.outputs["Color"]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")

    mottle = nodes.new("ShaderNodeTexNoise")
    mottle.inputs["Scale"].default_value = mottle_scale
    mottle.inputs["Detail"].default_value = 1.0
    links.new(coords.outputs["Object"], mottle.inputs["Vector"])
    shade = nodes.new("ShaderNodeMapRange")  # noise Fac (mostly 0.3..0.7) -> brightness 0.65..1
    shade.inputs["From Min"].default_value, shade.inputs["From Max"].default_value = 0.3, 0.7
    shade.inputs["To Min"].default_value, shade.inputs["To Max"].default_value = 0.65, 1.0
    links.new(mottle.outputs["Fac"], shade.inputs["Value"])
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    _socket(mix.inputs, "Factor_Float").default_value = 1.0
    links.new(color, _socket(mix.inputs, "A_Color"))
    links.new(shade.outputs["Result"], _socket(mix.inputs, "B_Color"))

    albedo = _socket(mix.outputs, "Result_Color")
    geometry = nodes.new("ShaderNodeNewGeometry")
    facing_sun = nodes.new("ShaderNodeVectorMath")
    facing_sun.operation = "DOT_PRODUCT"
    facing_sun.inputs[1].default_value = SUN_TOWARDS
    links.new(geometry.outputs["Normal"], facing_sun.inputs[0])
    sunlit = nodes.new("ShaderNodeMath")  # max(0, n . sun)
    sunlit.operation = "MAXIMUM"
    sunlit.inputs[1].default_value = 0.0
    links.new(facing_sun.outputs["Value"], sunlit.inputs[0])
    facing_up = nodes.new("ShaderNodeVectorMath")
    facing_up.operation = "DOT_PRODUCT"
    facing_up.inputs[1].default_value = (0.0, 0.0, 1.0)
    links.new(geometry.outputs["Normal"], facing_up.inputs[0])
    ambient = nodes.new("ShaderNodeMath")  # AMBIENT * (0.75 + 0.25 n.z)
    ambient.operation = "MULTIPLY_ADD"
    ambient.inputs[1].default_value, ambient.inputs[2].default_value = 0.25 * AMBIENT, 0.75 * AMBIENT
    links.new(facing_up.outputs["Value"], ambient.inputs[0])
    light = nodes.new("ShaderNodeMath")  # SUN * sunlit + ambient
    light.operation = "MULTIPLY_ADD"
    light.inputs[1].default_value = SUN
    links.new(sunlit.outputs["Value"], light.inputs[0])
    links.new(ambient.outputs["Value"], light.inputs[2])
    glow = nodes.new("ShaderNodeEmission")
    links.new(albedo, glow.inputs["Color"])
    links.new(light.outputs["Value"], glow.inputs["Strength"])
    out = nodes.new("ShaderNodeOutputMaterial")
    out.target = "CYCLES"
    links.new(glow.outputs["Emission"], out.inputs["Surface"])
    return mat


# -------------------------------------------------------------------------------------------------- meshes
# Meshes are built at their real size (object scale 1), so object texture coordinates are in metres.

def _mesh_from_bmesh(name: str, build: Callable[[bmesh.types.BMesh], None], smooth: bool = False):
    bm = bmesh.new()
    build(bm)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    if smooth:
        mesh.shade_smooth()
    return mesh


def _box(name: str, size_x: float, size_y: float, size_z: float):
    """A box centred on its origin."""
    return _mesh_from_bmesh(name, lambda bm: bmesh.ops.create_cube(
        bm, size=1.0, matrix=Matrix.Diagonal((size_x, size_y, size_z, 1.0))))


def _sphere(name: str, radius: float):
    return _mesh_from_bmesh(name, lambda bm: bmesh.ops.create_uvsphere(
        bm, u_segments=64, v_segments=32, radius=radius), smooth=True)


def _cylinder(name: str, radius: float, height: float):
    """An upright capped cylinder centred on its origin (smooth sides, flat caps)."""
    def build(bm):
        bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments=64, radius1=radius, radius2=radius,
                              depth=height)
    mesh = _mesh_from_bmesh(name, build)
    for poly in mesh.polygons:  # smooth the sides only, so the caps stay flat
        poly.use_smooth = abs(poly.normal.z) < 0.5
    return mesh


def _quad(name: str, size_x: float, size_y: float):
    """A rectangle in the local XY plane (normal +Z), centred on its origin."""
    mesh = bpy.data.meshes.new(name)
    hx, hy = size_x / 2, size_y / 2
    mesh.from_pydata([(-hx, -hy, 0), (hx, -hy, 0), (hx, hy, 0), (-hx, hy, 0)], [], [(0, 1, 2, 3)])
    mesh.update()
    return mesh


def _add(scene, name: str, mesh, material, location=(0, 0, 0), rotation_deg=(0, 0, 0)):
    obj = bpy.data.objects.new(name, mesh)
    obj.data.materials.append(material)
    obj.location = location
    obj.rotation_euler = [math.radians(a) for a in rotation_deg]
    scene.collection.objects.link(obj)
    return obj


def _wall_facing_camera(scene, name, material, width, height, y, x=0.0, z=None):
    """A rectangle standing in the plane ``Y = y`` (facing -Y, towards a camera looking along +Y)."""
    z = height / 2 if z is None else z
    return _add(scene, name, _quad(name, width, height), material, (x, y, z), (90, 0, 0))


# ---------------------------------------------------------------------------------------------- cameras

def _look_at(camera, location, target):
    """Place the camera at ``location`` looking at ``target``, its up vector towards world +Z."""
    location = Vector(location)
    camera.location = location
    camera.rotation_euler = (Vector(target) - location).to_track_quat("-Z", "Y").to_euler()


# ------------------------------------------------------------------------------------------------- scenes
# Each builder fills the scene and returns update(t): put the camera and moving objects where they are at
# time t seconds (frame 1 is t = 0). Motion is periodic in t, so any clip length stays inside the set.

def _build_demo(scene, camera) -> Callable[[float], None]:
    # World axes: the camera looks along +Y from about (0, 0, 1.6), pitched down; X right, Z up. The room is
    # 10 m wide with its back wall at Y = 9 m and no ceiling (the camera never looks up that far).
    floor = _material("floor", "checker", (0.55, 0.45, 0.30), (0.25, 0.20, 0.14), scale=1.0, mottle_scale=0.4)
    back = _material("back_wall", "wave", (0.20, 0.35, 0.65), (0.70, 0.75, 0.85), scale=0.35,
                     mottle_scale=0.5)
    side = _material("side_wall", "noise", (0.65, 0.55, 0.45), (0.30, 0.45, 0.35), scale=0.6,
                     mottle_scale=0.3)
    _add(scene, "floor", _quad("floor", 10.0, 14.0), floor, (0, 4.0, 0))
    _wall_facing_camera(scene, "back_wall", back, 10.0, 6.0, y=9.0)
    _add(scene, "wall_left", _quad("wall_left", 14.0, 6.0), side, (-5.0, 4.0, 3.0), (90, 0, 90))
    _add(scene, "wall_right", _quad("wall_right", 14.0, 6.0), side, (5.0, 4.0, 3.0), (90, 0, -90))
    # A wall behind the camera too, so no camera ray can leave the room.
    _add(scene, "wall_front", _quad("wall_front", 10.0, 6.0), side, (0, -3.0, 3.0), (90, 0, 180))

    red = _material("red_ball", "checker", (0.85, 0.15, 0.10), (0.95, 0.80, 0.20), scale=8.0)
    stand = _material("stand", "noise", (0.20, 0.20, 0.22), (0.45, 0.45, 0.50), scale=8.0)
    cube = _material("cube", "checker", (0.10, 0.30, 0.90), (0.55, 0.85, 0.95), scale=5.0)
    column = _material("column", "wave", (0.15, 0.60, 0.15), (0.80, 0.90, 0.30), scale=1.5)
    tower = _material("tower", "checker", (0.90, 0.70, 0.10), (0.35, 0.20, 0.60), scale=2.5)
    globe = _material("globe", "noise", (0.80, 0.15, 0.60), (0.95, 0.60, 0.75), scale=2.0)
    flyer = _material("flyer", "checker", (0.95, 0.95, 0.95), (0.05, 0.55, 0.45), scale=7.0)
    # Depths below are from the camera's start (Y = 0); the dolly brings the camera 0.3 m closer.
    _add(scene, "red_ball", _sphere("red_ball", 0.25), red, (-0.45, 2.4, 1.1))  # front at 2.15 m
    _add(scene, "red_ball_stand", _cylinder("red_ball_stand", 0.04, 0.9), stand, (-0.45, 2.4, 0.45))
    _add(scene, "cube", _box("cube", 0.7, 0.7, 0.7), cube, (0.85, 3.4, 0.35), (0, 0, 25))
    _add(scene, "column", _cylinder("column", 0.3, 1.8), column, (-1.5, 4.6, 0.9))
    _add(scene, "tower", _box("tower", 0.8, 0.8, 2.0), tower, (1.9, 6.2, 1.0), (0, 0, -30))
    _add(scene, "globe", _sphere("globe", 0.6), globe, (0.3, 7.0, 0.6))
    flying = _add(scene, "flyer", _box("flyer", 0.35, 0.35, 0.35), flyer, (0, 5.0, 1.5))

    def update(t: float) -> None:
        phase = 2 * math.pi * t / 3.0  # a 3 s cycle; the 1.5 s demo clip is its first half
        x = -0.5 * math.cos(phase)  # truck from x = -0.5 to +0.5 m ...
        y = 0.15 * (1 - math.cos(phase))  # ... while dollying in 0.3 m, ...
        _look_at(camera, (x, y, 1.6), (0.0, 4.5, 0.8))  # ... aiming at a point 4.5 m away, 10 degrees down
        flying.location = (1.6 * math.cos(phase), 5.0, 1.5 + 0.15 * math.sin(phase))
        flying.rotation_euler = (0.3, 0.2, phase)

    return update


def _build_planes(scene, camera) -> Callable[[float], None]:
    # Camera at (0, 0, 1.6) looking along +Y (level), so a plane Y = d is fronto-parallel at depth d.
    near = _material("plane_2m", "checker", (0.90, 0.20, 0.15), (0.95, 0.85, 0.30), scale=10.0,
                     mottle_scale=3.0)
    mid = _material("plane_4m", "checker", (0.15, 0.60, 0.20), (0.85, 0.95, 0.85), scale=5.0,
                    mottle_scale=1.5)
    far = _material("plane_8m", "noise", (0.15, 0.25, 0.80), (0.80, 0.85, 0.95), scale=1.2, mottle_scale=0.5)
    _wall_facing_camera(scene, "plane_2m", near, 0.9, 0.7, y=2.0, x=-0.45, z=1.55)
    _wall_facing_camera(scene, "plane_4m", mid, 1.6, 1.4, y=4.0, x=0.95, z=1.7)
    _wall_facing_camera(scene, "plane_8m", far, 14.0, 9.0, y=8.0, z=1.6)

    def update(t: float) -> None:
        camera.location = (0.0, 0.0, 1.6)
        camera.rotation_euler = (math.radians(90), 0.0, 0.0)

    return update


def _build_orbit(scene, camera) -> Callable[[float], None]:
    # A 14 m square yard with 6 m walls; the objects stand around the origin and the camera circles it.
    floor = _material("floor", "checker", (0.80, 0.80, 0.75), (0.25, 0.30, 0.35), scale=0.7, mottle_scale=0.3)
    walls = _material("walls", "wave", (0.85, 0.55, 0.30), (0.45, 0.25, 0.55), scale=0.3, mottle_scale=0.4)
    _add(scene, "floor", _quad("floor", 14.0, 14.0), floor)
    for name, loc, rot in (("wall_n", (0, 7, 3), (90, 0, 0)), ("wall_s", (0, -7, 3), (90, 0, 180)),
                           ("wall_e", (7, 0, 3), (90, 0, -90)), ("wall_w", (-7, 0, 3), (90, 0, 90))):
        _add(scene, name, _quad(name, 14.0, 6.0), walls, loc, rot)

    red = _material("red_box", "checker", (0.85, 0.12, 0.10), (0.95, 0.75, 0.55), scale=4.0)
    teal = _material("teal_column", "wave", (0.05, 0.55, 0.55), (0.75, 0.95, 0.85), scale=1.5)
    yellow = _material("yellow_ball", "noise", (0.95, 0.80, 0.10), (0.90, 0.35, 0.05), scale=2.5)
    violet = _material("violet_box", "checker", (0.45, 0.20, 0.75), (0.85, 0.80, 0.95), scale=3.0)
    white = _material("rolling_ball", "checker", (0.95, 0.95, 0.95), (0.10, 0.20, 0.85), scale=5.0)
    _add(scene, "red_box", _box("red_box", 1.0, 1.0, 1.0), red, (0.2, 0.3, 0.5), (0, 0, 25))
    _add(scene, "teal_column", _cylinder("teal_column", 0.3, 2.0), teal, (-1.8, 1.5, 1.0))
    _add(scene, "yellow_ball", _sphere("yellow_ball", 0.55), yellow, (1.7, 1.2, 0.55))
    _add(scene, "violet_box", _box("violet_box", 0.6, 0.6, 1.5), violet, (-1.0, -1.3, 0.75), (0, 0, -15))
    rolling = _add(scene, "rolling_ball", _sphere("rolling_ball", 0.35), white, (0, -2.6, 0.35))

    def update(t: float) -> None:
        angle = math.radians(-90 + 25 * math.sin(2 * math.pi * t / 8.0))  # +-25 degrees, an 8 s cycle
        radius = 5.5
        _look_at(camera, (radius * math.cos(angle), radius * math.sin(angle), 1.7), (0, 0, 0.5))
        x = 2.2 * math.sin(2 * math.pi * t / 4.0)  # crosses in front of the set every 2 s
        rolling.location = (x, -2.6, 0.35)
        rolling.rotation_euler = (0.0, x / 0.35, 0.0)  # rolls without slipping

    return update


_BUILDERS = {"demo": _build_demo, "planes": _build_planes, "orbit": _build_orbit}


# -------------------------------------------------------------------------------------------- rendering

def _configure_render(scene, width, height, samples, seed, fps) -> None:
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.fps, r.fps_base = fps, 1.0
    r.film_transparent = False
    r.use_motion_blur = False
    r.use_border = False
    r.use_compositing = False
    r.use_sequencer = False
    r.dither_intensity = 0.0  # Blender dithers 8-bit output by default; keep PNGs clean and deterministic
    r.use_persistent_data = True  # keep Cycles' scene between the per-frame renders
    r.image_settings.color_management = "FOLLOW_SCENE"
    for name in dir(r):  # no metadata stamps (date, render time...) in the files: same input, same bytes
        if name.startswith("use_stamp"):
            setattr(r, name, False)

    box_filtered_cycles(scene, samples)  # the materials emit their shaded colour (see SUN, AMBIENT)
    c = scene.cycles
    c.device = "CPU"
    c.seed = seed
    c.transparent_max_bounces = 0
    c.caustics_reflective = c.caustics_refractive = False
    standard_view(scene)

    scene.view_layers[0].use_pass_z = True


def _make_camera(scene, lens_mm, sensor_width_mm, interocular, convergence_distance, convergence_mode, pivot):
    data = bpy.data.cameras.new("Camera")
    data.type = "PERSP"
    data.lens = lens_mm
    data.sensor_width = sensor_width_mm
    data.sensor_fit = "HORIZONTAL"
    data.shift_x = data.shift_y = 0.0
    data.clip_start, data.clip_end = 0.05, 1000.0
    data.dof.use_dof = False
    stereo = data.stereo
    stereo.interocular_distance = interocular
    stereo.convergence_distance = convergence_distance
    stereo.convergence_mode = convergence_mode
    stereo.pivot = pivot
    camera = bpy.data.objects.new("Camera", data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    return camera


def _set_multiview(scene, on: bool) -> None:
    r = scene.render
    if on:
        stereo_views(r)
    else:
        r.use_multiview = False


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence Blender's per-render log lines (written by C code to file descriptor 1)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _probe_stereo_views(scene) -> dict:
    """Ask Blender where its stereo camera puts each eye, through a throw-away render engine.

    Returns ``{'left': {'offset_x_m', 'shift_x'}, 'right': {...}}``: the eye's position along the centre
    camera's +X axis (metres) and its lens shift (fraction of the sensor width) for the current frame.
    """
    found = {}

    class _StereoProbe(bpy.types.RenderEngine):
        bl_idname = "STEREOFORGE_STEREO_PROBE"
        bl_label = "StereoForge stereo probe"

        def render(self, depsgraph):
            cam = depsgraph.scene.camera
            centre_inv = cam.matrix_world.inverted()
            for view in ("left", "right"):
                self.active_view_set(view)
                model = self.camera_model_matrix(cam, use_spherical_stereo=False)
                offset = centre_inv @ model.translation
                shift = self.camera_shift_x(cam, use_spherical_stereo=False)
                found[view] = {"offset_m": tuple(offset), "shift_x": shift}

    bpy.utils.register_class(_StereoProbe)
    engine = scene.render.engine
    try:
        scene.render.engine = _StereoProbe.bl_idname
        bpy.ops.render.render()
    finally:
        scene.render.engine = engine
        bpy.utils.unregister_class(_StereoProbe)
    if set(found) != {"left", "right"}:
        raise RuntimeError("the stereo probe render did not run; cannot check the eye positions")
    return {view: {"offset_x_m": v["offset_m"][0], "offset_yz_m": v["offset_m"][1:], "shift_x": v["shift_x"]}
            for view, v in found.items()}


def _animate_interocular(camera, start: float, end: float, frames: int) -> None:
    """Key the stereo camera's interocular from ``start`` at frame 1 to ``end`` at frame ``frames``, linearly."""
    stereo = camera.data.stereo
    for frame, value in ((1, start), (frames, end)):
        stereo.interocular_distance = value
        camera.data.keyframe_insert("stereo.interocular_distance", frame=frame)
    for fcurve in camera.data.animation_data.action.fcurves:
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"


def _check_eyes(views: dict, interocular: float, pivot: str) -> None:
    """Assert that Blender's eyes sit where the rig vocabulary says (left really is left)."""
    expected = {"CENTER": (-interocular / 2, interocular / 2), "LEFT": (0.0, interocular),
                "RIGHT": (-interocular, 0.0)}[pivot]
    for view, want in zip(("left", "right"), expected, strict=True):
        got = views[view]["offset_x_m"]
        if abs(got - want) > 1e-5 or max(abs(v) for v in views[view]["offset_yz_m"]) > 1e-5:
            raise AssertionError(f"Blender's {view} eye sits at {got:+.6f} m along camera +X "
                                 f"(off-axis {views[view]['offset_yz_m']}), expected {want:+.6f} m "
                                 f"for pivot {pivot}")


def _read_depth_pass(path: str) -> np.ndarray:
    """The Z pass from a multilayer EXR written by ``save_render`` (channel '<ViewLayer>.Depth.Z')."""
    with OpenEXR.File(path, separate_channels=True) as exr:
        channels = exr.parts[0].channels
        names = [n for n in channels if n.endswith("Depth.Z")]
        if len(names) != 1:
            raise RuntimeError(f"expected one Depth.Z channel in {path}, found channels {sorted(channels)}")
        depth = np.array(channels[names[0]].pixels, dtype=np.float32)
    depth[depth >= NO_HIT_DEPTH] = np.inf  # no hit: +inf in depth/*.exr
    return depth


def _write_depth_exr(path: str, depth: np.ndarray) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    temp = _temp_name(path)
    with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}) as exr:
        exr.write(temp)
    os.replace(temp, path)


def _temp_name(path: str) -> str:
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.tmp{ext}")


def _set_output_format(scene, file_format: str) -> None:
    """Output as 8-bit RGB PNG (display-encoded through the scene's view transform) or 32-bit multilayer EXR
    (linear, every pass)."""
    settings = scene.render.image_settings
    if file_format == "PNG":
        settings.file_format = "PNG"
        settings.color_mode = "RGB"
        settings.color_depth = "8"
        settings.compression = 15
    else:
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_mode = "RGBA"
        settings.color_depth = "32"
        settings.exr_codec = "ZIP"
    settings.views_format = "INDIVIDUAL"


def _strip_png_metadata(path: str) -> None:
    """Drop a PNG's text and time chunks in place (Cycles stamps its render times there even with every
    ``use_stamp_*`` off), so that the same render gives the same bytes. The pixels are untouched."""
    with open(path, "rb") as f:
        data = f.read()
    signature, pos, kept = data[:8], 8, []
    if signature != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunk = data[pos:pos + 12 + length]  # length, type, data, CRC
        if chunk[4:8] not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
            kept.append(chunk)
        pos += 12 + length
    with open(path, "wb") as f:
        f.write(signature + b"".join(kept))


def _save_render(scene, path: str, file_format: str) -> None:
    """Save the current (single-view) Render Result atomically."""
    _set_output_format(scene, file_format)
    temp = _temp_name(path)
    bpy.data.images["Render Result"].save_render(temp, scene=scene)
    if file_format == "PNG":
        _strip_png_metadata(temp)
    os.replace(temp, path)


def render_truth(out_dir: str, scene: str = "demo", width: int = 480, height: int = 270, frames: int = 24,
                 samples: int = 16, interocular: float = DEFAULT_INTEROCULAR, convergence_distance: float = 4.0,
                 convergence_mode: str = "OFFAXIS", pivot: str = "CENTER", eyes: bool = True,
                 lens_mm: float = 35.0, sensor_width_mm: float = 36.0, fps: int = 24, seed: int = 0,
                 quiet: bool = True, interocular_end: float | None = None) -> dict:
    """Render a procedural scene's ground truth into ``out_dir`` (see the module docstring for the layout).

    This resets Blender's state (factory settings, empty scene) first. Run it in its own process when the
    caller also uses ``bpy``.

    Args:
        out_dir: output folder (created; files already there are overwritten).
        scene: 'demo', 'planes' or 'orbit'.
        width, height: image size in pixels.
        frames: number of frames, written as 000001 .. N; frame n is at time (n - 1) / fps seconds.
        samples: Cycles samples per pixel.
        interocular: distance between the eyes, metres.
        convergence_distance: distance of the zero-parallax plane (OFFAXIS) or of the toe-in point, metres.
        convergence_mode: 'OFFAXIS', 'PARALLEL' or 'TOE' (Blender's ``Camera.stereo.convergence_mode``).
        pivot: 'CENTER' (eyes at -/+ interocular/2 along camera +X), 'LEFT' (the left eye is the camera, the
            right eye interocular to its right) or 'RIGHT' (the mirror image).
        eyes: also render the left/right eyes with Blender's stereo camera.
        lens_mm, sensor_width_mm: focal length and sensor width, millimetres (horizontal sensor fit).
        fps: frames per second; also sets the time step of the scene's motion.
        seed: Cycles' sampling seed (the same for every frame).
        quiet: hide Blender's render log lines.
        interocular_end: an animated rig: the stereo camera's interocular is keyed from ``interocular`` at
            frame 1 to this at the last frame, linearly (None: the rig holds still).

    Returns:
        The contents of truth.json: scene, width, height, frames, fps, focal_px, hfov_deg, cx, cy, lens_mm,
        sensor_width_mm, interocular, convergence_distance, convergence_mode, pivot, samples, seed,
        blender_version, near and far (min/max of the finite depth over the clip), and with eyes, views
        (Blender's eye offsets along camera +X in metres and their lens shifts in pixels), and
        interocular_frames (the interocular at each frame, as Blender's camera had it; checked against where
        Blender put the eyes at each frame when the rig is animated). Also, not in the file:
        seconds_per_frame ({'center': s, 'eyes': s}, mean wall time of one frame's render and save).
    """
    if scene not in _BUILDERS:
        raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
    if convergence_mode not in CONVERGENCE_MODES:
        raise ValueError(f"unknown convergence_mode {convergence_mode!r}; choose one of {CONVERGENCE_MODES}")
    if pivot not in PIVOTS:
        raise ValueError(f"unknown pivot {pivot!r}; choose one of {PIVOTS}")
    if width < 1 or height < 1 or frames < 1 or samples < 1 or fps <= 0:
        raise ValueError("width, height, frames, samples and fps must be positive")
    if interocular_end is not None and interocular_end < 0:
        raise ValueError("interocular_end must be >= 0")
    if interocular < 0 or convergence_distance <= 0 or lens_mm <= 0 or sensor_width_mm <= 0:
        raise ValueError("interocular must be >= 0; convergence_distance, lens_mm, sensor_width_mm > 0")

    out_dir = os.path.abspath(out_dir)
    work = os.path.join(out_dir, ".work")
    folders = ["center", "depth"] + (["left", "right"] if eyes else [])
    for name in folders + [".work"]:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bl_scene = bpy.context.scene
    _configure_render(bl_scene, width, height, samples, seed, fps)
    camera = _make_camera(bl_scene, lens_mm, sensor_width_mm, interocular, convergence_distance,
                          convergence_mode, pivot)
    world = bpy.data.worlds.new("World")  # black and never seen: the sets are closed, the light is emitted
    world.color = (0.0, 0.0, 0.0)
    bl_scene.world = world
    update = _BUILDERS[scene](bl_scene, camera)
    bl_scene.frame_start, bl_scene.frame_end = 1, frames
    if interocular_end is not None:
        _animate_interocular(camera, interocular, interocular_end, frames)
    interoculars = []

    views = None
    near, far = math.inf, -math.inf
    times = {"center": 0.0, "eyes": 0.0}
    for frame in range(1, frames + 1):
        bl_scene.frame_set(frame)
        update((frame - 1) / fps)
        bpy.context.view_layer.update()
        name = f"{frame:06d}"

        interoculars.append(camera.data.stereo.interocular_distance)
        # Where Blender puts the eyes: checked once, or at every frame when the rig moves.
        if eyes and (views is None or interocular_end is not None):
            _set_multiview(bl_scene, True)
            with _quiet(quiet):
                frame_views = _probe_stereo_views(bl_scene)
            _check_eyes(frame_views, interoculars[-1], pivot)
            views = views or frame_views

        start = time.perf_counter()
        _set_multiview(bl_scene, False)
        with _quiet(quiet):
            bpy.ops.render.render()
        layers = os.path.join(work, f"{name}.exr")
        _save_render(bl_scene, layers, "EXR")
        depth = _read_depth_pass(layers)
        os.remove(layers)
        _write_depth_exr(os.path.join(out_dir, "depth", f"{name}.exr"), depth)
        _save_render(bl_scene, os.path.join(out_dir, "center", f"{name}.png"), "PNG")
        finite = depth[np.isfinite(depth)]
        if finite.size:
            near, far = min(near, float(finite.min())), max(far, float(finite.max()))
        times["center"] += time.perf_counter() - start

        if eyes:
            start = time.perf_counter()
            _set_multiview(bl_scene, True)
            _set_output_format(bl_scene, "PNG")
            base = os.path.join(work, name)
            bl_scene.render.filepath = base
            bl_scene.render.use_file_extension = True
            with _quiet(quiet):
                bpy.ops.render.render(write_still=True)
            for view, suffix in (("left", "_L"), ("right", "_R")):
                written = f"{base}{suffix}.png"
                if not os.path.exists(written):
                    raise RuntimeError(f"Blender did not write the {view} eye where expected ({written}); "
                                       f"found {sorted(os.listdir(work))}")
                _strip_png_metadata(written)
                os.replace(written, os.path.join(out_dir, view, f"{name}.png"))
            times["eyes"] += time.perf_counter() - start

    _set_multiview(bl_scene, False)
    shutil.rmtree(work, ignore_errors=True)

    focal_px = lens_mm / sensor_width_mm * width
    truth = {
        "scene": scene,
        "description": _DESCRIPTIONS[scene],
        "width": width,
        "height": height,
        "frames": frames,
        "fps": fps,
        "focal_px": focal_px,
        "hfov_deg": math.degrees(2 * math.atan(sensor_width_mm / (2 * lens_mm))),
        "cx": width / 2,
        "cy": height / 2,
        "lens_mm": lens_mm,
        "sensor_width_mm": sensor_width_mm,
        "interocular": interocular,
        "convergence_distance": convergence_distance,
        "convergence_mode": convergence_mode,
        "pivot": pivot,
        "samples": samples,
        "seed": seed,
        "blender_version": bpy.app.version_string,
        "near": near if math.isfinite(near) else None,
        "far": far if math.isfinite(far) else None,
        "interocular_frames": [round(b, 9) for b in interoculars],
    }
    if views is not None:
        truth["views"] = {view: {"offset_x_m": round(v["offset_x_m"], 9),
                                 "shift_px": round(v["shift_x"] * width, 6)} for view, v in views.items()}
    temp = os.path.join(out_dir, ".truth.tmp.json")
    with open(temp, "w") as f:
        json.dump(truth, f, indent=2)
        f.write("\n")
    os.replace(temp, os.path.join(out_dir, "truth.json"))
    return {**truth, "seconds_per_frame": {k: v / frames for k, v in times.items() if eyes or k == "center"}}


# ------------------------------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="blender_truth.py",
        description="Render stereo ground truth with Blender (Cycles, CPU) into DIR: center/NNNNNN.png (the "
                    "centre view, 8-bit sRGB, view transform Standard), depth/NNNNNN.exr (its Z pass: planar "
                    "depth in metres along the camera's -Z axis, float32 channel Z), left/ and right/NNNNNN.png "
                    "(the same frame through Blender's own stereo camera) and truth.json (camera, rig, "
                    "near/far). Frames are numbered from 000001.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--scene", choices=SCENES, default="demo",
                        help="demo: a room with objects at 1.8-7 m, the camera trucking and dollying, one "
                             "object flying; planes: fronto-parallel planes at 2, 4 and 8 m, static camera; "
                             "orbit: objects on a floor, the camera orbiting them (default: %(default)s)")
    parser.add_argument("--width", type=int, default=480, metavar="PX", help="image width in pixels "
                        "(default: %(default)s)")
    parser.add_argument("--height", type=int, default=270, metavar="PX", help="image height in pixels "
                        "(default: %(default)s)")
    parser.add_argument("--frames", type=int, default=24, metavar="N",
                        help="number of frames, written 000001..N (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=24, metavar="FPS",
                        help="frames per second; frame n shows the scene at time (n-1)/FPS seconds "
                             "(default: %(default)s)")
    parser.add_argument("--samples", type=int, default=16, metavar="N",
                        help="Cycles samples per pixel; they only anti-alias, the lighting is noise-free "
                             "(default: %(default)s)")
    parser.add_argument("--interocular", type=float, default=DEFAULT_INTEROCULAR, metavar="M",
                        help="distance between the eyes in metres (default: %(default)s)")
    parser.add_argument("--interocular-end", type=float, default=None, metavar="M",
                        help="an animated rig: the interocular goes linearly from --interocular at frame 1 to M "
                             "at the last frame (keyed on Blender's stereo camera)")
    parser.add_argument("--convergence-distance", type=float, default=4.0, metavar="M",
                        help="distance in metres of the zero-parallax plane (OFFAXIS) or of the point the eyes "
                             "turn to (TOE); unused by PARALLEL (default: %(default)s)")
    parser.add_argument("--convergence-mode", choices=CONVERGENCE_MODES, default="OFFAXIS",
                        help="Blender's stereo convergence mode (default: %(default)s)")
    parser.add_argument("--pivot", choices=PIVOTS, default="CENTER",
                        help="where the eyes sit relative to the camera: CENTER at -/+ interocular/2 along its "
                             "+X axis; LEFT: the left eye is the camera, the right eye interocular to its right; "
                             "RIGHT: the mirror image (default: %(default)s)")
    parser.add_argument("--no-eyes", dest="eyes", action="store_false",
                        help="render only the centre view and depth, not the left/right eyes")
    parser.add_argument("--lens", type=float, default=35.0, metavar="MM",
                        help="focal length in millimetres (default: %(default)s)")
    parser.add_argument("--sensor-width", type=float, default=36.0, metavar="MM",
                        help="sensor width in millimetres, horizontal sensor fit; focal_px = lens / sensor "
                             "width * image width (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="Cycles sampling seed, the same for every frame (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="show Blender's render log")
    args = parser.parse_args(argv)
    truth = render_truth(args.out, scene=args.scene, width=args.width, height=args.height, frames=args.frames,
                         samples=args.samples, interocular=args.interocular,
                         convergence_distance=args.convergence_distance, convergence_mode=args.convergence_mode,
                         pivot=args.pivot, eyes=args.eyes, lens_mm=args.lens, sensor_width_mm=args.sensor_width,
                         fps=args.fps, seed=args.seed, quiet=not args.verbose,
                         interocular_end=args.interocular_end)
    print(json.dumps(truth, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

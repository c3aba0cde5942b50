"""StereoForge for Blender: a sidebar panel (3D viewport > N > StereoForge) that turns an image, a video or the
scene into a stereoscopic video, and the same from ``blender -b`` scripts through ``scene.stereoforge`` and
``bpy.ops.stereoforge.run()``, or ``run_shot(scene, **settings)`` (no UI context needed).

The add-on imports only ``bpy`` and the standard library; the heavy work (depth, point clouds, inpainting,
encoding) happens in the StereoForge backend, a separate process (``client.py``). Blender itself imports the
point clouds and renders the eyes through its stereo camera.
"""

from . import operators, prefs, props, ui
from .api import ShotError, run_shot

__all__ = ("ShotError", "register", "run_shot", "unregister")

_MODULES = (props, prefs, operators, ui)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()

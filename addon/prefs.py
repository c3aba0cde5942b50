"""Preferences: where the backend is, where and how its models run, and the "Check Backend" button."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from . import client
from .props import DEVICES, DTYPES, OFFLOADS

BACKEND_KINDS = [
    ("LOCAL", "Local", "Run the backend on this machine, with the Python of an environment where stereoforge is "
                       "installed"),
    ("REMOTE", "Remote", "A StereoForge job server on another machine (URL and token)"),
]


class StereoForgePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend: EnumProperty(name="Backend", items=BACKEND_KINDS, default="LOCAL",
                          description="Where the backend runs")
    python: StringProperty(name="Backend Python", subtype="FILE_PATH",
                           description="Python executable of an environment where stereoforge is installed "
                                       "(empty: Blender's own Python, when it can import stereoforge)")
    url: StringProperty(name="Server URL", description="URL of a StereoForge job server, e.g. http://gpu-box:8765")
    token: StringProperty(name="Token", subtype="PASSWORD", description="Access token of the job server")
    device: EnumProperty(name="Device", items=DEVICES, default="AUTO",
                         description="Where the backend computes (torch device)")
    dtype: EnumProperty(name="Precision", items=DTYPES, default="AUTO",
                        description="Precision of the models' weights and maths")
    offload: EnumProperty(name="CPU Offload", items=OFFLOADS, default="NONE",
                          description="Keep models in CPU memory and move them to the GPU part by part (less VRAM)")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "backend", expand=True)
        if self.backend == "LOCAL":
            layout.prop(self, "python")
            if not self.python:
                found = client.default_python()
                layout.label(text=f"Using Blender's Python: {found}" if found else
                             "Blender's Python cannot import stereoforge: set the backend's Python",
                             icon="INFO" if found else "ERROR")
        else:
            layout.prop(self, "url")
            layout.prop(self, "token")
        layout.prop(self, "device")
        layout.prop(self, "dtype")
        layout.prop(self, "offload")
        layout.operator("stereoforge.check_backend", icon="CHECKMARK")


def preferences(context=None) -> StereoForgePreferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def backend(context=None):
    """The backend client the preferences describe (see :func:`client.make_backend`)."""
    p = preferences(context)
    return client.make_backend(p.backend, python=bpy.path.abspath(p.python) if p.python else "", url=p.url,
                               token=p.token)


def model_options(context=None) -> dict:
    """Where and how the backend runs models, as spec fields (``device``, ``model_dtype``, ``model_offload``)."""
    p = preferences(context)
    return {"device": p.device.lower(), "model_dtype": p.dtype.lower(), "model_offload": p.offload.lower()}


CLASSES = (StereoForgePreferences,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

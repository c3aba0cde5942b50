"""The add-on's side of the option tables, for tests/test_options.py: run with a Python that has ``bpy``::

    python tests/blender/option_table.py ADDON_PARENT_DIR

Imports the add-on's modules from the source tree (as the package ``addon``), registers its settings on the
scene, and prints one line ``RESULT: {...}``: each setting's default, the enum lists and the keys of the convert
spec the panel sends with its defaults.
"""

from __future__ import annotations

import json
import sys

import bpy

sys.path.insert(0, sys.argv[1])
from addon import props  # noqa: E402


def default(prop):
    if prop.type == "ENUM":
        return sorted(prop.default_flag) if prop.is_enum_flag else prop.default
    if prop.type in ("FLOAT", "INT", "BOOLEAN") and getattr(prop, "is_array", False):
        return list(prop.default_array)
    return getattr(prop, "default", None)


bpy.utils.register_class(props.StereoForgeSettings)
bpy.types.Scene.stereoforge = bpy.props.PointerProperty(type=props.StereoForgeSettings)
settings = bpy.context.scene.stereoforge
rna = props.StereoForgeSettings.bl_rna.properties
result = {
    "defaults": {p.identifier: default(p) for p in rna if p.identifier not in ("rna_type", "name")},
    "enums": {p.identifier: [item.identifier for item in p.enum_items] for p in rna if p.type == "ENUM"},
    "dtypes": [item[0] for item in props.DTYPES],
    "offloads": [item[0] for item in props.OFFLOADS],
    "convert_spec": settings.convert_spec("source.png", "depth.npy"),
}
print("RESULT: " + json.dumps(result, default=str), flush=True)
del bpy.types.Scene.stereoforge
bpy.utils.unregister_class(props.StereoForgeSettings)

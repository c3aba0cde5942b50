"""The embedded demo: a short clip rendered with Blender by ``tools/make_demo.py``, with its true depth.

``stereoforge demo`` converts it with the default rig and writes a side-by-side and an anaglyph video. Nothing
is downloaded and no GPU is needed.
"""

from __future__ import annotations

import json
import os

from .errors import InputError
from .shot import INTERMEDIATES
from .spec import ConvertSpec

DEMO_DIR = os.path.join(os.path.dirname(__file__), "data", "demo")


def demo_info() -> dict:
    path = os.path.join(DEMO_DIR, "demo.json")
    if not os.path.exists(path):
        raise InputError(f"the demo clip is missing from this install ('{path}'); reinstall stereoforge, or "
                         "make it with: python tools/make_demo.py")
    with open(path) as f:
        return json.load(f)


def demo_spec(output_dir: str) -> ConvertSpec:
    """The demo's convert settings. It keeps every stage's frames (eyes, masks, fills), which a plain convert
    hands from stage to stage in memory, so that a newcomer finds each stage's work in the shot folder."""
    info = demo_info()
    return ConvertSpec(source=os.path.join(DEMO_DIR, "plate.mp4"), output_dir=output_dir,
                       depth=os.path.join(DEMO_DIR, "depth"), depth_kind="metric", focal_px=info["focal_px"],
                       layouts=("sbs", "anaglyph"), fps=info["fps"], keep=tuple(INTERMEDIATES))

"""The add-on's standard-library modules (``client``, ``http_json``, ``shot_contract``...) loaded without Blender:
``addon/`` as a package whose ``__init__`` (which needs ``bpy``) is not run, so their relative imports work."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

ADDON = Path(__file__).resolve().parents[1] / "addon"
PACKAGE = "stereoforge_addon_modules"


def load(name: str) -> types.ModuleType:
    """``addon/<name>.py`` as a module of the add-on's package."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ADDON)]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")

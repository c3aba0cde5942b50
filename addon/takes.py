"""Takes: each generated video of a shot, kept on disk so that an earlier one can be chosen again (no ``bpy``).

A shot whose frames come from a video model keeps its takes beside the shot folder, in ``<shot>.takes/``: one
folder per take (``take_001``...), the backend's ``generate --video-only`` output (``generated/`` and its
``shot.json``), and beside it ``take_001.json``, the add-on's settings that made it. The same settings find the
same take (so a run resumes it); a new prompt, seed, model or size makes the next one. Choosing a take in the
panel puts its settings back, which makes it the current take again.
"""

from __future__ import annotations

import json
import os

#: The add-on's record of take ``NAME`` is ``NAME`` + this, beside the take's folder (the backend writes only
#: into an empty folder or its own shot).
RECORD_EXT = ".json"
#: The backend's folder of generated frames inside a take (``stereoforge.generate.GENERATED``).
GENERATED = "generated"
#: Settings of a take record kept under another property's name (the still of an image-to-video take).
_PROPERTY_OF = {"image": "source_path"}
#: Enum items handed to Blender (it keeps pointers into the strings, so they must outlive the call).
_items: list[tuple[str, str, str]] = []


def takes_dir(shot_dir: str) -> str:
    """Where the takes of ``shot_dir`` live: beside it, since a shot folder holds only what the backend makes."""
    return shot_dir.rstrip(os.sep) + ".takes"


def listed(shot_dir: str) -> list[tuple[str, dict]]:
    """``(take folder, its settings)`` of every take of the shot, oldest first."""
    root = takes_dir(shot_dir)
    found = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if not name.endswith(RECORD_EXT):
            continue
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                found.append((os.path.join(root, name[:-len(RECORD_EXT)]), json.load(f)))
        except (OSError, ValueError):
            continue  # not a take (or one being written): not offered
    return found


def take_for(shot_dir: str, settings: dict) -> str:
    """The take folder for ``settings``: the existing take made with them, else the next new one (not created
    here: nothing is written before a job starts)."""
    found = listed(shot_dir)
    for folder, record in found:
        if record == json.loads(json.dumps(settings)):
            return folder
    numbers = [int(os.path.basename(folder)[5:]) for folder, _ in found if os.path.basename(folder)[5:].isdigit()]
    return os.path.join(takes_dir(shot_dir), f"take_{max(numbers, default=0) + 1:03d}")


def write_record(take: str, settings: dict) -> None:
    """Write the take's record (atomically) as its generation starts."""
    os.makedirs(os.path.dirname(take), exist_ok=True)
    path = take + RECORD_EXT
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
    os.replace(path + ".tmp", path)


def generated_frames(take: str) -> str:
    return os.path.join(take, GENERATED)


def enum_items(shot_dir: str) -> list[tuple[str, str, str]]:
    """The Take menu: one item per take on disk (its prompt and seed), or one that says there is none."""
    _items.clear()
    for folder, record in listed(shot_dir):
        name = os.path.basename(folder)
        text = record.get("prompt") or os.path.basename(record.get("image") or "")
        _items.append((name, f"{name}: {text[:40]} (seed {record.get('seed')})",
                       f"{record.get('video_model')}, {text}"))
    if not _items:
        _items.append(("NONE", "No takes yet", "Run to generate the first take"))
    return _items


def restore(settings, shot_dir: str, name: str) -> None:
    """Put the settings of take ``name`` back on ``settings`` (the scene's StereoForge settings)."""
    for folder, record in listed(shot_dir):
        if os.path.basename(folder) == name:
            for key, value in record.items():
                key = _PROPERTY_OF.get(key, key)
                if value is not None and getattr(settings, key) != value:
                    setattr(settings, key, value)
            return

"""The shot folder's contract, shared by the backend and the Blender add-on: standard library only.

A shot folder holds ``shot.json`` and one folder per stage's files; frames are numbered from 1 in every folder.
"""

from __future__ import annotations

#: The two views of a stereo shot, as the folders under eyes/, masks/ and filled/ are named.
EYES = ("left", "right")
#: The convert pipeline's stages, in the order they run.
STAGES = ("ingest", "cloud", "eyes", "inpaint", "composite", "encode")


def frame_name(n: int, ext: str) -> str:
    """File name of shot frame ``n`` (1-based)."""
    return f"{n:06d}.{ext}"

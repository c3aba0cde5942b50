"""A value that changes over a shot (an animated rig, a depth budget over time): keys at shot frames.

Written inline as ``"FRAME:VALUE,FRAME:VALUE,..."`` (``"1:0.03,8:0.2"``), or as a file of the same keys: one
``FRAME VALUE`` pair a line (space, comma or colon between; ``#`` starts a comment), or JSON, a list of
``[frame, value]`` pairs. Frames are the shot's, numbered from 1 (with ``--frames A:B``, frame 1 is source
frame A). Between keys the value is interpolated linearly; before the first key and after the last it holds,
as a Blender F-curve does by default. The add-on sends a keyframed panel property sampled at every frame, so
Blender's own interpolation is what the backend gets.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from .errors import InputError

Keys = tuple[tuple[float, float], ...]


def parse_curve(text: str, option: str) -> Keys:
    """The keys of ``text`` (inline keys or a file of them), sorted by frame; ``option`` names the flag in
    errors. Values must be positive and finite, frames 1 or more, each frame keyed once."""
    source = text
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            source = f.read()
    try:
        if source.lstrip().startswith("["):
            pairs = [(float(frame), float(value)) for frame, value in json.loads(source)]
        elif "\n" in source.strip():  # a file: one key a line
            pairs = [_pair(line.split("#", 1)[0]) for line in source.splitlines() if line.split("#", 1)[0].strip()]
        else:
            pairs = [_pair(token) for token in source.split(",") if token.strip()]
    except (ValueError, TypeError):
        raise InputError(f"{option} {text!r} is not a curve; write FRAME:VALUE,FRAME:VALUE (e.g. 1:0.03,8:0.2) or "
                         "give a file of 'FRAME VALUE' lines or JSON [[frame, value], ...]") from None
    if not pairs:
        raise InputError(f"{option} {text!r} has no keys; give at least one FRAME:VALUE")
    frames = [frame for frame, _ in pairs]
    for frame, value in pairs:
        if not (math.isfinite(frame) and frame >= 1 and math.isfinite(value) and value > 0):
            raise InputError(f"{option}: the key {frame:g}:{value:g} is not valid; frames count from 1 and values "
                             "must be positive")
    if len(set(frames)) != len(frames):
        raise InputError(f"{option}: frame {next(f for f in frames if frames.count(f) > 1):g} is keyed twice")
    return tuple(sorted(pairs))


def _pair(token: str) -> tuple[float, float]:
    parts = [p for p in re.split(r"[\s,:]+", token.strip()) if p]
    if len(parts) != 2:
        raise ValueError(token)
    return float(parts[0]), float(parts[1])


def sample(keys: Keys, count: int) -> np.ndarray:
    """The curve at shot frames 1..``count``: (count,) float64."""
    frames, values = zip(*keys, strict=True)
    return np.interp(np.arange(1, count + 1, dtype=np.float64), frames, values)

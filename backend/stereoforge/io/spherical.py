"""Google's Spherical Video V2 metadata in an MP4/MOV file: how a headset player knows a video is VR180.

FFmpeg's mov muxer writes these boxes only from the stream's side data, which PyAV cannot attach; so they are
put into the finished file's video sample entry here (as Google's spatial-media tool does)::

    st3d          stereo mode: 0 mono, 1 top-bottom (left eye on top), 2 left-right
    sv3d
      svhd        the name of the tool that wrote the metadata
      proj
        prhd      the view's yaw, pitch and roll (0: looking ahead)
        equi      equirectangular, cropped: the part of the full sphere's 360x180 degree picture each eye
                  holds, as fractions (0.32 fixed point) cut from its top, bottom, left and right

(https://github.com/google/spatial-media/blob/master/docs/spherical-video-v2-rfc.md). FFmpeg reads them back
as the stream's stereo 3D and spherical side data (``tests/test_deliverables.py``).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from .images import atomic_path

_ST3D_MODES = {None: 0, "tb": 1, "sbs": 2}
#: The equi crop of a half sphere: a quarter of the width off each side (180 of 360 degrees), nothing off the
#: top and bottom (the full 180 degrees of latitude).
HALF_SPHERE_BOUNDS = (0, 0, 1 << 30, 1 << 30)  # top, bottom, left, right
_TOOL = b"StereoForge\0"
#: The boxes between ``moov`` and the sample table, in order.
_PATH_TO_SAMPLE_TABLE = (b"mdia", b"minf", b"stbl")
_HEADER = struct.Struct(">I4s")


def _box(kind: bytes, payload: bytes, full: bool = False) -> bytes:
    """An ISO BMFF box; a full box carries version 0 and no flags before its payload."""
    body = (b"\0\0\0\0" if full else b"") + payload
    return _HEADER.pack(_HEADER.size + len(body), kind) + body


def spherical_boxes(stereo: str | None, bounds: tuple[int, int, int, int] = HALF_SPHERE_BOUNDS) -> bytes:
    """The ``st3d`` and ``sv3d`` boxes for an equirectangular video of ``stereo`` packing (None, 'sbs', 'tb')."""
    projection = _box(b"prhd", struct.pack(">3i", 0, 0, 0), full=True) + _box(
        b"equi", struct.pack(">4I", *bounds), full=True)
    return _box(b"st3d", bytes([_ST3D_MODES[stereo]]), full=True) + _box(
        b"sv3d", _box(b"svhd", _TOOL, full=True) + _box(b"proj", projection))


def _children(buf: bytes | bytearray, start: int, end: int):
    """``(kind, offset, size)`` of each box from ``start`` to ``end`` of ``buf``."""
    pos = start
    while pos + _HEADER.size <= end:
        size, kind = _HEADER.unpack_from(buf, pos)
        if size < _HEADER.size:  # 0 (to the end) and 1 (64-bit size): FFmpeg writes neither inside moov
            raise ValueError(f"box '{kind.decode('latin-1')}' at {pos} has a size this writer does not patch")
        yield kind, pos, size
        pos += size


def _child(buf: bytearray, parent: tuple[int, int], kind: bytes, skip: int = 0) -> tuple[int, int] | None:
    start, size = parent
    for found, pos, length in _children(buf, start + _HEADER.size + skip, start + size):
        if found == kind:
            return pos, length
    return None


def _top_level(f) -> dict[bytes, tuple[int, int]]:
    """The top-level boxes of a file by kind (the first of each), read from their headers only."""
    boxes, pos, end = {}, 0, f.seek(0, os.SEEK_END)
    while pos + _HEADER.size <= end:
        f.seek(pos)
        size, kind = _HEADER.unpack(f.read(_HEADER.size))
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
        elif size == 0:
            size = end - pos
        boxes.setdefault(kind, (pos, size))
        pos += size
    return boxes


def add_spherical_metadata(path: str | os.PathLike, stereo: str | None,
                           bounds: tuple[int, int, int, int] = HALF_SPHERE_BOUNDS) -> None:
    """Put :func:`spherical_boxes` into the video track's sample entry of the MP4/MOV at ``path``.

    The file is rewritten beside itself and moved over it: the boxes that hold it (``moov`` down to the
    sample entry) grow, and when ``moov`` comes before the media data (``+faststart``), every chunk offset
    moves by as much.
    """
    path = Path(path)
    extra = spherical_boxes(stereo, bounds)
    with open(path, "rb") as f:
        top = _top_level(f)
        moov_at, moov_size = top[b"moov"]
        f.seek(moov_at)
        moov = bytearray(f.read(moov_size))
    chain = _video_sample_entry(moov)
    insert_at = chain[-1][0] + chain[-1][1]
    for pos, size in chain:
        struct.pack_into(">I", moov, pos, size + len(extra))
    moov[insert_at:insert_at] = extra
    if moov_at < top.get(b"mdat", (0, 0))[0]:
        _move_chunk_offsets(moov, len(extra))
    with open(path, "rb") as src, atomic_path(path) as temp, open(temp, "wb") as out:
        out.write(src.read(moov_at))
        out.write(moov)
        src.seek(moov_at + moov_size)
        shutil.copyfileobj(src, out)


def _video_sample_entry(moov: bytearray) -> list[tuple[int, int]]:
    """The boxes from ``moov`` down to the video track's first sample entry, as ``(offset, size)``."""
    for kind, pos, size in _children(moov, _HEADER.size, len(moov)):
        if kind != b"trak":
            continue
        chain = [(0, len(moov)), (pos, size)]
        for step in _PATH_TO_SAMPLE_TABLE:
            chain.append(_child(moov, chain[-1], step))
        handler = _child(moov, chain[2], b"hdlr")
        if handler is None or moov[handler[0] + 16:handler[0] + 20] != b"vide":
            continue
        stsd = _child(moov, chain[-1], b"stsd")
        chain.append(stsd)
        # stsd is a full box with an entry count: its first entry starts 8 bytes into its body.
        chain.append(next((pos, size) for _, pos, size in _children(moov, stsd[0] + 16, stsd[0] + stsd[1])))
        return chain
    raise ValueError("the file has no video track to describe")


def _move_chunk_offsets(moov: bytearray, delta: int) -> None:
    for kind, pos, size in _children(moov, _HEADER.size, len(moov)):
        if kind != b"trak":
            continue
        table = (pos, size)
        for step in _PATH_TO_SAMPLE_TABLE:
            table = _child(moov, table, step)
        for name, fmt in ((b"stco", ">I"), (b"co64", ">Q")):
            found = _child(moov, table, name)
            if found is None:
                continue
            count = struct.unpack_from(">I", moov, found[0] + 12)[0]
            width = struct.calcsize(fmt)
            for i in range(count):
                at = found[0] + 16 + i * width
                struct.pack_into(fmt, moov, at, struct.unpack_from(fmt, moov, at)[0] + delta)

"""Still images and depth files in and out: PNG, JPEG, TIFF, OpenEXR and NumPy.

Colour is handled in linear light inside StereoForge: 8- and 16-bit files are sRGB-encoded and are decoded
on read (:func:`read_image`) and encoded on write (:func:`to_uint8_srgb`, :func:`to_uint16_srgb`); EXR holds
linear values and is read and written as-is. Arrays are RGB order everywhere; OpenCV's BGR stays inside this
module.

Every writer here is atomic (:func:`atomic_path`): a file that exists is complete, which is what lets a shot
folder be resumed after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import OpenEXR

from ..errors import InputError

#: File types :func:`read_image` reads (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")
#: File types :func:`read_depth_file` reads.
DEPTH_EXTENSIONS = (".npy", ".exr", ".png", ".tif", ".tiff", ".pfm")

# Piecewise sRGB transfer function (IEC 61966-2-1).
_SRGB_DECODE_KNEE = 0.04045
_SRGB_ENCODE_KNEE = 0.0031308
_SRGB_SLOPE = 12.92
_SRGB_GAMMA = 2.4
_SRGB_OFFSET = 0.055


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def srgb_to_linear(x):
    """Decode sRGB-encoded values to linear light, exactly (the piecewise IEC 61966-2-1 curve).

    Args:
        x: sRGB values, nominally in [0, 1], any shape: a numpy array (returned as float32) or a torch tensor
            (returned as a tensor of the same dtype and device).

    Returns:
        Linear-light values, same shape. Values below the knee follow the linear segment (negatives stay
        negative); values above 1 follow the power segment.
    """
    if _is_torch(x):
        import torch

        power = ((x.clamp(min=_SRGB_DECODE_KNEE) + _SRGB_OFFSET) / (1 + _SRGB_OFFSET)) ** _SRGB_GAMMA
        return torch.where(x <= _SRGB_DECODE_KNEE, x / _SRGB_SLOPE, power)
    x = np.asarray(x, dtype=np.float32)
    power = ((np.maximum(x, _SRGB_DECODE_KNEE) + _SRGB_OFFSET) / (1 + _SRGB_OFFSET)) ** _SRGB_GAMMA
    return np.where(x <= _SRGB_DECODE_KNEE, x / _SRGB_SLOPE, power).astype(np.float32)


def linear_to_srgb(x):
    """Encode linear-light values to sRGB, exactly (inverse of :func:`srgb_to_linear`).

    Args:
        x: linear values, any shape: a numpy array (returned as float32) or a torch tensor (same dtype and
            device back). Nothing is clipped: clip first where the result is to be quantised.

    Returns:
        sRGB-encoded values, same shape.
    """
    if _is_torch(x):
        import torch

        power = (1 + _SRGB_OFFSET) * x.clamp(min=_SRGB_ENCODE_KNEE) ** (1 / _SRGB_GAMMA) - _SRGB_OFFSET
        return torch.where(x <= _SRGB_ENCODE_KNEE, x * _SRGB_SLOPE, power)
    x = np.asarray(x, dtype=np.float32)
    power = (1 + _SRGB_OFFSET) * np.maximum(x, _SRGB_ENCODE_KNEE) ** (1 / _SRGB_GAMMA) - _SRGB_OFFSET
    return np.where(x <= _SRGB_ENCODE_KNEE, x * _SRGB_SLOPE, power).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _decode_table(levels: int) -> np.ndarray:
    # A lookup table turns decoding an 8- or 16-bit frame into one gather instead of a pow per pixel.
    table = srgb_to_linear(np.arange(levels, dtype=np.float32) / (levels - 1))
    table.flags.writeable = False
    return table


def srgb_integers_to_linear(codes: np.ndarray) -> np.ndarray:
    """Decode uint8 or uint16 sRGB code values to float32 linear light in [0, 1], same shape."""
    if codes.dtype == np.uint8:
        return _decode_table(256)[codes]
    if codes.dtype == np.uint16:
        return _decode_table(65536)[codes]
    raise TypeError(f"expected uint8 or uint16 sRGB codes, got {codes.dtype}")


def to_uint8_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear float (any shape) -> uint8 sRGB codes: clip to [0, 1], encode, scale by 255, round."""
    encoded = linear_to_srgb(np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0))
    return np.rint(encoded * 255.0).astype(np.uint8)


def to_uint16_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear float (any shape) -> uint16 sRGB codes: clip to [0, 1], encode, scale by 65535, round."""
    encoded = linear_to_srgb(np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0))
    return np.rint(encoded * 65535.0).astype(np.uint16)


# ----------------------------------------------------------------------------------------------- reading


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist; check the path")
    if not path.is_file():
        raise InputError(f"{what} '{path}' is not a file; give the path of a file")


def _decode_with_opencv(path: Path, what: str) -> np.ndarray:
    # imdecode from bytes rather than imread: imread fails silently on non-ASCII paths on Windows.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f"cannot read {what} '{path}': {err.strerror or err}; check the file's "
                         "permissions") from err
    problem = _damage(path.suffix.lower(), memoryview(data))
    if problem is not None:  # found before OpenCV's decoder, which would print its own line on stderr
        raise InputError(f"cannot read {what} '{path}': {problem}")
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise InputError(f"cannot read {what} '{path}': not a valid {path.suffix.lstrip('.').upper()} file; "
                         "re-export it")
    return pixels


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATIONS = {2: "mirrored", 3: "turned 180 degrees", 4: "flipped", 5: "mirrored and turned",
                 6: "turned 90 degrees clockwise", 7: "mirrored and turned", 8: "turned 90 degrees anticlockwise"}


def _damage(ext: str, data: memoryview) -> str | None:
    """What is wrong with a PNG or JPEG file's bytes that its decoder would stumble on, or None."""
    if ext == ".png" and data[:8] == _PNG_SIGNATURE:
        return _png_damage(data)
    if ext in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":
        # Entropy-coded data never holds FF D9 (an FF there is followed by 00 or a restart marker), so a
        # file whose end-of-image marker is missing was cut short; the decoder would fill the rest with grey.
        if b"\xff\xd9" not in data[-1024:].tobytes():
            return "it ends before its end-of-image marker: the file is cut short; re-export it"
        orientation = _jpeg_orientation(data)
        if orientation in _ORIENTATIONS:
            return (f"it is tagged to be shown {_ORIENTATIONS[orientation]} (EXIF orientation {orientation}), "
                    "and StereoForge reads the pixels as stored; save the pixels turned (e.g. exiftran -ai) "
                    "or re-export it without the tag")
    return None


def _png_damage(data: memoryview) -> str | None:
    """Each chunk whole and matching its CRC, up to IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        name = kind.decode("latin-1")
        if end > len(data):
            return f"its {name} chunk is cut short: the file is incomplete; re-export it"
        if zlib.crc32(data[pos + 4:end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            return f"its {name} chunk is damaged (CRC mismatch); re-export it"
        if kind == b"IEND":
            return None
        pos = end
    return "it ends before its IEND chunk: the file is cut short; re-export it"


def _jpeg_orientation(data: memoryview) -> int:
    """The EXIF orientation of a JPEG (1, as stored, when it has none)."""
    pos = 2
    try:
        while data[pos] == 0xFF and data[pos + 1] not in (0xD9, 0xDA):  # up to the end or the scan
            length = struct.unpack_from(">H", data, pos + 2)[0]
            body = pos + 4
            if data[pos + 1] == 0xE1 and data[body:body + 6] == b"Exif\0\0":
                tiff = body + 6
                order = "<" if data[tiff:tiff + 2] == b"II" else ">"
                ifd = tiff + struct.unpack_from(order + "I", data, tiff + 4)[0]
                for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
                    tag, _, _, value = struct.unpack_from(order + "HHIH", data, ifd + 2 + 12 * i)
                    if tag == _EXIF_ORIENTATION_TAG:
                        return value
                return 1
            pos = body + length - 2
    except (struct.error, IndexError):  # a damaged EXIF block is not ours to judge: the decoder reads it
        return 1
    return 1


#: Scanlines per chunk of each EXR compression (its number in the header).
_EXR_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
_EXR_TILED, _EXR_MULTIPART, _EXR_DEEP = 0x200, 0x1000, 0x800


def _exr_damage(path: Path) -> str | None:
    """Whether a single-part scanline EXR (what renderers and StereoForge write) holds every chunk its
    offset table lists; None when it does, or for other layouts, left to OpenEXR."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[:4] != b"\x76\x2f\x31\x01":
                return None
            if struct.unpack("<I", head[4:])[0] & (_EXR_TILED | _EXR_MULTIPART | _EXR_DEEP):
                return None
            attributes = {}
            while name := _exr_string(f):
                kind, size = _exr_string(f), struct.unpack("<i", f.read(4))[0]
                attributes[name] = (kind, f.read(size))
            lines = _EXR_LINES_PER_CHUNK.get(attributes.get("compression", ("", b"\xff"))[1][0])
            if lines is None or "dataWindow" not in attributes:
                return None
            _, y_min, _, y_max = struct.unpack("<4i", attributes["dataWindow"][1])
            count = -(-(y_max - y_min + 1) // lines)
            table = f.read(8 * count)
            end = f.seek(0, os.SEEK_END)
            if len(table) < 8 * count:
                return "it ends inside its offset table: the file is cut short"
            last = max(struct.unpack(f"<{count}Q", table))
            f.seek(last)
            leader = f.read(8)
            if len(leader) < 8 or last + 8 + struct.unpack("<ii", leader)[1] > end:
                return "its last block of pixels is missing: the file is cut short"
    except (struct.error, IndexError, UnicodeDecodeError, OverflowError, ValueError):
        return "its header is damaged"
    return None


def _exr_string(f) -> str:
    """A NUL-terminated EXR header name (at most 255 bytes)."""
    name = bytearray()
    while (byte := f.read(1)) not in (b"\0", b""):
        name += byte
        if len(name) > 255:
            raise ValueError("name too long")
    if not byte:
        raise ValueError("header cut short")
    return name.decode("ascii")


def read_exr_channels(path: str | os.PathLike, what: str = "EXR file") -> dict[str, np.ndarray]:
    """All channels of all parts of an EXR, name -> 2-D array (the first part wins on a repeated name)."""
    problem = _exr_damage(Path(path))
    if problem is not None:  # found before OpenEXR, which would print its own lines on stderr
        raise InputError(f"cannot read {what} '{path}': {problem}; re-export it")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels: dict[str, np.ndarray] = {}
            for part in exr.parts:
                for name, channel in part.channels.items():
                    channels.setdefault(name, channel.pixels)
    except (RuntimeError, ValueError, OSError) as err:  # the OpenEXR library's reason
        raise InputError(f"cannot read {what} '{path}': {err}; re-export it as an OpenEXR file") from err
    if not channels:
        raise InputError(f"{what} '{path}' has no channels; re-export it")
    return channels


def _exr_rgb(channels: dict[str, np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """R, G, B of an EXR: plain names, else one layer's ``<layer>.R/.G/.B`` (Blender's ``Combined`` first)."""
    prefixes = sorted(name[:-1] for name in channels if name == "R" or name.endswith(".R"))
    prefixes = [p for p in prefixes if p + "G" in channels and p + "B" in channels]
    if not prefixes:
        return None
    preferred = [p for p in prefixes if p == ""] or [p for p in prefixes if p.endswith("Combined.")]
    prefix = (preferred or prefixes)[0]
    return tuple(channels[prefix + c] for c in "RGB")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as linear-light RGB.

    PNG, JPEG and TIFF of 8 or 16 bits are sRGB-decoded; grey becomes RGB, alpha is dropped, palettes are
    expanded. A float TIFF is taken to be linear already. EXR is read as-is (linear): channels R, G, B (with
    or without A), or one layer's ``<layer>.R/G/B`` (Blender multilayer; ``Combined`` preferred), or
    luminance ``Y`` (or the only channel) as grey. A JPEG tagged to be shown turned or mirrored (EXIF
    orientation) is refused rather than read sideways: pixels are read as stored.

    Args:
        path: the image file.

    Returns:
        float32 array (H, W, 3), linear RGB.

    Raises:
        InputError: the file is missing, unreadable, or of a type or layout not listed above.
    """
    path = Path(path)
    _check_exists(path, "image")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"image '{path}' has an unsupported type '{ext}'; use one of "
                         f"{', '.join(IMAGE_EXTENSIONS)}")
    if ext == ".exr":
        channels = read_exr_channels(path, "image")
        rgb = _exr_rgb(channels)
        if rgb is None:
            if "Y" not in channels and len(channels) != 1:
                raise InputError(f"image '{path}' has channels {sorted(channels)} but no R, G, B; save the "
                                 "colour as R, G, B channels (or one grey channel Y)")
            grey = channels["Y"] if "Y" in channels else next(iter(channels.values()))
            rgb = (grey, grey, grey)
        return np.stack([np.asarray(c, dtype=np.float32) for c in rgb], axis=-1)

    pixels = _decode_with_opencv(path, "image")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels_in = pixels.shape[2]
    if channels_in in (1, 2):  # grey, grey + alpha
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    elif channels_in in (3, 4):
        pixels = pixels[..., 2::-1]  # BGR(A) -> RGB, alpha dropped
    else:
        raise InputError(f"image '{path}' has {channels_in} channels; save it as grey, RGB or RGBA")
    if pixels.dtype in (np.uint8, np.uint16):
        return srgb_integers_to_linear(np.ascontiguousarray(pixels))
    if pixels.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(pixels, dtype=np.float32)
    raise InputError(f"image '{path}' stores {pixels.dtype} samples; save it with 8 or 16 bits per channel, "
                     "or as EXR")


def _png_size(path: Path) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT, JPG, DAC).
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return None
        while True:
            byte = f.read(1)
            if not byte:
                return None
            if byte != b"\xff":
                continue
            marker = f.read(1)
            while marker == b"\xff":
                marker = f.read(1)
            if not marker:
                return None
            code = marker[0]
            if code == 0x01 or 0xD0 <= code <= 0xD9:  # markers without a length
                continue
            length_bytes = f.read(2)
            if len(length_bytes) < 2:
                return None
            length = struct.unpack(">H", length_bytes)[0]
            if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
                body = f.read(5)
                if len(body) < 5:
                    return None
                height, width = struct.unpack(">HH", body[1:5])
                return height, width
            f.seek(length - 2, os.SEEK_CUR)


def _exr_size(path: Path) -> tuple[int, int]:
    try:
        with OpenEXR.File(str(path), header_only=True) as exr:
            low, high = exr.parts[0].header["dataWindow"]
    except (RuntimeError, ValueError, OSError) as err:  # the OpenEXR library's reason
        raise InputError(f"cannot read '{path}': {err}; re-export it as an OpenEXR file") from err
    return int(high[1] - low[1] + 1), int(high[0] - low[0] + 1)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) in pixels of an image or depth file, reading only the header where the format allows.

    PNG, JPEG and EXR are read from their headers; ``.npy`` from its header (the last two axes of a
    (H, W) or (T, H, W) array, or the first two of (H, W, 1)); other types are decoded in full.

    Raises:
        InputError: the file is missing or unreadable.
    """
    path = Path(path)
    _check_exists(path, "file")
    ext = path.suffix.lower()
    size = None
    if ext == ".png":
        size = _png_size(path)
    elif ext in (".jpg", ".jpeg"):
        size = _jpeg_size(path)
    elif ext == ".exr":
        size = _exr_size(path)
    elif ext == ".npy":
        return npy_layout(load_npy(path, mmap=True).shape, path)[1:]
    if size is not None:
        return size
    return tuple(_decode_with_opencv(path, "image").shape[:2])


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """A .npy of numbers, memory-mapped read-only when ``mmap`` (so a long stack stays on disk)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"cannot read depth '{path}': {err}; save it with numpy.save") from err
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"depth '{path}' holds {array.dtype} values; save numbers (float32 is best)")
    return array


def npy_layout(shape: tuple[int, ...], path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, H, W) of a depth array of this shape: (H, W) and (H, W, 1) are one frame, (T, H, W) a clip.

    Raises:
        InputError: any other shape; ``path`` names the file in the message.
    """
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[2] == 1 and shape[0] != 1:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        return shape
    raise InputError(f"depth '{path}' has shape {shape}; save an (H, W) array, or (T, H, W) for a clip")


def _pick_depth_channel(channels: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The depth channel of an EXR, by the first rule that matches: ``Z``; a Blender pass ``<...>Depth.Z``;
    any ``<...>.Z``; ``depth`` (any case); ``Y``; ``R``; the only channel."""
    names = sorted(channels)
    rules = (
        lambda n: n == "Z",
        lambda n: n.endswith("Depth.Z"),
        lambda n: n.endswith(".Z"),
        lambda n: n.lower() == "depth",
        lambda n: n == "Y",
        lambda n: n == "R",
        lambda n: len(names) == 1,
    )
    for rule in rules:
        found = [n for n in names if rule(n)]
        if len(found) == 1:
            return channels[found[0]]
        if len(found) > 1:
            raise InputError(f"depth '{path}' has several depth channels {found}; save one depth pass per "
                             "file, or name the one to use 'Z'")
    raise InputError(f"depth '{path}' has channels {names} and none of them is depth; name the depth "
                     "channel 'Z' (or save a Blender Depth pass)")


def read_depth_file(path: str | os.PathLike) -> np.ndarray:
    """Read one frame of raw depth values (no unit conversion: the depth kind is applied elsewhere).

    * ``.npy``: a 2-D array, or 3-D with one singleton axis ((1, H, W) or (H, W, 1)).
    * ``.exr``: the channel chosen by these rules, first match wins: ``Z``; a Blender multilayer pass
      ending in ``Depth.Z`` (e.g. ``ViewLayer.Depth.Z``); any name ending in ``.Z``; ``depth``; ``Y``; ``R``;
      the only channel.
    * ``.png`` / ``.tif`` / ``.tiff``: 16-bit (or wider integer) values as they are, or a float TIFF. 8-bit
      files are refused: 256 levels are too coarse for depth.
    * ``.pfm``: float values (Middlebury's disparity maps; rows come top to bottom, infinity = unknown).

    Args:
        path: the depth file.

    Returns:
        float32 array (H, W) of raw values.

    Raises:
        InputError: the file is missing, unreadable, 8-bit, of another layout, or of an unsupported type.
    """
    path = Path(path)
    _check_exists(path, "depth")
    ext = path.suffix.lower()
    if ext == ".npy":
        array = load_npy(path, mmap=False)
        layout = npy_layout(array.shape, path)
        if layout[0] != 1:
            raise InputError(f"depth '{path}' has shape {array.shape}: {layout[0]} frames where one (H, W) "
                             "frame was expected; give it as the depth of the whole clip instead")
        return array.reshape(layout[1:]).astype(np.float32)
    if ext == ".exr":
        return np.asarray(_pick_depth_channel(read_exr_channels(path, "depth"), path), dtype=np.float32)
    if ext in (".png", ".tif", ".tiff", ".pfm"):
        pixels = _decode_with_opencv(path, "depth")
        if pixels.dtype == np.uint8:
            raise InputError(f"depth '{path}' is 8-bit: 256 levels are too coarse for depth; save it as a "
                             "16-bit PNG or TIFF, or as float EXR or .npy")
        if pixels.ndim == 3:
            if not all(np.array_equal(pixels[..., 0], pixels[..., c]) for c in range(1, pixels.shape[2])):
                raise InputError(f"depth '{path}' has {pixels.shape[2]} different channels; save depth as "
                                 "one grey channel")
            pixels = pixels[..., 0]
        if not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating)):
            raise InputError(f"depth '{path}' stores {pixels.dtype} samples; save 16-bit or float values")
        return pixels.astype(np.float32)
    raise InputError(f"depth '{path}' has an unsupported type '{ext}'; use one of "
                     f"{', '.join(DEPTH_EXTENSIONS)}")


def read_png8(path: str | os.PathLike) -> np.ndarray | None:
    """An 8-bit image as its uint8 sRGB codes (H, W, 3), RGB order; None when it is missing or unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if os.path.exists(path) else None
    return None if image is None else image[..., ::-1].copy()


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A dropout mask PNG (255 where dropout) as booleans (H, W)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"cannot read dropout mask '{path}'")
    return mask > 127


def read_eye(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An eye EXR -> (straight linear RGB (H, W, 3), alpha (H, W), depth (H, W), +inf where empty).

    Takes the backend's channels (R, G, B, A, Z) and Blender's multilayer ones (``<layer>.Combined.R``...,
    ``<layer>.Depth.Z``); RGB is premultiplied by alpha in both, as Blender writes it.
    """
    return eye_from_channels(read_exr_channels(path, "eye"), path)


def eye_from_channels(ch: dict[str, np.ndarray], path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`read_eye` of an eye's channels as an EXR holds them (``path`` names the file, for errors): the eyes
    stage hands its frames over in memory through this too, so that they are what the file would give."""

    def channel(name: str, *suffixes: str) -> np.ndarray | None:
        if name in ch:
            return ch[name]
        for key in sorted(ch):
            if any(key.endswith(suffix) for suffix in suffixes):
                return ch[key]
        return None

    rgba = [channel(c, f"Combined.{c}", f".{c}") for c in "RGBA"]
    if any(c is None for c in rgba):
        raise InputError(f"eye '{path}' has no R, G, B and A channels (it has {', '.join(sorted(ch))}); "
                         "render it with transparent film to RGBA EXR")
    alpha = rgba[3].astype(np.float32)
    z = channel("Z", "Depth.Z")
    depth = z.astype(np.float32) if z is not None else np.full(alpha.shape, np.inf, np.float32)
    depth[~(alpha > 0)] = np.inf
    # Unpremultiplied in place, in float32 (a frame is read for every frame an inpainter fills: few passes).
    straight = np.empty((*alpha.shape, 3), np.float32)
    for i, c in enumerate(rgba[:3]):
        straight[..., i] = c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(straight, np.maximum(alpha, np.float32(1e-6))[..., None], out=straight)
    straight[~(alpha > 1e-6)] = 0.0
    return straight, alpha, depth


def storable_half(rgb: np.ndarray) -> np.ndarray:
    """Float colour as a half-float EXR can hold it: NaN (no colour) black, infinities and values past half's
    range at its largest, so that nothing downstream meets a non-finite value (nor numpy warns of one)."""
    limit = float(np.finfo(np.float16).max)
    return np.clip(np.nan_to_num(rgb, nan=0.0, posinf=limit, neginf=-limit), -limit, limit)


# ----------------------------------------------------------------------------------------------- writing


#: A temporary file's name: ``.<stem>.tmp-<host>-<pid>-<random><suffix>``; the host and the process that
#: writes it are in the name so that a later run can tell a dead run's leftovers from a live run's files.
_TEMPORARY = re.compile(r"^\..+\.tmp-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}(\.[^.]+)?$")


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temporary_path(final_path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``final_path`` for writing it, keeping its extension (encoders choose the
    format by it); :func:`remove_stale_temporaries` recognises it once its writer is gone."""
    final_path = Path(final_path)
    return final_path.with_name(f".{final_path.stem}.tmp-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
                                f"{final_path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files under ``folder`` that a killed run left half-written; returns them.

    Only files written from this host by a process that no longer runs are removed: another run may be
    writing the same shot (two machines each doing half a clip), and its files are left alone.
    """
    removed = []
    for parent, _, names in os.walk(folder):
        for name in names:
            match = _TEMPORARY.match(name)
            if match and match["host"] == _host_tag() and not _alive(int(match["pid"])):
                path = Path(parent, name)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write to, moved onto ``final_path`` only when the block succeeds.

    The temporary file (:func:`temporary_path`) lies in the same folder, so the move is an atomic
    ``os.replace`` on one filesystem. If the block raises, the temporary file is removed and ``final_path``
    is left as it was. The parent folder is created if needed.

    Yields:
        The temporary :class:`~pathlib.Path`; nothing exists there yet.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(final_path)
    try:
        yield temp
        os.replace(temp, final_path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        if isinstance(exc, OSError) and exc.errno and not exc.filename:  # a write's error names no file
            raise OSError(exc.errno, exc.strerror, str(final_path)) from exc
        raise


def write_png(path: str | os.PathLike, array: np.ndarray, fast: bool = False) -> None:
    """Write a PNG atomically, losslessly.

    Args:
        path: where to write (a ``.png`` name).
        array: uint8 or uint16, (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA (RGB order; OpenCV's BGR is
            handled here). The values are written as they are: encode linear colour first
            (:func:`to_uint8_srgb`).
        fast: store the pixels without deflating them, for an intermediate that is read back soon (the filled
            eyes): at 854x480 about half the time to write and a third to read, for 2.3 times the size.
    """
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16 values, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    elif array.ndim != 2:
        raise ValueError(f"write_png needs (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 0] if fast else [])
    if not ok:
        raise OSError(f"OpenCV could not encode '{path}' as PNG")
    with atomic_path(path) as temp, open(temp, "wb") as f:
        f.write(memoryview(encoded))  # not ndarray.tofile, whose error on a full disk names no reason


def write_exr(path: str | os.PathLike, channels: dict[str, np.ndarray], half: bool = False,
              attributes: dict | None = None, compress: bool = True) -> None:
    """Write a single-part scanline EXR atomically, ZIP-compressed (or not compressed at all: a shot's
    intermediates, which the pipeline reads back, are written about twice as fast that way).

    Args:
        path: where to write (an ``.exr`` name).
        channels: channel name -> (H, W) array, all the same size; e.g. ``{'R', 'G', 'B', 'A'}`` for an eye
            with coverage, ``{'Z'}`` for depth. Values are stored as they are (linear colour, metres).
        half: store 16-bit floats instead of 32-bit (fine for colour, too coarse for far depth).
        attributes: more header attributes, e.g. ``{"multiView": ["left", "right"]}``.
        compress: ZIP (lossless, smaller); False: none (lossless, faster).
    """
    if not channels:
        raise ValueError("write_exr needs at least one channel")
    dtype = np.float16 if half else np.float32
    pixels = {name: np.ascontiguousarray(values, dtype=dtype) for name, values in channels.items()}
    shapes = {name: values.shape for name, values in pixels.items()}
    if len(set(shapes.values())) != 1 or pixels[next(iter(pixels))].ndim != 2:
        raise ValueError(f"write_exr needs (H, W) channels of one size, got {shapes}")
    compression = OpenEXR.ZIP_COMPRESSION if compress else OpenEXR.NO_COMPRESSION
    header = {"compression": compression, "type": OpenEXR.scanlineimage, **(attributes or {})}
    with atomic_path(path) as temp, OpenEXR.File(header, pixels) as exr:
        try:
            exr.write(str(temp))
        except RuntimeError as err:  # OpenEXR's own exception; its text ends with the system's reason
            reason = str(err).rsplit(". ", 1)[-1].rstrip(".")
            code = {os.strerror(c): c for c in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)}.get(reason, 0)
            raise OSError(code, reason, str(path)) from None


def write_multiview_exr(path: str | os.PathLike, views: dict[str, dict[str, np.ndarray]]) -> None:
    """Write the views of a stereo (or multi-view) frame into one half-float EXR, atomically.

    The layout Nuke and Blender read as views: the ``multiView`` header attribute lists the views (the first
    is the default one), and each channel is named ``<view>.<channel>`` (``left.R``, ``right.R``...).

    Args:
        path: where to write (an ``.exr`` name).
        views: view name -> {channel name -> (H, W) array}, every channel the same size.
    """
    channels = {f"{view}.{name}": values for view, named in views.items() for name, values in named.items()}
    write_exr(path, channels, half=True, attributes={"multiView": list(views)})

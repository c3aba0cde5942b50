"""Frame sources: mono frames and their depth, streamed one frame at a time.

A clip is never held in memory whole: :func:`open_source` and :func:`open_depth` check their input up front
(size, frame count, format) from headers where they can, and their ``frames()`` generators read or decode one
frame per step. Frame numbers are 0-based everywhere; a selection ``frames=(A, B)`` means original frames
A..B-1 (B exclusive, ``None`` for "to the end"), like a Python slice.

Video is decoded with PyAV. Its pixels are taken to be sRGB-encoded, as for PNG and JPEG, and decoded to
linear light; strictly, most video uses the BT.709 transfer curve, which differs from sRGB mainly in the deep
shadows. The YUV -> RGB matrix and range come from the stream's tags (BT.709 for untagged HD, BT.601 for
untagged SD, as players guess). A video tagged to be shown turned (phone videos) is refused rather than read
sideways: frames come back as stored.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from .images import (
    DEPTH_EXTENSIONS,
    IMAGE_EXTENSIONS,
    image_size,
    load_npy,
    npy_layout,
    read_depth_file,
    read_image,
    srgb_integers_to_linear,
)

#: Video file types :func:`open_source` decodes (lower case, with the dot).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")

#: A selection (A, B) of original frames A..B-1; B may be None for "to the end".
FrameRange = tuple[int, int | None]

# AVColorSpace values (libavutil/pixfmt.h) -> swscale's YUV matrix names.
_YUV_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_RANGE_LIMITED, _RANGE_FULL = 1, 2  # AVColorRange


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value, so ``frame2`` comes before ``frame10`` (case-insensitive)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower()))


def list_frame_files(folder: str | os.PathLike, extensions: tuple[str, ...]) -> list[Path]:
    """The visible files in ``folder`` with one of ``extensions`` (any case), in natural order.

    Hidden files (names starting with ``.``, which includes the temporary files of atomic writes) are left
    out, and so are sub-folders.
    """
    files = [entry for entry in Path(folder).iterdir()
             if not entry.name.startswith(".") and entry.suffix.lower() in extensions and entry.is_file()]
    return sorted(files, key=lambda entry: natural_key(entry.name))


def select_range(total: int, frames: FrameRange | None, path: str | os.PathLike) -> tuple[int, int]:
    """Resolve a selection ``(A, B)`` of original frames A..B-1 against a source of ``total`` frames.

    Returns:
        ``(start, stop)`` with ``0 <= start < stop <= total``.

    Raises:
        InputError: the selection is empty or reaches outside the source; the message says how many frames
            ``path`` has.
    """
    if frames is None:
        return 0, total
    start, stop = frames
    stop = total if stop is None else stop
    if not (0 <= start < stop <= total):
        shown = f"{frames[0]}..{'end' if frames[1] is None else frames[1]}"
        raise OutsideSource(f"frame range {shown} does not fit '{path}', which has {total} frames "
                            f"(0..{total - 1}); choose A..B with 0 <= A < B <= {total} (B exclusive)", total)
    return start, stop


class OutsideSource(InputError):
    """A frame selection reaching outside its source; ``total`` is the source's frame count, so that a caller
    with other frame numbers (the CLI's 1-based ``--frames``) can say it in its own terms."""

    def __init__(self, message: str, total: int):
        super().__init__(message)
        self.total = total


def _check_path(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist; check the path")


def _check_same_size(files: list[Path], size: tuple[int, int], what: str, others: str) -> None:
    """Every file is (H, W) == ``size``, read from headers where the format allows; ``others`` says what the
    size was taken from, for the message."""
    for file in files:
        found = image_size(file)
        if found != size:
            raise InputError(f"{what} '{file}' is {found[1]}x{found[0]} but {others} {size[1]}x{size[0]} "
                             f"(width x height); give every frame that size, or move '{file.name}' out of "
                             "the folder")


# ------------------------------------------------------------------------------------------------ video


def undecodable(path: Path, err: Exception | str) -> InputError:
    """The error for a video that cannot be decoded, in FFmpeg's words (without PyAV's errno prefix)."""
    reason = err if isinstance(err, str) else getattr(err, "strerror", None) or str(err)
    return InputError(f"cannot decode video '{path}': {reason}; check that the file is complete, or "
                      "re-encode it (e.g. H.264 in .mp4)")


def open_video(path: Path) -> av.container.InputContainer:
    """Open a video file for reading with PyAV; the caller closes it.

    Raises:
        InputError: the file cannot be opened as a video, or has no video stream.
    """
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as err:
        raise undecodable(path, err) from err
    if not container.streams.video:
        container.close()
        raise undecodable(path, "it has no video stream")
    return container


def _video_index(container: av.container.InputContainer, path: Path) -> VideoIndex:
    # stream.frames is 0 in many containers (mkv, webm); demuxing every packet counts the frames while
    # decoding nothing. Empty packets are flushes and discarded packets are dropped by the decoder: neither is
    # a frame.
    stream = container.streams.video[0]
    try:
        packets = [(packet.pts, packet.dts, packet.is_keyframe) for packet in container.demux(stream)
                   if packet.size > 0 and not packet.is_discard]
    except av.FFmpegError as err:
        raise undecodable(path, err) from err
    return VideoIndex(pts=tuple(p[0] for p in packets), dts=tuple(p[1] for p in packets),
                      keyframe=tuple(p[2] for p in packets))


@dataclass(frozen=True)
class VideoIndex:
    """A video's frame packets in decode order, as demuxed when its frames are counted: what it takes to start
    decoding at a frame k without decoding the frames before it.

    A frame's index (display order) is the rank of its timestamp among all the frames' timestamps, so
    B-frames, variable frame rates, edit lists and a first timestamp other than 0 all number frames as
    sequential decoding does.

    Attributes:
        pts, dts: each packet's presentation and decode timestamps (stream time base; None where unknown).
        keyframe: each packet starts a point where decoding can begin.
    """

    pts: tuple[int | None, ...]
    dts: tuple[int | None, ...]
    keyframe: tuple[bool, ...]

    def display_index(self) -> dict[int, int] | None:
        """Timestamp -> frame index, or None when timestamps cannot number the frames (one missing or two
        equal): such a video is decoded from its start."""
        if None in self.pts or len(set(self.pts)) != len(self.pts):
            return None
        return {pts: index for index, pts in enumerate(sorted(self.pts))}

    def starts_for(self, first: int, numbers: dict[int, int]) -> list[int]:
        """The packets, in decode order, that decoding can start from to give frame ``first`` and every later
        frame exactly: keyframes shown no later than ``first``, with no frame shown from ``first`` on decoded
        before them (frames shown before a keyframe, an open GOP's leading frames, may come out broken: they
        are passed)."""
        earliest = min(position for position, pts in enumerate(self.pts) if numbers[pts] >= first)
        return [position for position in range(earliest + 1)
                if self.keyframe[position] and numbers[self.pts[position]] <= first]


class _Unseekable(Exception):
    """Seeking cannot give the frames exactly (raised before any frame is yielded): decode from the start."""


def _frames_from_start(path: Path) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` for every frame, decoding from the first."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from enumerate(container.decode(stream))
    finally:
        container.close()


def _land(container: av.container.InputContainer, stream: av.video.VideoStream, index: VideoIndex, first: int,
          numbers: dict[int, int]) -> av.Packet:
    """Seek to the keyframe to decode frame ``first`` from and return its packet, checked to be one decoding
    can start from. Containers index keyframes by presentation (mkv) or decode (mp4) timestamps, so the
    keyframe's pts is tried, then its dts; a landing on a packet that cannot give ``first`` exactly is refused.

    Raises:
        _Unseekable: neither lands on a packet that can start the decoding.
    """
    starts = index.starts_for(first, numbers)
    if not starts:
        raise _Unseekable
    decoded_at = {pts: position for position, pts in enumerate(index.pts)}
    for target in dict.fromkeys((index.pts[starts[-1]], index.dts[starts[-1]])):
        if target is None:
            continue
        container.seek(target, stream=stream, backward=True, any_frame=False)
        landing = next(container.demux(stream), None)
        if (landing is not None and landing.size > 0 and not landing.is_discard
                and decoded_at.get(landing.pts) in starts):
            return landing
    raise _Unseekable


def _frames_from_seek(path: Path, index: VideoIndex, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` for frames ``first`` on, seeking to a keyframe before it and decoding forward; each
    frame is numbered by its timestamp.

    Raises:
        _Unseekable: before anything is yielded, when this cannot give exactly what decoding from the start
            gives (timestamps that cannot number the frames, a landing or a first frame that does not fit).
        InputError: a frame is missing after the first (a damaged file).
    """
    numbers = index.display_index()
    if numbers is None:
        raise _Unseekable
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        landing = _land(container, stream, index, first, numbers)
        expected = first
        for packet in chain([landing], container.demux(stream)):
            for frame in packet.decode():
                number = numbers.get(frame.pts)
                if expected == first and (number is None or number < first):
                    if number is None:
                        raise _Unseekable
                    continue  # before the selection, or an open GOP's leading frame
                if number != expected:
                    if expected == first:
                        raise _Unseekable
                    raise InputError(f"video '{path}' skipped frame {expected} when decoding; the file may be "
                                     "damaged: re-encode it")
                yield number, frame
                expected += 1
    finally:
        container.close()


def _numbered_frames(path: Path, index: VideoIndex | None, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` from frame ``first`` on (frames before it may come too, for the caller to pass):
    by seeking where that gives exactly the frames sequential decoding gives, else from the start."""
    if first and index is not None:
        seeking = _frames_from_seek(path, index, first)
        try:
            head = next(seeking)
        except (_Unseekable, StopIteration, av.FFmpegError):  # sequential decoding gives the error, if any
            pass
        else:
            yield head
            yield from seeking
            return
    yield from _frames_from_start(path)


def _display_turn(path: Path) -> str | None:
    """How a player turns the video's frames (its display matrix), None when it shows them as stored."""
    container = open_video(path)
    try:
        first = next(container.decode(container.streams.video[0]), None)
    except av.FFmpegError as err:
        raise undecodable(path, err) from err
    finally:
        container.close()
    clockwise = round(-first.rotation) % 360 if first is not None else 0  # FFmpeg counts anticlockwise
    return {0: None, 180: "180 degrees", 270: "90 degrees anticlockwise"}.get(clockwise, f"{clockwise} degrees "
                                                                                     "clockwise")


def _frame_to_linear(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame -> float32 (H, W, 3) linear RGB (16-bit path for sources over 8 bits)."""
    deep = max(component.bits for component in frame.format.components) > 8
    options = {"format": "rgb48le" if deep else "rgb24"}
    if not frame.format.is_rgb:
        guess = "ITU709" if frame.height >= 720 else "ITU601"
        full = frame.color_range == _RANGE_FULL or frame.format.name.startswith("yuvj")
        options.update(src_colorspace=_YUV_MATRIX.get(frame.colorspace, guess),
                       src_color_range=_RANGE_FULL if full else _RANGE_LIMITED)
    return srgb_integers_to_linear(frame.to_ndarray(**options))


# ----------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Mono frames to be made stereo: one image, a folder of images, or a video.

    Attributes:
        path: the image, folder or video.
        kind: ``'image'``, ``'folder'`` or ``'video'``.
        width, height: frame size in pixels.
        count: frames selected.
        fps: frames per second of a video; ``None`` for images and folders.
        is_float: the frames are float files (EXR), to be kept as float downstream.
        first_index: 0-based index in the original of the first selected frame.
        total: frames in the original, before selection.
        files: the selected frame files (image and folder sources; empty for video).
        index: a video's frame packets, to start decoding at a later frame (None for images and folders).
    """

    path: Path
    kind: str
    width: int
    height: int
    count: int
    fps: float | None
    is_float: bool
    first_index: int
    total: int
    files: tuple[Path, ...] = ()
    index: VideoIndex | None = field(default=None, repr=False, compare=False)

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, rgb)`` for each selected frame from ``start`` on: ``i`` 0-based over the selection,
        ``rgb`` float32 (H, W, 3) linear light. The frames before ``start`` are not read (a video seeks to a
        keyframe before it and decodes forward). Raises :class:`InputError` on a frame that cannot be read."""
        if self.kind == "video":
            yield from self._video_frames(start)
            return
        for i, file in enumerate(self.files[start:], start):
            rgb = read_image(file)
            if rgb.shape[:2] != (self.height, self.width):
                raise InputError(f"image '{file}' is {rgb.shape[1]}x{rgb.shape[0]} but the source is "
                                 f"{self.width}x{self.height}; give every frame one size")
            yield i, rgb

    def check(self, progress: Callable[[int], None] | None = None) -> None:
        """Decode every selected frame, keeping none: a damaged frame stops a job before it writes anything,
        where the headers read by :func:`open_source` looked fine. ``progress(done)`` follows it."""
        decoded = self._video_frames(convert=False) if self.kind == "video" else self.frames()
        for i, _ in decoded:
            if progress:
                progress(i + 1)

    def _video_frames(self, start: int = 0, convert: bool = True) -> Iterator[tuple[int, np.ndarray | None]]:
        first, stop = self.first_index + start, self.first_index + self.count
        reached = 0  # frames decoded up to here, for the messages
        try:
            for index, frame in _numbered_frames(self.path, self.index, first):
                if index >= first:  # frames before are decoded (the codec needs them) but not converted
                    yield index - self.first_index, _frame_to_linear(frame) if convert else None
                reached = index + 1
                if reached >= stop:
                    break
        except av.FFmpegError as err:
            raise undecodable(self.path, f"frame {reached}: {err.strerror or err}") from err
        if reached < stop:
            raise InputError(f"video '{self.path}' ended after {reached} decodable frames where {self.total} "
                             "were counted; the file may be damaged: re-encode it")


def open_source(path: str | os.PathLike, frames: FrameRange | None = None) -> Source:
    """Open an image, a folder of images or a video as a :class:`Source`, checking it up front.

    Images are .png .jpg .jpeg .tif .tiff .exr. A folder holds frames of those types (hidden files ignored),
    taken in natural order (``frame2`` before ``frame10``), all of one size. Videos are .mp4 .mov .mkv .webm
    .avi; their frames are counted by demuxing, without decoding.

    Args:
        path: the image, folder or video.
        frames: ``(A, B)`` selects original frames A..B-1 (0-based; ``B`` may be ``None`` for "to the end");
            ``None`` selects all.

    Raises:
        InputError: missing path, unsupported type, empty folder, frames of different sizes, a video that
            cannot be decoded, or a selection outside the source.
    """
    path = Path(path)
    _check_path(path, "source")
    if path.is_dir():
        files = list_frame_files(path, IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"folder '{path}' has no frames; put images "
                             f"({', '.join(IMAGE_EXTENSIONS)}) in it")
        size = image_size(files[0])
        _check_same_size(files[1:], size, "frame", f"the first frame in '{path}' is")
        start, stop = select_range(len(files), frames, path)
        return Source(path=path, kind="folder", width=size[1], height=size[0], count=stop - start, fps=None,
                      is_float=any(file.suffix.lower() == ".exr" for file in files), first_index=start,
                      total=len(files), files=tuple(files[start:stop]))
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        height, width = image_size(path)
        select_range(1, frames, path)
        return Source(path=path, kind="image", width=width, height=height, count=1, fps=None,
                      is_float=ext == ".exr", first_index=0, total=1, files=(path,))
    if ext in VIDEO_EXTENSIONS:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            listed = stream.frames  # from the container's index where it has one (mp4, mov), else 0
            index = _video_index(container, path)
            total = len(index.pts)
        finally:
            container.close()
        if total < listed:
            raise undecodable(path, f"its index lists {listed} frames but only {total} are in the file: it is cut "
                                    "short")
        turn = _display_turn(path)
        if turn:
            raise InputError(f"video '{path}' is tagged to be shown turned {turn} (its display "
                             "matrix, as phones record), and StereoForge reads the frames as stored; re-encode it "
                             "with the turn applied (ffmpeg -i IN.mp4 OUT.mp4 applies it) and run again")
        if total == 0 or not width or not height:
            raise undecodable(path, "no frames found")
        start, stop = select_range(total, frames, path)
        return Source(path=path, kind="video", width=width, height=height, count=stop - start,
                      fps=float(rate) if rate else None, is_float=False, first_index=start, total=total,
                      index=index)
    raise InputError(f"source '{path}' has an unsupported type '{ext}'; give an image "
                     f"({', '.join(IMAGE_EXTENSIONS)}), a folder of images, or a video "
                     f"({', '.join(VIDEO_EXTENSIONS)})")


# ------------------------------------------------------------------------------------------------- depth


@dataclass(frozen=True, eq=False)
class DepthSource:
    """Raw depth for each selected source frame, read one frame at a time (kind conversion is elsewhere).

    Attributes:
        path: the depth file or folder.
        count: depth frames that will be yielded (equal to the source's selected count).
        height, width: depth size in pixels (equal to the source's).
        files: per-frame depth files (single files and folders), already narrowed to the selection.
        stack: a (T, H, W) array (memory-mapped for ``.npy``), or ``None`` for files.
        start: index into ``stack`` of the first selected frame.
    """

    path: Path
    count: int
    height: int
    width: int
    files: tuple[Path, ...] = ()
    stack: np.ndarray | None = None
    start: int = 0

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, depth)`` for each selected frame from ``start`` on (the frames before are not read):
        ``i`` 0-based over the selection, ``depth`` float32 (H, W) raw values."""
        for i in range(start, self.count):
            if self.stack is not None:
                depth = np.array(self.stack[self.start + i], dtype=np.float32)
                _drop_mapped_pages(self.stack)
                label = f"frame {self.start + i} of '{self.path}'"
            else:
                depth = read_depth_file(self.files[i])
                label = f"'{self.files[i]}'"
            if depth.shape != (self.height, self.width):
                raise InputError(f"depth {label} is {depth.shape[1]}x{depth.shape[0]} but the source is "
                                 f"{self.width}x{self.height}; resize the depth to the source size")
            yield i, depth


def _drop_mapped_pages(stack: np.ndarray) -> None:
    """Let a memory-mapped stack's pages go once a frame is copied out: pages read stay in the process's
    resident memory until unmapped, so a long clip would grow it by every frame read (a 3000-frame 854x480
    stack is 4.9 GB). Dropping them costs nothing: the file is read-only, and the next frame is read anew."""
    mapped = getattr(stack, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def _load_stack(path: Path) -> np.ndarray:
    """A depth clip in one file, as (T, H, W): ``.npy`` memory-mapped, ``.npz`` loaded (key 'depth', else the
    first array)."""
    if path.suffix.lower() == ".npy":
        array = load_npy(path, mmap=True)
    else:
        try:
            with np.load(path, allow_pickle=False) as archive:
                if not archive.files:
                    raise InputError(f"depth '{path}' holds no arrays; save the depth with numpy.savez")
                array = archive["depth" if "depth" in archive.files else archive.files[0]]
        except (OSError, ValueError, EOFError) as err:
            raise InputError(f"cannot read depth '{path}': {err}; save it with numpy.savez") from err
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"depth '{path}' holds {array.dtype} values; save numbers (float32 is best)")
    return array.reshape(npy_layout(array.shape, path))


def open_depth(path: str | os.PathLike, count: int, frames: FrameRange | None, size: tuple[int, int], *,
               total: int | None = None) -> DepthSource:
    """Open depth for a source, checking frame count and size up front.

    ``path`` may be one depth file (.npy .exr .png .tif .tiff) for a one-frame source, a folder of per-frame
    depth files (natural order, hidden files ignored), or one clip file: a ``.npy`` of shape (T, H, W)
    (memory-mapped, so a long clip stays on disk) or a ``.npz`` (key ``depth``, else its first array; loaded
    whole: prefer .npy for long clips). A clip with T == 1 serves a single image.

    Which depth frames go with the selected source frames:

    * if the depth has exactly ``count`` frames, depth frame k belongs to selected frame k;
    * otherwise, when a selection ``frames=(A, B)`` was made, the depth is taken to cover the original source
      and frames A..A+count-1 are used. It must then have ``total`` frames (the original source's count)
      when ``total`` is given, or at least A + count frames when it is not.

    Args:
        path: the depth file, folder or clip.
        count: frames selected from the source (``Source.count``).
        frames: the selection that was applied to the source (as given to :func:`open_source`), or ``None``.
        size: (H, W) of the source frames; the depth must have exactly this size.
        total: frames in the original source (``Source.total``), for the check above.

    Raises:
        InputError: missing or unreadable depth, a frame count that fits neither rule, or a size mismatch;
            the message names the depth path and both counts or sizes.
    """
    path = Path(path)
    _check_path(path, "depth")
    files: list[Path] = []
    stack = None
    if path.is_dir():
        files = list_frame_files(path, DEPTH_EXTENSIONS)
        if not files:
            raise InputError(f"depth folder '{path}' has no depth files; put one file per frame "
                             f"({', '.join(DEPTH_EXTENSIONS)}) in it")
        available = len(files)
    elif path.suffix.lower() in (".npy", ".npz"):
        stack = _load_stack(path)
        available = stack.shape[0]
    elif path.suffix.lower() in DEPTH_EXTENSIONS:
        files = [path]
        available = 1
    else:
        raise InputError(f"depth '{path}' has an unsupported type '{path.suffix}'; give a depth file "
                         f"({', '.join(DEPTH_EXTENSIONS)}), a folder of them, or a .npy/.npz clip")

    start = 0
    if available != count:
        first = frames[0] if frames is not None else 0
        covers_original = frames is not None and (available == total if total is not None
                                                  else available >= first + count)
        if not covers_original:
            whole = "" if total is None else f" (all {total})"
            selected = "" if frames is None else f" (frames {first}..{first + count - 1} selected)"
            raise InputError(f"depth '{path}' has {available} frames but the source has {count}{selected}; "
                             "give one depth frame per source frame"
                             + ("" if frames is None else f", or depth for every frame of the source{whole}"))
        start = first

    measured = path if stack is not None else files[start]
    found = tuple(stack.shape[1:]) if stack is not None else image_size(measured)
    if found != tuple(size):
        raise InputError(f"depth '{measured}' is {found[1]}x{found[0]} but the source frames are "
                         f"{size[1]}x{size[0]} (width x height); give depth of the source's size")
    if files:
        files = files[start:start + count]
        _check_same_size(files, found, "depth", "the source frames are")
        read_depth_file(files[0])  # catches an unreadable or 8-bit format before any work starts
        return DepthSource(path=path, count=count, height=found[0], width=found[1], files=tuple(files))
    return DepthSource(path=path, count=count, height=found[0], width=found[1], stack=stack, start=start)

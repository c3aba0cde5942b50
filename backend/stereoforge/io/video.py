"""Encoded video out, with stereo metadata where the codec or container can carry it, and the source's audio.

Codecs (``--codec``), each byte for byte the same from the same frames on every machine (see
``tests/test_deliverables.py``):

============  =========================  ===================  ==============================================
codec         FFmpeg encoder             pixels               containers
============  =========================  ===================  ==============================================
h264          libx264, CRF               8-bit 4:2:0          .mp4 .mov .mkv
h265          libx265, CRF               8-bit 4:2:0          .mp4 .mov .mkv
h265-10       libx265, CRF, Main 10      10-bit 4:2:0         .mp4 .mov .mkv (HDR-ready grading, less banding)
prores        prores_ks, 422 HQ          10-bit 4:2:2         .mov .mkv (editorial; ``crf`` does not apply)
prores4444    prores_ks, 4444            10-bit 4:4:4         .mov .mkv
============  =========================  ===================  ==============================================

What tells a player that a frame holds two eyes, by codec and container (checked by reading it back with
:func:`probe_stereo`, see ``tests/test_io.py`` and ``tests/test_deliverables.py``):

=============  ==========  ========================================================================
codec          container   stereo signalling written
=============  ==========  ========================================================================
H.264          .mp4 .mov   frame-packing arrangement SEI (libx264 ``frame-packing=3`` SBS, ``4`` TB)
H.264          .mkv        the SEI and the Matroska ``StereoMode`` element
any            .mkv        the Matroska ``StereoMode`` element
any            .mp4 .mov   with ``projection='vr180'``: Google's Spherical Video V2 ``st3d`` and ``sv3d``
                           boxes (:mod:`.spherical`)
H.265, ProRes  .mp4 .mov   none otherwise: libx265 has no frame-packing SEI option, ProRes has no such
                           field, and PyAV cannot attach the stream-level stereo side data from which
                           FFmpeg's mov muxer would write a box
=============  ==========  ========================================================================

So for H.265 or ProRes with stereo, choose .mkv. Frames are encoded with the BT.709 matrix, limited range, and
tagged so; players treat the values as display-referred (sRGB-like) video.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from .frames import open_video, undecodable
from .images import atomic_path
from .spherical import add_spherical_metadata

#: Encoder threads, the same on every machine: a video is byte for byte the same from the same frames. Left
#: to the encoder, the count follows the cores this process may use, and the bytes with it (x264 cuts each
#: frame into one slice per thread). Frame threads, not slices: as fast on 2 cores, and each frame one slice;
#: four, as each holds frames in memory (eight held some 50 MB more at 1708x480, for no speed on 2 cores).
#: x265 runs on one thread without a pool of its own (``pools=none``): with frame threads or its pool, 1 to 5 of
#: 30 runs on a busy 2-core machine gave other bytes (its lookahead and row tasks race there).
ENCODER_THREADS = 4


@dataclass(frozen=True)
class Codec:
    """How one ``--codec`` is encoded: FFmpeg's encoder, its pixel format, its options, where it may go."""

    encoder: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = ()
    containers: tuple[str, ...] = (".mp4", ".mov", ".mkv")
    #: Whether the constant rate factor sets the quality (ProRes has a fixed rate per profile instead).
    crf: bool = True


_PRORES_CONTAINERS = (".mov", ".mkv")  # FFmpeg's mp4 muxer refuses ProRes
#: Codec names accepted by :class:`VideoWriter` (and ``--codec``).
CODECS = {
    "h264": Codec("libx264", "yuv420p"),
    "h265": Codec("libx265", "yuv420p"),
    "h265-10": Codec("libx265", "yuv420p10le"),
    # prores_ks profiles: 3 is 422 HQ, 4 is 4444; "vendor apl0" is what Apple's players and editors expect.
    "prores": Codec("prores_ks", "yuv422p10le", (("profile", "3"), ("vendor", "apl0")), _PRORES_CONTAINERS, False),
    "prores4444": Codec("prores_ks", "yuv444p10le", (("profile", "4"), ("vendor", "apl0")), _PRORES_CONTAINERS,
                        False),
}
#: Containers :class:`VideoWriter` writes, chosen by the output's extension.
CONTAINERS = (".mp4", ".mkv", ".mov")
#: Frame-packed stereo layouts: side by side (left eye on the left), top-bottom (left eye on top).
STEREO_LAYOUTS = ("sbs", "tb")

_X264_FRAME_PACKING = {"sbs": 3, "tb": 4}  # H.264 frame_packing_arrangement_type
_MATROSKA_STEREO_MODE = {"sbs": "left_right", "tb": "top_bottom"}  # names FFmpeg's matroska muxer reads
_MATROSKA_TO_LAYOUT = {"left_right": "sbs", "right_left": "sbs", "top_bottom": "tb", "bottom_top": "tb"}
_STEREO3D_TO_LAYOUT = {1: "sbs", 2: "tb"}  # AVStereo3DType: AV_STEREO3D_SIDEBYSIDE, AV_STEREO3D_TOPBOTTOM
_BT709 = 1  # AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG


@dataclass(frozen=True)
class AudioClip:
    """The audio of a video source to carry into an output: its packets from ``start`` seconds after the
    source's first frame on (the time of the first frame taken), copied as they are (no re-encoding, no loss;
    cut to whole packets, about 21 ms for AAC)."""

    path: str
    start: float = 0.0


#: Audio codecs each container takes as they are; another source codec is refused (choose .mkv).
_AUDIO_CODECS = {
    ".mp4": ("aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"),
    ".mov": ("aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le",
             "pcm_s16be", "pcm_s24be"),
}
#: Spherical projections :class:`VideoWriter` can signal (:mod:`.spherical`), and the containers that hold it.
PROJECTIONS = ("vr180",)
_SPHERICAL_CONTAINERS = (".mp4", ".mov")


def _check_audio_codec(name: str, path: str, ext: str) -> None:
    if name not in _AUDIO_CODECS.get(ext, (name,)):
        raise InputError(f"the audio of '{path}' is {name}, which '{ext}' does not hold; write .mkv "
                         "(--container mkv), or re-encode the source's audio to AAC")


def check_audio(clip: AudioClip, ext: str) -> None:
    """Before anything is written: the container ``ext`` can hold the audio of ``clip`` as it is."""
    with contextlib.closing(open_video(Path(clip.path))) as source:
        if source.streams.audio:
            _check_audio_codec(source.streams.audio[0].codec_context.codec.canonical_name, clip.path, ext)


class VideoWriter:
    """Encode RGB frames to a video file, atomically.

    Use as a context manager; the file appears at ``path`` only when the ``with`` block ends without an
    exception (until then it is a hidden temporary file beside it, removed if an exception escapes)::

        with VideoWriter("out/shot_sbs.mp4", 3840, 1080, 24.0, stereo="sbs") as video:
            for frame in frames:
                video.write(frame)

    Args:
        path: output file; the container comes from its extension (.mp4, .mkv, .mov).
        width, height: frame size in pixels, the whole frame (both eyes for ``sbs``/``tb``). 4:2:0 and 4:2:2
            need even sizes: an odd width or height is padded by one pixel (the edge repeated) at the right or
            bottom.
        fps: frames per second (float, or a Fraction such as 24000/1001; a float is turned into the nearest
            fraction with a denominator up to 1001, so 23.976... becomes 24000/1001).
        codec: a name of :data:`CODECS` (see the module's table).
        crf: constant rate factor, 0 (lossless) to 51; 18 is visually lossless for most material (not used by
            ProRes, whose rate is fixed by its profile).
        stereo: ``None`` (mono), ``'sbs'`` or ``'tb'``: the frame packing to signal (see the module's table).
        audio: the source's audio to copy in, or None. A source without audio gives a video without.
        projection: ``None`` (flat) or ``'vr180'``: each eye a half-sphere equirectangular picture, signalled
            with the Spherical Video V2 boxes (.mp4 and .mov only).

    Attributes:
        stereo_metadata: what stereo signalling this writer puts in the file (empty when none can be).
        frames_written: frames encoded so far.
        audio_packets: audio packets copied so far.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float | Fraction,
                 codec: str = "h264", crf: int = 18, stereo: str | None = None, audio: AudioClip | None = None,
                 projection: str | None = None):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in CONTAINERS:
            raise InputError(f"video output '{self.path}' has an unsupported type '{ext}'; use one of "
                             f"{', '.join(CONTAINERS)}")
        if codec not in CODECS:
            raise InputError(f"video codec '{codec}' is not supported; use one of {', '.join(CODECS)}")
        if ext not in CODECS[codec].containers:
            raise InputError(f"video codec '{codec}' cannot go in '{ext}' ('{self.path}'); use one of "
                             f"{', '.join(CODECS[codec].containers)}")
        if stereo is not None and stereo not in STEREO_LAYOUTS:
            raise InputError(f"stereo layout '{stereo}' has no video metadata; use one of "
                             f"{', '.join(STEREO_LAYOUTS)} or None")
        if projection is not None and (projection not in PROJECTIONS or ext not in _SPHERICAL_CONTAINERS):
            raise InputError(f"projection '{projection}' cannot be signalled in '{self.path}'; use one of "
                             f"{', '.join(PROJECTIONS)} in {' or '.join(_SPHERICAL_CONTAINERS)}")
        if not 0 <= crf <= 51:
            raise InputError(f"crf {crf} is out of range; use 0 (lossless) to 51 (18 is a good default)")
        if width <= 0 or height <= 0:
            raise InputError(f"video size {width}x{height} is empty; give a positive width and height")
        if not fps or fps <= 0:
            raise InputError(f"frame rate {fps} is not positive; give frames per second, e.g. 24")
        self.width, self.height = int(width), int(height)
        self.rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.codec, self.crf, self.stereo = codec, int(crf), stereo
        self.audio, self.projection = audio, projection
        signals = []
        if stereo is not None and codec == "h264":
            signals.append("H.264 frame-packing SEI")
        if stereo is not None and ext == ".mkv":
            signals.append("Matroska StereoMode")
        if projection is not None:
            signals.append("Spherical Video V2 st3d and sv3d boxes")
        self.stereo_metadata = tuple(signals)
        self.frames_written = 0
        self.audio_packets = 0
        self._stack: contextlib.ExitStack | None = None
        self._container = None
        self._stream = None
        self._audio_in: Iterator | None = None
        self._audio_next = None

    def _encoder_options(self) -> dict[str, str]:
        codec = CODECS[self.codec]
        options = dict(codec.options)
        if codec.crf:
            options["crf"] = str(self.crf)
        if codec.encoder == "libx264":
            if self.stereo is not None:
                options["x264-params"] = f"frame-packing={_X264_FRAME_PACKING[self.stereo]}"
        elif codec.encoder == "libx265":
            # x265 otherwise prints its banner on stderr, and takes frame threads and a pool by the cores it sees
            # (see ENCODER_THREADS: on one thread, the same bytes every time).
            options["x265-params"] = "log-level=error:frame-threads=1:pools=none"
        return options

    def __enter__(self) -> VideoWriter:
        if self._stack is not None:
            raise RuntimeError(f"VideoWriter for '{self.path}' is already open")
        ext = self.path.suffix.lower()
        codec = CODECS[self.codec]
        with contextlib.ExitStack() as stack:
            temp = stack.enter_context(atomic_path(self.path))
            if self.projection is not None:  # after the container is closed, before the file is moved in place
                stack.push(partial(self._add_projection, temp))
            # faststart moves the index to the front so players can start before the whole file arrives;
            # Matroska would write the time of day and a random segment id without bitexact.
            options = {"movflags": "+faststart"} if ext in (".mp4", ".mov") else {"fflags": "+bitexact"}
            container = av.open(str(temp), mode="w", options=options)
            stack.callback(container.close)
            stream = container.add_stream(codec.encoder, rate=self.rate, options=self._encoder_options())
            stream.width = self.width + self.width % 2
            stream.height = self.height + self.height % 2
            stream.pix_fmt = codec.pix_fmt
            context = stream.codec_context
            context.thread_type, context.thread_count = "FRAME", ENCODER_THREADS
            context.colorspace = context.color_primaries = context.color_trc = _BT709
            context.color_range = _LIMITED_RANGE
            if codec.encoder == "libx265" and ext in (".mp4", ".mov"):
                context.codec_tag = "hvc1"  # Apple's players refuse H.265 tagged hev1 (FFmpeg's default)
            if self.stereo is not None and ext == ".mkv":
                stream.metadata["stereo_mode"] = _MATROSKA_STEREO_MODE[self.stereo]
            if self.audio is not None:
                self._open_audio(stack, container, ext)
            self._container, self._stream = container, stream
            self._stack = stack.pop_all()
        return self

    def _add_projection(self, temp: Path, exc_type, exc, tb) -> None:
        """An exit callback: the spherical metadata goes into a file that was written whole."""
        if exc_type is None:
            add_spherical_metadata(temp, self.stereo)

    def _open_audio(self, stack: contextlib.ExitStack, container, ext: str) -> None:
        """Add the source's audio stream, if it has one, and get its packets ready to be copied."""
        source = stack.enter_context(contextlib.closing(open_video(Path(self.audio.path))))
        if not source.streams.audio:
            return
        audio = source.streams.audio[0]
        _check_audio_codec(audio.codec_context.codec.canonical_name, self.audio.path, ext)
        out = container.add_stream_from_template(audio)
        video = source.streams.video[0]
        origin = video.start_time * video.time_base if video.start_time else 0  # the first frame's time
        start = round((origin + Fraction(self.audio.start)) / audio.time_base)

        def packets():
            for packet in source.demux(audio):
                if packet.pts is None or packet.pts < start:  # the demuxer's final empty packet; before --frames
                    continue
                packet.pts -= start
                packet.dts = packet.pts if packet.dts is None else packet.dts - start
                packet.stream = out
                yield packet

        self._audio_in = packets()
        self._audio_next = next(self._audio_in, None)

    def _mux_audio_until(self, seconds: Fraction) -> None:
        """Copy the audio packets that start before ``seconds``: interleaved with the video as it is written,
        so that neither the muxer nor this process holds the clip's packets."""
        while self._audio_next is not None and self._audio_next.pts * self._audio_next.time_base < seconds:
            self._container.mux(self._audio_next)
            self.audio_packets += 1
            self._audio_next = next(self._audio_in, None)

    def write(self, rgb: np.ndarray) -> None:
        """Encode one frame: uint8 (height, width, 3) sRGB-encoded RGB (see :func:`.images.to_uint8_srgb`)."""
        if self._stack is None:
            raise RuntimeError(f"VideoWriter for '{self.path}' is not open; use it in a 'with' block")
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.shape != (self.height, self.width, 3):
            raise ValueError(f"VideoWriter for '{self.path}' needs uint8 ({self.height}, {self.width}, 3) "
                             f"frames, got {rgb.dtype} {rgb.shape}")
        pad = ((0, self.height % 2), (0, self.width % 2), (0, 0))
        if any(after for _, after in pad):
            rgb = np.pad(rgb, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format=CODECS[self.codec].pix_fmt, dst_colorspace="ITU709",
                               dst_color_range="MPEG")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        with self._named_errors():
            for packet in self._stream.encode(frame):
                self._mux(packet)
            self.frames_written += 1
            self._mux_audio_until(self.frames_written / self.rate)

    def _flush(self) -> None:
        for packet in self._stream.encode():
            self._mux(packet)
        self._mux_audio_until(self.frames_written / self.rate)

    def _mux(self, packet) -> None:
        # libx265 leaves the decode time of a clip's only frame unset (whatever was in memory, far below any
        # real one), and the mp4 muxer then fails. No encoder here delays a frame by a second: a decode time
        # that far before the presentation time is that garbage, and the frame is decoded when it is shown.
        if packet.pts is not None and packet.time_base and (
                packet.dts is None or packet.dts < packet.pts - 1 / packet.time_base):
            packet.dts = packet.pts
        self._container.mux(packet)

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if exc_type is not None:
            return stack.__exit__(exc_type, exc, tb)  # closes the container, removes the temporary file
        with self._named_errors(), stack:
            self._flush()
        return False

    @contextlib.contextmanager
    def _named_errors(self):
        """FFmpeg's write errors (a full disk) name the temporary file; the user knows the video's name."""
        try:
            yield
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(self.path)) from err


def probe_stereo(path: str | os.PathLike) -> str | None:
    """The frame packing a video signals: ``'sbs'``, ``'tb'``, or ``None`` when it signals none.

    Reads the Matroska ``StereoMode`` (exported by FFmpeg as the stream tag ``stereo_mode``), else the stereo
    3D side data of the first decoded frame (from an H.264 frame-packing SEI, or from container-level stereo
    boxes). Eye order is not reported.

    Raises:
        InputError: the file cannot be opened or decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video '{path}' does not exist; check the path")
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        layout = _MATROSKA_TO_LAYOUT.get(stream.metadata.get("stereo_mode", ""))
        if layout is not None:
            return layout
        for frame in container.decode(stream):
            for side_data in frame.side_data:
                if side_data.type == av.sidedata.sidedata.Type.STEREO3D:
                    # AVStereo3D begins with its type, a C int in native byte order.
                    stereo_type = int(np.frombuffer(bytes(side_data)[:4], dtype=np.intc)[0])
                    return _STEREO3D_TO_LAYOUT.get(stereo_type)
            return None
        return None
    except av.FFmpegError as err:
        raise undecodable(path, err) from err
    finally:
        container.close()

"""What a convert job is asked to do: every option of ``stereoforge convert``, with units and defaults.

The same spec drives the CLI, the Python API and (later) the job server, and is recorded in ``shot.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .composite import LAYOUTS, VR180
from .curve import parse_curve
from .depth import DEPTH_KINDS, EDGE_RADIUS
from .errors import InputError
from .inpaint import DEFAULT_INPAINTER, INPAINTERS
from .io.video import CODECS
from .rig import CONVERGENCE_MODES, PIVOTS

#: Options that take a curve over the shot's frames (stereoforge.curve).
CURVES = ("interocular_curve", "convergence_curve", "max_parallax_curve")
#: ``--container``: the videos' file type; by default .mov for ProRes (what editorial takes), else .mp4.
VIDEO_CONTAINERS = ("mp4", "mov", "mkv")
DEFAULT_INTEROCULAR = 0.065
DEFAULT_FPS = 24.0


@dataclass
class ConvertSpec:
    """A mono clip and its depth -> a stereo shot. ``None`` means "worked out from the clip"."""

    source: str
    output_dir: str
    depth: str | None = None
    depth_kind: str = "relative"
    depth_scale: float = 1.0
    near: float = 1.0
    far: float = 10.0
    baseline: float | None = None
    depth_smoothing: float = 1.0
    depth_edge_radius: int = EDGE_RADIUS
    focal_px: float | None = None
    hfov: float | None = None
    interocular: float | None = None
    convergence_distance: float | None = None
    convergence_mode: str | None = None
    pivot: str | None = None
    max_parallax: float | None = None
    # A rig that moves and comfort limits (see stereoforge.curve for the curves' form).
    interocular_curve: str | None = None
    convergence_curve: str | None = None
    max_parallax_curve: str | None = None
    max_far_parallax: float | None = None
    screen_width: float | None = None
    floating_window: bool = False
    inpaint: str = DEFAULT_INPAINTER
    layouts: tuple[str, ...] = ("sbs",)
    frames: tuple[int | None, int | None] | None = None
    fps: float | None = None
    codec: str = "h264"
    crf: int = 18
    container: str | None = None
    vr_tags: bool = False
    cloud: bool = True
    cloud_stride: int = 2
    device: str = "auto"
    batch: int = 4
    stages: tuple[str, ...] | None = None
    # Models (stereoforge.models): a Hugging Face id or a local folder each.
    depth_model: str | None = None
    inpaint_model: str | None = None
    model_dtype: str = "auto"
    model_offload: str = "none"
    attention_slicing: bool = False
    vae_tiling: bool = False
    trust_remote_code: bool = False
    seed: int | None = None
    inpaint_prompt: str = ""
    inpaint_steps: int | None = None
    inpaint_chunk: int = 8
    inpaint_overlap: int = 2
    inpaint_tile: int = 512
    inpaint_tile_overlap: int = 64

    def check(self) -> None:
        """Reject values that cannot work, with a message naming the option and the value."""
        if self.depth is None and self.depth_model is None:
            raise InputError("no depth was given for the source; pass --depth FILE_OR_FOLDER, or --depth-model "
                             "MODEL to estimate it (e.g. depth-anything/Depth-Anything-V2-Small-hf)")
        if self.depth is not None and self.depth_model is not None:
            raise InputError("give either --depth (depth files) or --depth-model (a model estimates the depth), "
                             "not both")
        self._check_models()
        if self.depth_kind not in DEPTH_KINDS:
            raise InputError(f"--depth-kind {self.depth_kind!r} is not one of {', '.join(DEPTH_KINDS)}")
        for name in ("focal_px", "hfov", "interocular", "convergence_distance", "baseline", "fps",
                     "max_parallax", "max_far_parallax", "screen_width", "depth_scale"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise InputError(f"--{name.replace('_', '-')} {value} is not valid; it must be a positive number")
        if self.focal_px is not None and self.hfov is not None:
            raise InputError("give either --focal-px or --hfov, not both")
        self._check_curves()
        if self.convergence_mode is not None and self.convergence_mode not in CONVERGENCE_MODES:
            raise InputError(f"--convergence-mode {self.convergence_mode!r} is not one of "
                             f"{', '.join(CONVERGENCE_MODES)}")
        if self.pivot is not None and self.pivot not in PIVOTS:
            raise InputError(f"--pivot {self.pivot!r} is not one of {', '.join(PIVOTS)}")
        if self.inpaint not in INPAINTERS:
            raise InputError(f"--inpaint {self.inpaint!r} is not one of {', '.join(INPAINTERS)}")
        if not self.layouts:
            raise InputError(f"give at least one --layout of {', '.join(LAYOUTS)}")
        for layout in self.layouts:
            if layout not in LAYOUTS:
                raise InputError(f"--layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.codec not in CODECS:
            raise InputError(f"--codec {self.codec!r} is not one of {', '.join(CODECS)}")
        if self.container is not None and self.container not in VIDEO_CONTAINERS:
            raise InputError(f"--container {self.container!r} is not one of {', '.join(VIDEO_CONTAINERS)}")
        if self.container == "mp4" and ".mp4" not in CODECS[self.codec].containers:
            raise InputError(f"--codec {self.codec} cannot go in --container mp4; use mov or mkv")
        if VR180 in self.layouts and self.container == "mkv":
            raise InputError("--layout vr180 needs --container mp4 or mov: StereoForge writes the VR180 "
                             "(spherical video) metadata only there")
        if not 0 <= self.crf <= 51:
            raise InputError(f"--crf {self.crf} is not valid; give 0 (lossless) to 51 (worst); 18 looks clean")
        if self.cloud_stride < 1:
            raise InputError(f"--cloud-stride {self.cloud_stride} is not valid; give 1 (every pixel) or more")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch} is not valid; give 1 or more frames")
        if self.depth_edge_radius < 0:
            raise InputError(f"--depth-edge-radius {self.depth_edge_radius} is not valid; give 0 (leave depth edges "
                             "as they are) or more pixels")
        if self.depth_smoothing < 0 or not math.isfinite(self.depth_smoothing):
            raise InputError(f"--depth-smoothing {self.depth_smoothing} s is not valid; give 0 or more seconds")
        if self.stages is not None:
            from .pipeline import STAGES

            unknown = [st for st in self.stages if st not in STAGES]
            if unknown or not self.stages:
                raise InputError(f"--stages {','.join(self.stages)!r} is not valid; choose from {', '.join(STAGES)}")
        if self.frames is not None:
            first, last = self.frames
            if (first is not None and first < 1) or (last is not None and last < 1) or (
                    first is not None and last is not None and last < first):
                shown = ":".join("" if n is None else str(n) for n in self.frames)
                raise InputError(f"--frames {shown} is not valid; frames are numbered from 1, "
                                 "A:B takes frames A to B inclusive")

    def _check_curves(self) -> None:
        """The interocular comes from one of four options; the convergence from one of two."""
        given = [name for name in ("interocular", "interocular_curve", "max_parallax", "max_parallax_curve")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            flags = " and ".join(f"--{name.replace('_', '-')}" for name in given)
            raise InputError(f"{flags} each set the interocular; give one of them")
        if self.convergence_distance is not None and self.convergence_curve is not None:
            raise InputError("give either --convergence-distance or --convergence-curve, not both")
        for name in CURVES:
            if getattr(self, name) is not None:
                parse_curve(getattr(self, name), f"--{name.replace('_', '-')}")

    def _check_models(self) -> None:
        from .models.loading import DTYPES, OFFLOAD_MODES

        if self.model_dtype not in DTYPES:
            raise InputError(f"--dtype {self.model_dtype!r} is not one of auto, float32, float16, bfloat16")
        if self.model_offload not in OFFLOAD_MODES:
            raise InputError(f"--offload {self.model_offload!r} is not one of {', '.join(OFFLOAD_MODES)}")
        if self.inpaint_chunk < 1 or not 0 <= self.inpaint_overlap < self.inpaint_chunk:
            raise InputError(f"--inpaint-chunk {self.inpaint_chunk} with --inpaint-overlap {self.inpaint_overlap} "
                             "is not valid; give a chunk of 1 or more frames and an overlap smaller than it")
        if self.inpaint_tile < 64 or not 0 <= self.inpaint_tile_overlap <= self.inpaint_tile // 2:
            raise InputError(f"--inpaint-tile {self.inpaint_tile} with --inpaint-tile-overlap "
                             f"{self.inpaint_tile_overlap} is not valid; give tiles of 64 pixels or more and an "
                             "overlap of at most half a tile")
        if self.inpaint_steps is not None and self.inpaint_steps < 1:
            raise InputError(f"--inpaint-steps {self.inpaint_steps} is not valid; give 1 or more")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConvertSpec:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown convert option(s): {', '.join(unknown)}")
        data = dict(data)
        if data.get("layouts") is not None:
            data["layouts"] = tuple(data["layouts"])
        if data.get("stages") is not None:
            data["stages"] = tuple(data["stages"])
        if data.get("frames") is not None:
            data["frames"] = tuple(data["frames"])
        return cls(**data)


def parse_frames(text: str) -> tuple[int | None, int | None]:
    """``"A:B"`` (1-based, inclusive; either side may be empty) or ``"N"`` -> ``(A, B)``."""
    try:
        if ":" not in text:
            n = int(text)
            return n, n
        a, b = text.split(":", 1)
        return (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise InputError(f"--frames {text!r} is not valid; write A:B (1-based, inclusive), A: or :B") from None


def video_container(spec: ConvertSpec) -> str:
    """The videos' extension (with the dot): ``--container``, else .mov for ProRes and .mp4 for the rest."""
    return "." + (spec.container or ("mp4" if ".mp4" in CODECS[spec.codec].containers else "mov"))

"""What a convert job is asked to do: every option of ``stereoforge convert``, with units and defaults.

Each option is defined once, here, as a field of :class:`ConvertSpec` made by :func:`option`: its name, type
(the annotation), default, unit, help and choices. The command line (``stereoforge.cli.console``) builds its
arguments from these fields, the job server its request body, and ``shot.json`` records the spec as it is;
``tests/test_options.py`` checks that the add-on's properties agree. To add an option: add a field here with
``option(...)`` (and a check in :meth:`ConvertSpec.check` if its values need more than its choices), then read it
where it is used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .composite import LAYOUTS, VR180, VR_TAGS
from .curve import parse_curve
from .depth import DEPTH_KINDS, EDGE_RADIUS
from .errors import InputError
from .inpaint import DEFAULT_INPAINTER, INPAINTERS
from .io.video import CODECS
from .rig import CONVERGENCE_MODES, DEFAULT_INTEROCULAR, PIVOTS
from .shot import INTERMEDIATES, STAGES

MODEL_DTYPES = ("auto", "float32", "float16", "bfloat16")
#: Short names of the model precisions, taken wherever a precision is given (``--dtype fp16``, the server's body).
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
OFFLOAD_MODES = ("none", "model", "sequential")
#: Options that take a curve over the shot's frames (stereoforge.curve).
CURVES = ("interocular_curve", "convergence_curve", "max_parallax_curve")
#: ``--container``: the videos' file type; by default .mov for ProRes (what editorial takes), else .mp4.
VIDEO_CONTAINERS = ("mp4", "mov", "mkv")
DEFAULT_FPS = 24.0
#: The command line's placeholder for a value in each unit.
UNIT_METAVARS = {"m": "M", "px": "PX", "%": "PCT", "s": "S", "deg": "DEG", "frames": "N"}


def option(default, help: str, *, group: str, flag: str | None = None, unit: str | None = None,
           metavar: str | None = None, choices: tuple[str, ...] | None = None, listed: bool = False,
           parse=None):
    """A spec field that is also a command-line option.

    ``help`` may say ``%(default)s``. ``flag``: the option's name on the command line when it is not the field's
    (``--dtype`` for ``model_dtype``); a boolean that defaults to true is turned off by ``--no-NAME``.
    ``listed``: a tuple given as ``A,B,...``. ``parse``: turns the command line's text into the value, raising
    :class:`InputError` (the default: the annotated type's).
    """
    meta = {"help": help, "group": group, "flag": flag, "unit": unit, "metavar": metavar or UNIT_METAVARS.get(unit),
            "choices": choices, "listed": listed, "parse": parse}
    return field(default=default, metadata=meta)


def model_dtype(name: str) -> str:
    """A model precision by its own name: ``float16`` for ``fp16`` (the other names are left as they are, for the
    option's choices to check)."""
    return DTYPE_ALIASES.get(name, name)


def flag_of(f) -> str:
    """``--name`` of a spec field on the command line."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


DEPTH, CAMERA, RIG, COMFORT = "depth", "camera (principal point at the image centre)", \
    "stereo rig (Blender's stereo camera)", "comfort"
OUTPUT, MODELS = "inpainting and output", "models (a Hugging Face id or a local folder each)"


@dataclass
class ConvertSpec:
    """A mono clip and its depth -> a stereo shot. ``None`` means "worked out from the clip"."""

    source: str
    output_dir: str
    depth: str | None = option(
        None, "depth for SOURCE: one file for an image (.npy, .exr, 16-bit .png/.tif), a folder of per-frame files, "
              "or one .npy/.npz stack shaped (frames, height, width)", group=DEPTH, metavar="PATH")
    depth_kind: str = option(
        "relative", "metric: metres along the camera axis; relative: affine-invariant inverse depth (as Depth "
                    "Anything outputs), mapped to --near..--far; disparity: pixels between a stereo pair, with "
                    "--baseline (default: %(default)s)", group=DEPTH, choices=DEPTH_KINDS)
    depth_scale: float = option(
        1.0, "multiply the file's values by F first, e.g. 0.001 for millimetres (default: %(default)s)",
        group=DEPTH, metavar="F")
    near: float = option(1.0, "relative depth: metres of the nearest point (default: %(default)s, as seed 001)",
                         group=DEPTH, unit="m")
    far: float = option(10.0, "relative depth: metres of the farthest point (default: %(default)s)", group=DEPTH,
                        unit="m")
    baseline: float | None = option(
        None, "disparity depth: the stereo pair's baseline in metres (default: the interocular)", group=DEPTH,
        unit="m")
    depth_smoothing: float = option(
        1.0, "relative depth: seconds over which the depth normalisation may change; 0 normalises each frame on its "
             "own (flickers) (default: %(default)s)", group=DEPTH, unit="s")
    depth_edge_radius: int = option(
        EDGE_RADIUS, "make soft depth edges up to this many pixels wide sharp, so that the blurred outlines a depth "
                     "model gives do not smear stray points into the holes; 0 keeps the depth as it is (a "
                     "renderer's Z pass) (default: %(default)s)", group=DEPTH, unit="px")
    focal_px: float | None = option(None, "focal length in pixels", group=CAMERA, metavar="F")
    hfov: float | None = option(
        None, "horizontal field of view in degrees (default: a 35 mm lens on a 36 mm-wide sensor, about 54.4 "
              "degrees)", group=CAMERA, unit="deg")
    interocular: float | None = option(
        None, f"distance between the eyes in metres (default: {DEFAULT_INTEROCULAR}; with --depth-kind disparity, "
              "the baseline)", group=RIG, unit="m")
    convergence_distance: float | None = option(
        None, "metres to the zero-parallax plane (default: the middle of the clip's depth range in parallax, so "
              "the nearest and farthest points get equal and opposite parallax)", group=RIG, unit="m")
    convergence_mode: str | None = option(
        None, "OFFAXIS: parallel eyes with shifted image windows (Blender's default); PARALLEL: no shift, "
              "everything in front of the screen; TOE: eyes turned inwards (default: OFFAXIS, or PARALLEL with "
              "--depth-kind disparity)", group=RIG, choices=CONVERGENCE_MODES)
    pivot: str | None = option(
        None, "which view stays where the source camera is: CENTER renders both eyes from the centre view; LEFT "
              "keeps the source as the left eye and renders the right one (default: CENTER, or LEFT with "
              "--depth-kind disparity)", group=RIG, choices=PIVOTS)
    max_parallax: float | None = option(
        None, "depth budget: set the interocular so the nearest point's parallax is PCT %% of the image width (1-3 "
              "is comfortable on a TV)", group=RIG, unit="%")
    # A rig that moves and comfort limits (see stereoforge.curve for the curves' form).
    interocular_curve: str | None = option(
        None, "an interocular that changes over the shot: keys FRAME:METRES,... (e.g. 1:0.03,8:0.2; shot frames "
              "from 1, linear between keys, held outside) or a file of 'FRAME METRES' lines", group=RIG,
        metavar="KEYS|FILE")
    convergence_curve: str | None = option(
        None, "a convergence distance that changes over the shot, keyed as --interocular-curve", group=RIG,
        metavar="KEYS|FILE")
    max_parallax_curve: str | None = option(
        None, "a depth budget that changes over the shot: keys FRAME:PCT, as --interocular-curve", group=RIG,
        metavar="KEYS|FILE")
    max_far_parallax: float | None = option(
        None, "the farthest point's parallax (behind the screen) may be at most PCT %% of the image width; a rig "
              "that gives more is narrowed, with a warning", group=COMFORT, unit="%")
    screen_width: float | None = option(
        None, "width of the screen the shot is for, in metres: far parallax wider than a viewer's eyes (65 mm) "
              "there makes the eyes diverge, so the rig is narrowed, with a warning", group=COMFORT, unit="m")
    floating_window: bool = option(
        False, "black out the left edge of the left eye and the right edge of the right eye where something in "
               "front of the screen is cut by the frame (a window violation)", group=COMFORT)
    inpaint: str = option(
        DEFAULT_INPAINTER, "how dropout (pixels no point reached) is filled: background copies the background that "
                           "nearby frames saw there (optical flow), else continues the farther side, stable from "
                           "frame to frame; telea is OpenCV's, frame by frame; none leaves it black (default: "
                           "%(default)s)", group=OUTPUT, choices=tuple(sorted(INPAINTERS)))
    layouts: tuple[str, ...] = option(
        ("sbs",), "one or more of " + ", ".join(LAYOUTS) + ": side-by-side, half side-by-side, top-bottom, half "
                  "top-bottom, Dubois red-cyan anaglyph, two separate eyes; vr180: each eye as a half-sphere "
                  "equirectangular picture (reprojected with the shot's focal length, black outside the camera's "
                  "view), side by side, tagged for headsets (Spherical Video V2); exr-multiview: one EXR per frame "
                  "with both eyes as the views left and right (linear, half float, a dropout channel), for Nuke and "
                  "Blender, no video (default: sbs)", group=OUTPUT,
        flag="--layout", metavar="LAYOUT[,LAYOUT...]", choices=LAYOUTS, listed=True)
    frames: tuple[int | None, int | None] | None = option(
        None, "frames A to B of the source, numbered from 1, inclusive (A: or :B for open ends)", group=OUTPUT,
        metavar="A:B", parse=lambda text: parse_frames(text))
    fps: float | None = option(None, "frames per second of the output (default: the source's, or 24)",
                               group=OUTPUT)
    codec: str = option(
        "h264", "video codec: h264, h265 (8-bit), h265-10 (10-bit Main 10), prores (ProRes 422 HQ) or prores4444 "
                "(ProRes 4444), for editorial; a video source's audio is copied into every video (default: "
                "%(default)s)", group=OUTPUT, choices=tuple(CODECS))
    crf: int = option(18, "video quality, 0 lossless .. 51 worst; not used by ProRes (default: %(default)s)",
                      group=OUTPUT)
    container: str | None = option(
        None, "the videos' file type: mkv also carries Matroska's StereoMode, for any codec (default: mov for "
              "ProRes, else mp4)", group=OUTPUT, choices=VIDEO_CONTAINERS)
    vr_tags: bool = option(
        False, "end the videos' names with the tags VR players read the layout from: "
               + ", ".join(f"{tag} ({layout})" for layout, tag in VR_TAGS.items()), group=OUTPUT)
    cloud: bool = option(True, "do not write the USD point clouds (faster, less disk)", group=OUTPUT)
    cloud_stride: int = option(
        2, "keep every N-th pixel in each direction in cloud.usdc (default: %(default)s; 1 for Blender renders at "
           "full resolution)", group=OUTPUT, metavar="N")
    device: str = option("auto", "torch device for splatting: auto, cpu, cuda (default: %(default)s)",
                         group=OUTPUT)
    batch: int = option(4, "frames splatted together (default: %(default)s)", group=OUTPUT, unit="frames")
    stages: tuple[str, ...] | None = option(
        None, "run only these of " + ", ".join(STAGES) + " (default: all); the others' files must be there already, "
              "e.g. eyes rendered by Blender", group=OUTPUT, metavar="STAGE[,STAGE...]", choices=STAGES,
        listed=True)
    keep: tuple[str, ...] | None = option(
        None, "also write these intermediates, which a run hands from stage to stage in memory: "
              + ", ".join(INTERMEDIATES) + " (the splatted eyes as EXR, their dropout masks, the filled eyes as "
              "PNG); a run that stops before the stage that reads them writes them anyway, for the next run "
              "(default: none)", group=OUTPUT, metavar="WHAT[,WHAT...]", choices=tuple(INTERMEDIATES), listed=True)
    # Models (stereoforge.models): a Hugging Face id or a local folder each.
    depth_model: str | None = option(
        None, "estimate the depth with a model instead of --depth: a Hugging Face id or a local folder of a "
              "transformers depth-estimation model (Depth Anything V2, DPT, ZoeDepth) or a diffusers Marigold "
              "depth pipeline; its kind of depth is known (see stereoforge models)", group=DEPTH, metavar="MODEL")
    inpaint_model: str | None = option(
        None, "fill dropout with a diffusers inpainting pipeline instead of --inpaint: an image inpainter (e.g. "
              "Stable Diffusion inpainting) or a video inpainter that fills each chunk as one clip under a mask "
              "video (e.g. Wan VACE)", group=MODELS, metavar="MODEL")
    model_dtype: str = option(
        "auto", "model precision; fp32, fp16 and bf16 are taken for float32, float16 and bfloat16 (default: auto: "
                "bfloat16 or float16 on a GPU, float32 on the CPU)", group=MODELS, flag="--dtype",
        choices=MODEL_DTYPES, parse=model_dtype)
    model_offload: str = option(
        "none", "keep models in CPU memory and move each part to the GPU only while it runs: model (a little "
                "slower, much less VRAM) or sequential (slowest, least VRAM) (default: %(default)s)",
        group=MODELS, flag="--offload", choices=OFFLOAD_MODES)
    attention_slicing: bool = option(False, "attention in slices: less memory, slower", group=MODELS)
    vae_tiling: bool = option(False, "decode frames with the VAE tile by tile", group=MODELS)
    trust_remote_code: bool = option(
        False, "let a model run code from its own repository (off by default: read that code first)",
        group=MODELS)
    seed: int | None = option(
        None, "noise seed of the models (default: drawn at random and recorded in shot.json)", group=MODELS,
        metavar="K")
    inpaint_prompt: str = option(
        "", "prompt for the inpainting model (default: none; the surroundings guide the fill)", group=MODELS,
        metavar="TEXT")
    inpaint_steps: int | None = option(None, "denoising steps of the inpainting model", group=MODELS, metavar="N")
    inpaint_chunk: int = option(8, "frames per inpainting call (default: %(default)s)", group=MODELS,
                                unit="frames")
    inpaint_overlap: int = option(
        2, "frames of the previous chunk filled again with the next one and cross-faded, so the fill cannot jump "
           "between chunks (default: %(default)s)", group=MODELS, unit="frames")
    inpaint_tile: int = option(
        512, "frames larger than this are inpainted in overlapping tiles of this size (default: %(default)s)",
        group=MODELS, unit="px")
    inpaint_tile_overlap: int = option(64, "pixels shared by neighbouring tiles, blended (default: %(default)s)",
                                       group=MODELS, unit="px")

    def __post_init__(self) -> None:
        self.model_dtype = model_dtype(self.model_dtype)

    def check(self) -> None:
        """Reject values that cannot work, with a message naming the option and the value."""
        if self.depth is None and self.depth_model is None:
            raise InputError("no depth was given for the source; pass --depth FILE_OR_FOLDER, or --depth-model "
                             "MODEL to estimate it (e.g. depth-anything/Depth-Anything-V2-Small-hf)")
        if self.depth is not None and self.depth_model is not None:
            raise InputError("give either --depth (depth files) or --depth-model (a model estimates the depth), "
                             "not both")
        self._check_choices()
        self._check_models()
        for name in ("focal_px", "hfov", "interocular", "convergence_distance", "baseline", "fps",
                     "max_parallax", "max_far_parallax", "screen_width", "depth_scale"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise InputError(f"--{name.replace('_', '-')} {value} is not valid; it must be a positive number")
        if self.focal_px is not None and self.hfov is not None:
            raise InputError("give either --focal-px or --hfov, not both")
        self._check_curves()
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
        if self.frames is not None:
            first, last = self.frames
            if (first is not None and first < 1) or (last is not None and last < 1) or (
                    first is not None and last is not None and last < first):
                shown = ":".join("" if n is None else str(n) for n in self.frames)
                raise InputError(f"--frames {shown} is not valid; frames are numbered from 1, "
                                 "A:B takes frames A to B inclusive")

    def _check_choices(self) -> None:
        """Every option with choices holds one of them (each item, for a list such as --layout)."""
        for f in fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if not choices or value is None:
                continue
            if f.metadata["listed"] and not value:
                raise InputError(f"give at least one {flag_of(f)} of {', '.join(choices)}")
            for item in value if f.metadata["listed"] else (value,):
                if item not in choices:
                    raise InputError(f"{flag_of(f)} {item!r} is not one of {', '.join(choices)}")

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
        for name in ("layouts", "stages", "frames", "keep"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


def options(cls=None) -> list:
    """The fields of a spec class that are options (made by :func:`option`), in order."""
    return [f for f in fields(cls or ConvertSpec) if "help" in f.metadata]


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

"""``generate``: a prompt (and optionally a first frame) becomes a stereo shot.

    prompt -> video model -> generated/000001.png ... -> depth model -> estimated_depth/ -> convert (same shot)

The video model is any diffusers text-to-video or image-to-video pipeline (:mod:`stereoforge.models.video`); the
frames land in the shot folder, and the normal convert pipeline takes them from there, with depth from the depth
model. ``shot.json`` records under ``generate`` every parameter, the seed actually used, the model's id, class and
revision, and the library versions, so the take can be made again.

Running the same command again resumes: finished frames of every stage are kept. The video itself is made in one
call (a video model denoises all frames together), so it is either complete or made again; a changed generation
setting (prompt, model, size, seed...) starts the shot over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from . import __version__
from .errors import InputError
from .shot import GENERATED, SHOT_JSON, frame_name
from .spec import DEFAULT_FPS, ConvertSpec

#: The depth model ``generate`` uses unless told otherwise (relative inverse depth, 25M parameters).
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
#: ConvertSpec fields that ``generate`` sets itself.
SET_BY_GENERATE = ("source", "output_dir", "depth", "frames")

Progress = Callable[[str, int, int], None]


@dataclass
class GenerateSpec:
    """A generate job: what to make, with which video model, and the convert options for the rest.

    ``None`` leaves a value to the video pipeline's own default. ``options`` holds every convert option (rig,
    inpainting, output, device, dtype, seed, depth model); its ``source`` and ``output_dir`` are set here.
    """

    prompt: str
    output_dir: str
    video_model: str
    image: str | None = None
    negative_prompt: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    #: Make the video only (a take: ``generated/`` and shot.json), no depth and no stereo shot.
    video_only: bool = False
    options: ConvertSpec | None = None

    def __post_init__(self):
        if self.options is None:
            self.options = ConvertSpec(source="", output_dir=self.output_dir, depth_model=DEFAULT_DEPTH_MODEL)
        self.options = dataclasses.replace(self.options, source=self.generated_dir, output_dir=self.output_dir,
                                           depth=None, frames=None,
                                           depth_model=self.options.depth_model or DEFAULT_DEPTH_MODEL)

    @property
    def generated_dir(self) -> str:
        return os.path.join(os.path.abspath(self.output_dir), GENERATED)

    def check(self) -> None:
        if not self.prompt and not self.image:
            raise InputError("give a prompt, or a first frame with --image")
        if not self.video_model:
            raise InputError("give a --video-model: a Hugging Face id (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or "
                             "a local folder of a diffusers text-to-video pipeline")
        for name in ("num_frames", "height", "width", "steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value} is not valid; give a positive number")
        if self.guidance is not None and self.guidance < 0:
            raise InputError(f"--guidance {self.guidance} is not valid; give 0 or more")
        if self.image is not None and not os.path.isfile(self.image):
            raise InputError(f"--image '{self.image}' does not exist; give the first frame as an image file")
        self.options.check()

    def to_dict(self) -> dict:
        """Flat: the generation fields and every convert option (as the job server takes them)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        data.update({k: v for k, v in self.options.to_dict().items() if k not in SET_BY_GENERATE})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GenerateSpec:
        own = {f.name for f in fields(cls)} - {"options"}
        convert = {k: v for k, v in data.items() if k not in own}
        refused = sorted(set(convert) & set(SET_BY_GENERATE))
        if refused:
            raise InputError(f"generate sets {', '.join(refused)} itself; leave them out")
        options = ConvertSpec.from_dict({"source": "", "output_dir": data.get("output_dir", ""), **convert})
        return cls(**{k: v for k, v in data.items() if k in own}, options=options)

    def settings(self) -> dict:
        """What shapes the generated frames: a change of any of these makes the video again."""
        o = self.options
        image = None
        if self.image is not None:
            with open(self.image, "rb") as f:
                image = {"path": os.path.abspath(self.image), "sha1": hashlib.sha1(f.read()).hexdigest()}
        video_model = os.path.abspath(self.video_model) if os.path.isdir(self.video_model) else self.video_model
        return {"video_model": video_model, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "image": image, "num_frames": self.num_frames, "height": self.height, "width": self.width,
                "steps": self.steps, "guidance": self.guidance, "seed": o.seed, "fps": o.fps,
                "dtype": o.model_dtype, "trust_remote_code": o.trust_remote_code}


# ----------------------------------------------------------------------------------------------- the job


def _read_shot_json(shot: str) -> dict:
    """The shot's record; {} when there is none or it cannot be read (a new take is made then)."""
    try:
        with open(os.path.join(shot, SHOT_JSON)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_shot_json(shot: str, meta: dict) -> None:
    from .io.images import atomic_path

    with atomic_path(os.path.join(shot, SHOT_JSON)) as tmp, open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=str)


def _check_output(shot: str, output_dir: str) -> None:
    if os.path.exists(shot) and not os.path.isdir(shot):
        raise InputError(f"output '{output_dir}' is a file; give a folder")
    if os.path.isdir(shot) and os.listdir(shot) and not os.path.exists(os.path.join(shot, SHOT_JSON)):
        raise InputError(f"output folder '{output_dir}' exists, is not empty and holds no shot.json; give a new "
                         "or empty folder (or an existing shot folder to resume it)")


def _generated_frames(folder: str, count: int) -> list[str]:
    return [os.path.join(folder, frame_name(n, "png")) for n in range(1, count + 1)]


def _start_over(shot: str) -> None:
    """A new take: everything made from the previous one goes (shot.json is rewritten next)."""
    for name in os.listdir(shot):
        path = os.path.join(shot, name)
        if name == SHOT_JSON:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def make_video(spec: GenerateSpec, progress: Progress, cancel: Callable[[], bool], log) -> dict:
    """Generate the mono frames into ``SHOT/generated/`` (or keep them when they are already there, made with
    the same settings); returns the ``generate`` record of shot.json."""
    from .io.images import read_image, to_uint8_srgb, write_png
    from .models.loading import model_options, versions
    from .models.video import VideoRequest, load_video_model

    shot = os.path.abspath(spec.output_dir)
    settings = spec.settings()
    meta = _read_shot_json(shot)
    previous = meta.get("generate")
    if previous and previous.get("settings") == settings and previous.get("complete"):
        paths = _generated_frames(spec.generated_dir, previous["frames"])
        if all(os.path.exists(p) for p in paths):
            progress("generate", previous["frames"], previous["frames"])
            return previous
    if os.path.isdir(shot) and os.listdir(shot):
        if previous:
            log("generation settings changed since the last run: making a new take")
        _start_over(shot)
    seed = spec.options.seed if spec.options.seed is not None else secrets.randbelow(2**31)
    record = {"settings": settings, "seed": seed, "complete": False,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.makedirs(shot, exist_ok=True)
    _write_shot_json(shot, {"stereoforge": __version__, "generate": record})

    progress("loading model", 0, 1)
    model = load_video_model(spec.video_model, model_options(spec.options), log)
    progress("loading model", 1, 1)
    image = to_uint8_srgb(read_image(spec.image)) if spec.image else None
    request = VideoRequest(prompt=spec.prompt, negative_prompt=spec.negative_prompt, image=image,
                           num_frames=spec.num_frames, height=spec.height, width=spec.width, steps=spec.steps,
                           guidance=spec.guidance, seed=seed, fps=spec.options.fps)
    started = time.perf_counter()
    frames = model(request, progress=lambda done, total: progress("generate", done, total), cancel=cancel, log=log)
    seconds = time.perf_counter() - started
    if not frames:
        raise InputError(f"video model '{spec.video_model}' returned no frames")
    paths = _generated_frames(spec.generated_dir, len(frames))
    for path, frame in zip(paths, frames, strict=True):
        write_png(path, frame)
    h, w = frames[0].shape[:2]
    record.update({
        "complete": True, "frames": len(frames), "size": [w, h],
        "fps": spec.options.fps or model.default_fps or DEFAULT_FPS,
        "model": model.info, "pipeline": model.name,
        "call": model.arguments(request),
        "versions": {"stereoforge": __version__, **versions()},
        "seconds": seconds,
    })
    _write_shot_json(shot, {**_read_shot_json(shot), "generate": record,
                            "models": {**_read_shot_json(shot).get("models", {}), "video": model.info}})
    return record


def generate(spec: GenerateSpec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
             log: Callable[[str], None] | None = None, ray: str | None = None) -> dict:
    """Run (or resume) a generate job: the video, its depth, then the stereo shot (on the Ray cluster at
    ``ray``, see :mod:`stereoforge.farm`, when given). Returns convert's result with ``generate`` (the record
    written to shot.json) added.

    Raises :class:`InputError` for bad input and :class:`~stereoforge.errors.Cancelled` when ``cancel()`` turns
    true (finished frames stay).
    """
    from .pipeline import convert

    progress = progress or (lambda stage, done, total: None)
    cancel = cancel or (lambda: False)
    log = log or (lambda message: None)
    from .models.registry import check_available

    spec.check()
    shot = os.path.abspath(spec.output_dir)
    _check_output(shot, spec.output_dir)
    models = dataclasses.replace(spec.options, depth_model=None, inpaint_model=None) if spec.video_only else (
        spec.options)
    check_available(models, spec.video_model)
    record = make_video(spec, progress, cancel, log)
    if spec.video_only:
        return {"shot_dir": shot, "videos": [], "frames": record["frames"], "size": tuple(record["size"]),
                "generate": record}
    options = dataclasses.replace(spec.options, fps=record["fps"])
    if ray is not None:
        from .farm import convert as convert_on_ray

        result = convert_on_ray(options, ray, progress=progress, cancel=cancel, log=log)
    else:
        result = convert(options, progress=progress, cancel=cancel, log=log)
    return {**result, "generate": record}

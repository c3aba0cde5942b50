"""Mono video from a prompt (and optionally a first frame): any diffusers text-to-video or image-to-video pipeline.

The pipeline is loaded with ``DiffusionPipeline.from_pretrained`` and driven through its own ``__call__``: Wan,
CogVideoX, LTX-Video, HunyuanVideo, TextToVideoSD (zeroscope), Stable Video Diffusion and others that follow
diffusers' conventions. Which arguments a pipeline takes is read from its ``__call__`` signature, so a new
family works without code here, as long as it takes ``num_frames`` and returns ``.frames``. Options it does not
take are left out (with a note in the log) rather than guessed; a pipeline that cannot make video (no
``num_frames``), or an image-to-video one called without an image, is an :class:`InputError` that says so.

Progress and cancellation go through ``callback_on_step_end`` (or the older ``callback``/``callback_steps``):
the callback reports each denoising step and raises :class:`Cancelled` to stop inside the loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled, InputError
from .loading import LoadOptions, Log, cached, load_pipeline, locate, provenance

#: Frames per second a family's videos are made for, by pipeline class-name prefix (output timing only).
FAMILY_FPS = {"Wan": 16.0, "CogVideoX": 8.0, "LTX": 24.0, "HunyuanVideo": 24.0, "TextToVideoSD": 8.0,
              "VideoToVideoSD": 8.0, "StableVideoDiffusion": 7.0, "I2VGenXL": 16.0, "Mochi": 30.0,
              "Allegro": 15.0, "SkyReels": 24.0}

StepProgress = Callable[[int, int], None]


@dataclass
class VideoRequest:
    """One generation. ``None`` leaves the value to the pipeline's own default.

    Attributes:
        prompt: what to show.
        negative_prompt: what to avoid (pipelines with classifier-free guidance).
        image: the first frame, uint8 sRGB (H, W, 3), for image-to-video pipelines.
        num_frames: frames to make (some families round it: Wan and LTX make 4k+1 and 8k+1 frames).
        height, width: frame size in pixels (each family has its own multiple: 8, 16 or 32).
        steps: denoising steps.
        guidance: classifier-free guidance scale.
        seed: the noise seed (drawn on the CPU, so the same seed gives the same video on any device).
        fps: frame rate, passed to families that condition on it (LTX ``frame_rate``, SVD ``fps``).
    """

    prompt: str
    negative_prompt: str | None = None
    image: np.ndarray | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    fps: float | None = None


class VideoModel:
    """A loaded diffusers video pipeline with one entry point, :meth:`__call__`."""

    def __init__(self, pipe, model_id: str, info: dict):
        self.pipe = pipe
        self.model_id = model_id
        self.info = info
        self.name = type(pipe).__name__
        self.params = inspect.signature(pipe.__call__).parameters

    @property
    def takes_image(self) -> bool:
        return "image" in self.params

    @property
    def needs_image(self) -> bool:
        return needs_image(self.name, self.params)

    @property
    def default_fps(self) -> float | None:
        for prefix, fps in FAMILY_FPS.items():
            if self.name.startswith(prefix):
                return fps
        return None

    def check_makes_video(self) -> None:
        if "num_frames" not in self.params:
            raise InputError(f"video model '{self.model_id}' is a {self.name}, which takes no num_frames: it does "
                             "not make video; give a diffusers text-to-video or image-to-video pipeline (Wan, "
                             "CogVideoX, LTX-Video, HunyuanVideo, zeroscope)")

    def check(self, request: VideoRequest) -> None:
        """Refuse a request this pipeline cannot serve, naming the pipeline and what to do."""
        self.check_makes_video()
        if request.image is not None and not self.takes_image:
            raise InputError(f"video model '{self.model_id}' ({self.name}) is text-to-video and takes no first "
                             "frame; drop --image, or give an image-to-video model")
        if request.image is None and self.needs_image:
            raise InputError(f"video model '{self.model_id}' ({self.name}) is image-to-video; pass --image "
                             "FIRST_FRAME")
        if request.prompt and "prompt" not in self.params:
            raise InputError(f"video model '{self.model_id}' ({self.name}) takes no prompt, only a first frame; "
                             "give an empty prompt (\"\") with --image")
        for name, value in (("num_frames", request.num_frames), ("height", request.height),
                            ("width", request.width), ("steps", request.steps)):
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('num_', '')} {value} is not valid; give a positive number")

    def arguments(self, request: VideoRequest, log: Log | None = None) -> dict:
        """The keyword arguments of the pipeline call (without callbacks and generator), as recorded."""
        log = log or (lambda message: None)
        args: dict = {}
        wanted = {"prompt": request.prompt, "negative_prompt": request.negative_prompt,
                  "num_frames": request.num_frames, "height": request.height, "width": request.width,
                  "num_inference_steps": request.steps, "guidance_scale": request.guidance}
        if request.fps is not None:
            wanted["frame_rate" if "frame_rate" in self.params else "fps"] = request.fps
        for name, value in wanted.items():
            if value is None:
                continue
            if name in self.params:
                args[name] = value
            elif name not in ("frame_rate", "fps") and value != "":
                log(f"{self.name} takes no {name}; that option is not applied")
        if "output_type" in self.params:
            args["output_type"] = "np"
        return args

    def __call__(self, request: VideoRequest, progress: StepProgress | None = None,
                 cancel: Callable[[], bool] | None = None, log: Log | None = None) -> list[np.ndarray]:
        """Generate the frames: a list of uint8 sRGB (H, W, 3) arrays, as many as the pipeline made.

        Raises:
            InputError: the pipeline refused the inputs (its own ``check_inputs`` message is kept).
            Cancelled: ``cancel()`` turned true during denoising.
        """
        self.check(request)
        progress = progress or (lambda done, total: None)
        cancel = cancel or (lambda: False)
        log = log or (lambda message: None)
        args = self.arguments(request, log)
        if request.image is not None:
            from PIL import Image

            args["image"] = Image.fromarray(request.image)
        args["generator"] = torch.Generator(device="cpu").manual_seed(request.seed)
        total = request.steps or _default(self.params, "num_inference_steps") or 0

        def step(i: int) -> None:
            progress(i + 1, max(total, i + 1))
            if cancel():
                raise Cancelled(f"generation cancelled at denoising step {i + 1} of {total}")

        if "callback_on_step_end" in self.params:
            def on_step_end(pipe, i, t, tensors):
                step(i)
                return tensors
            args["callback_on_step_end"] = on_step_end
        elif "callback" in self.params:
            args["callback"] = lambda i, t, latents: step(i)
            if "callback_steps" in self.params:
                args["callback_steps"] = 1
        else:
            log(f"{self.name} has no step callback: no progress during denoising, and a cancel waits for the end")
        if cancel():
            raise Cancelled("generation cancelled before it started")
        try:
            with torch.inference_mode():
                result = self.pipe(**args)
        except (ValueError, TypeError) as exc:
            raise InputError(f"video model '{self.model_id}' ({self.name}) refused the request: {exc}") from exc
        frames = getattr(result, "frames", None)
        if frames is None:
            raise InputError(f"video model '{self.model_id}' ({self.name}) returned no .frames; it does not "
                             "follow diffusers' video pipeline conventions")
        progress(total, total)
        return frames_to_uint8(frames)


def needs_image(name: str, params) -> bool:
    """Whether pipeline class ``name`` with ``__call__`` parameters ``params`` is image-to-video."""
    # Image-to-video pipelines name the image first, leave it without a default, or say so in their name.
    image = params.get("image")
    if image is None:
        return False
    first = next((p for p in params if p != "self"), None)
    return (first == "image" or image.default is inspect.Parameter.empty or "prompt" not in params
            or "ImageToVideo" in name or "I2V" in name)


def _default(params, name: str):
    p = params.get(name)
    if p is None or p.default is inspect.Parameter.empty:
        return None
    return p.default


def frames_to_uint8(frames) -> list[np.ndarray]:
    """A pipeline's ``.frames`` (the first video of the batch) as uint8 (H, W, 3) sRGB arrays.

    Accepts numpy (B, F, H, W, C) or (F, H, W, C) floats in [0, 1], torch (B, F, C, H, W), and lists of PIL
    images or arrays (one list per video).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.float().cpu()
        if frames.ndim == 5:
            frames = frames[0]
        if frames.shape[1] in (1, 3, 4) and frames.shape[-1] not in (1, 3, 4):
            frames = frames.permute(0, 2, 3, 1)
        frames = frames.numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 5:
            frames = frames[0]
        return [_to_uint8(f) for f in frames]
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], (list, tuple, np.ndarray)) and not (
            isinstance(frames[0], np.ndarray) and frames[0].ndim == 3):
        frames = frames[0]
    return [_to_uint8(np.asarray(f)) for f in frames]


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        frame = np.clip(frame.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return np.ascontiguousarray(frame[..., :3])


def load_video_model(model_id: str, options: LoadOptions, log: Log | None = None) -> VideoModel:
    """The video pipeline ``model_id`` (hub id or folder), cached between calls."""
    options.check()
    ref = locate(model_id, "video", options.revision)

    def load() -> VideoModel:
        pipe = load_pipeline(ref, options, "video", log)
        return VideoModel(pipe, model_id, provenance(ref, pipe, options))

    model = cached("video", (model_id, options), load)
    model.check_makes_video()
    return model

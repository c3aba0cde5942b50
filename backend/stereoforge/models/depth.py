"""Depth from a model, per frame: transformers ``depth-estimation`` models and diffusers' Marigold.

Each model returns its own kind of depth, and the backend knows which (``kind`` on :class:`DepthModel`):

* ``relative``: affine-invariant inverse depth (bigger = nearer): Depth Anything (V1/V2 relative), DPT/MiDaS,
  Marigold's disparity variants.
* ``metric``: metres: ZoeDepth, GLPN, Depth Pro, Prompt Depth Anything, Depth Anything metric checkpoints
  (``depth_estimation_type: metric``).
* ``affine``: affine-invariant depth (bigger = farther): Marigold depth. Not inverse depth: it is mapped linearly
  onto near..far (see :mod:`stereoforge.depth`).

The raw model output is what the shot keeps (``estimated_depth/000001.exr``, channel ``Z``, float32, at the
source's size), with two rules so that every value is usable depth: relative values at or below zero (a ReLU head
gives exactly 0 on the sky) become a tiny positive value, which the normalisation maps to the far plane; and
Marigold's [0, 1] output is stored as ``1 + prediction``, since 0 would read as "no depth" (a shift changes
nothing for affine-invariant depth). Per-frame models flicker in scale and shift; the pipeline's normalisation
(one smooth scale and shift over time) takes that out for the relative and affine kinds.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..shot import ESTIMATED_DEPTH, SHOT_JSON, frame_name
from .loading import (
    LoadOptions,
    Log,
    ModelRef,
    cached,
    load_pipeline,
    load_transformers,
    locate,
    model_options,
    provenance,
)
from .registry import METRIC_MODEL_TYPES

#: The record, in the shot's estimated_depth/, of what made the depth there.
MANIFEST = "model.json"

Progress = Callable[[str, int, int], None]


class DepthModel:
    """A loaded depth model: uint8 sRGB frames in, raw depth of :attr:`kind` out, at the frames' size."""

    kind: str = "relative"
    info: dict

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """(H, W, 3) uint8 sRGB frames -> (H, W) float32 raw depth, one per frame, every value positive
        (``metric`` models may leave non-positive values where they have no depth)."""
        raise NotImplementedError


def _positive(depth: np.ndarray) -> np.ndarray:
    good = np.isfinite(depth) & (depth > 0)
    if not good.any():
        return np.ones_like(depth, dtype=np.float32)
    tiny = np.float32(max(float(depth[good].max()) * 1e-6, 1e-12))
    return np.where(good, depth, tiny).astype(np.float32)


def transformers_depth_kind(config) -> str:
    """``metric`` or ``relative``, from a transformers depth model's config."""
    if getattr(config, "depth_estimation_type", None) == "metric":
        return "metric"
    return "metric" if getattr(config, "model_type", None) in METRIC_MODEL_TYPES else "relative"


class TransformersDepth(DepthModel):
    """``AutoModelForDepthEstimation`` with its ``AutoImageProcessor`` (Depth Anything, DPT, ZoeDepth, ...)."""

    def __init__(self, processor, model, info: dict):
        self.processor = processor
        self.model = model
        self.kind = transformers_depth_kind(model.config)
        self.info = {**info, "kind": self.kind, "model_type": getattr(model.config, "model_type", None)}

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        from PIL import Image

        h, w = frames[0].shape[:2]
        inputs = self.processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")
        param = next(self.model.parameters())
        inputs = {k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        with torch.inference_mode():
            outputs = self.model(**inputs)
        depth = self._resize(outputs, len(frames), (h, w))
        return [d if self.kind == "metric" else _positive(d) for d in depth]

    def _resize(self, outputs, n: int, size: tuple[int, int]) -> list[np.ndarray]:
        post = getattr(self.processor, "post_process_depth_estimation", None)
        if post is not None:
            params = inspect.signature(post).parameters
            kwargs = {"target_sizes": [size] * n}
            if "source_sizes" in params:  # ZoeDepth pads its input and takes the padding off here
                kwargs["source_sizes"] = [size] * n
            try:
                results = post(outputs, **kwargs)
                return [r["predicted_depth"].float().cpu().numpy() for r in results]
            except (TypeError, ValueError, KeyError):
                pass
        predicted = outputs.predicted_depth.float()
        if predicted.ndim == 3:
            predicted = predicted[:, None]
        resized = torch.nn.functional.interpolate(predicted, size=size, mode="bicubic", align_corners=False)
        return [d[0].cpu().numpy() for d in resized]


class MarigoldDepth(DepthModel):
    """diffusers' ``MarigoldDepthPipeline`` (and pipelines like it: ``image`` in, ``.prediction`` out)."""

    def __init__(self, pipe, info: dict, seed: int = 0, steps: int | None = None):
        self.pipe = pipe
        self.seed = seed
        self.steps = steps
        prediction = getattr(pipe.config, "prediction_type", None) or getattr(pipe, "prediction_type", "depth")
        self.kind = "relative" if prediction == "disparity" else "affine"
        self.info = {**info, "kind": self.kind, "prediction_type": prediction, "seed": seed}

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        from PIL import Image

        kwargs = {"image": [Image.fromarray(f) for f in frames], "output_type": "np",
                  "generator": torch.Generator(device="cpu").manual_seed(self.seed)}
        params = inspect.signature(self.pipe.__call__).parameters
        for name, value in (("ensemble_size", 1), ("batch_size", len(frames)),
                            ("num_inference_steps", self.steps)):
            if name in params and value is not None:
                kwargs[name] = value
        with torch.inference_mode():
            result = self.pipe(**kwargs)
        prediction = np.asarray(result.prediction, dtype=np.float32)
        if prediction.ndim == 4:
            prediction = prediction[..., 0]
        return [1.0 + p for p in prediction]


def load_depth_model(model_id: str, options: LoadOptions, seed: int = 0, log: Log | None = None) -> DepthModel:
    """The depth model ``model_id`` (hub id or folder): a transformers depth model or a Marigold pipeline."""
    options.check()
    ref = locate(model_id, "depth", options.revision)

    def load() -> DepthModel:
        return _load(ref, options, seed, log)

    return cached("depth", (model_id, options, seed), load)


def _load(ref: ModelRef, options: LoadOptions, seed: int, log: Log | None) -> DepthModel:
    if ref.library == "diffusers":
        pipe = load_pipeline(ref, options, "depth", log)
        if "Depth" not in type(pipe).__name__:
            raise InputError(f"depth model '{ref.id}' is a diffusers {type(pipe).__name__}, not a depth pipeline; "
                             "give a Marigold depth pipeline or a transformers depth-estimation model")
        return MarigoldDepth(pipe, provenance(ref, pipe, options), seed=seed)
    if ref.library == "transformers":
        architectures = " ".join(ref.config.get("architectures") or [])
        if architectures and "DepthEstimation" not in architectures:
            raise InputError(f"depth model '{ref.id}' is a transformers {architectures}, not a depth-estimation "
                             "model; give e.g. depth-anything/Depth-Anything-V2-Small-hf")
    processor, model = load_transformers(ref, options, "depth", "AutoModelForDepthEstimation")
    return TransformersDepth(processor, model, provenance(ref, model, options))


# ------------------------------------------------------------------------------- depth into the shot folder


@dataclass
class EstimatedDepth:
    """Depth a model made for a shot: the folder of raw frames, their kind and what made them."""

    folder: str
    kind: str
    info: dict


def _selection(spec) -> tuple[int, int | None] | None:
    if spec.frames is None:
        return None
    first, last = spec.frames
    return (first or 1) - 1, last


def _read_manifest(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def estimate_into_shot(spec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                       log: Log | None = None) -> EstimatedDepth:
    """Run ``spec.depth_model`` over the selected source frames into ``SHOT/estimated_depth/``.

    Resumable like every stage: frames already there are kept while the request (model, source, selection,
    size, dtype, seed) is unchanged; a changed request clears the folder. Returns where the depth is and its
    kind. ``spec`` is a :class:`~stereoforge.spec.ConvertSpec`.
    """
    from ..io.frames import open_source
    from ..io.images import atomic_path, to_uint8_srgb, write_exr

    progress = progress or (lambda stage, done, total: None)
    cancel = cancel or (lambda: False)
    log = log or (lambda message: None)
    shot = os.path.abspath(spec.output_dir)
    folder = os.path.join(shot, ESTIMATED_DEPTH)
    manifest_path = os.path.join(folder, MANIFEST)
    source = open_source(spec.source, frames=_selection(spec))
    options = model_options(spec)
    model_id = os.path.abspath(spec.depth_model) if os.path.isdir(spec.depth_model) else spec.depth_model
    request = {"model": model_id, "revision": options.revision, "source": os.path.abspath(spec.source),
               "first_frame": source.first_index, "count": source.count, "size": [source.width, source.height],
               "dtype": options.dtype, "seed": spec.seed}
    manifest = _read_manifest(manifest_path)
    if manifest is not None and manifest.get("request") != request:
        log("the depth model or its source changed since the last run: estimating depth again")
        shutil.rmtree(folder)
        manifest = None
    paths = [os.path.join(folder, frame_name(i + 1, "exr")) for i in range(source.count)]
    todo = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    if manifest is not None and not todo:
        progress("depth model", source.count, source.count)
        return EstimatedDepth(folder, manifest["kind"], {**manifest["model"], "request": request})

    _ensure_shot_json(shot, spec)
    progress("loading model", 0, 1)
    model = load_depth_model(spec.depth_model, options, seed=spec.seed or 0, log=log)
    progress("loading model", 1, 1)
    os.makedirs(folder, exist_ok=True)
    if manifest is None:
        manifest = {"request": request, "kind": model.kind, "model": model.info,
                    "stored": "raw model output, channel Z; relative values <= 0 raised to a tiny positive "
                              "value; Marigold stored as 1 + prediction",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with atomic_path(manifest_path) as tmp, open(tmp, "w") as f:
            json.dump(manifest, f, indent=2, default=str)

    pending = set(todo)
    done = source.count - len(todo)
    progress("depth model", done, source.count)
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        nonlocal done
        if cancel():
            raise Cancelled(f"cancelled during depth estimation; the frames finished so far are kept in '{folder}'")
        for (i, _), depth in zip(batch, model([frame for _, frame in batch]), strict=True):
            write_exr(paths[i], {"Z": depth.astype(np.float32)})
            done += 1
            progress("depth model", done, source.count)
        batch.clear()

    for i, rgb in source.frames():
        if i not in pending:
            continue
        batch.append((i, to_uint8_srgb(rgb)))
        if len(batch) >= max(1, spec.batch):
            flush()
    if batch:
        flush()
    return EstimatedDepth(folder, model.kind, {**model.info, "request": request})


def _ensure_shot_json(shot: str, spec) -> None:
    """A new shot folder gets its shot.json first, so a run stopped during estimation can be resumed."""
    from .. import __version__
    from ..io.images import atomic_path

    path = os.path.join(shot, SHOT_JSON)
    if os.path.exists(path):
        return
    os.makedirs(shot, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({"stereoforge": __version__, "spec": spec.to_dict()}, f, indent=2, default=str)

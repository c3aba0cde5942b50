"""Dropout filled by a diffusers inpainting pipeline: an image inpainter (Stable Diffusion / SDXL inpainting,
Kandinsky, Flux Fill...: a call takes ``mask_image``) or a video inpainter (Wan VACE, and any pipeline whose call
takes a ``video`` and a ``mask`` video: it fills a whole clip at once).

Long clips and large frames are cut the way seed 002 (StereoCrafter) cuts them, so memory stays bounded:

* Frames go to the pipeline in chunks (one call per chunk: a batch of images, or one clip). The last ``overlap``
  frames of a chunk are kept as context: they are filled again at the head of the next chunk, and the two fills
  are cross-faded over those frames, so the fill does not jump where chunks meet. Every frame is denoised from
  the same noise (one seed), so a hole that stays put is filled the same way from frame to frame.
* A frame larger than ``tile`` is cut into overlapping tiles; tiles without dropout are skipped (for a video
  inpainter, tiles where no frame of the chunk has dropout), and overlapping fills are blended with linear
  ramps, so no seam shows where tiles meet.
* A video inpainter is given the weight-free default's fill under the mask as its starting point (VACE encodes
  the masked part of the video as a condition of its own).

Only dropout pixels change: every covered pixel of the eye is kept exactly. The functions that cut and blend
(:func:`tile_starts`, :func:`fill_tiled`, :func:`fill_in_chunks`) take any fill function, so they are tested
without a model.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..io.images import to_uint8_srgb
from ..shot import frame_name
from .loading import LoadOptions, Log, cached, load_pipeline, locate, model_options, provenance
from .registry import takes_video_and_mask

#: ``fill(images, masks)``: uint8 sRGB (h, w, 3) crops and bool (h, w) dropout -> float32 sRGB (h, w, 3) in [0, 1].
Fill = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of size ``tile`` covering ``0..length`` with at least ``overlap`` pixels shared by
    neighbours; the last tile ends exactly at ``length``. One tile (start 0) when ``length <= tile``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = int(np.ceil((length - tile) / step)) + 1
    return [int(round(i * (length - tile) / (count - 1))) for i in range(count)]


def _ramp(size: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Weights along one tile side: rising over ``fade_in`` pixels, falling over ``fade_out``, 1 between."""
    w = np.ones(size, np.float32)
    if fade_in:
        w[:fade_in] = np.minimum(w[:fade_in], (np.arange(fade_in) + 0.5) / fade_in)
    if fade_out:
        w[size - fade_out:] = np.minimum(w[size - fade_out:], ((np.arange(fade_out) + 0.5) / fade_out)[::-1])
    return w


def fill_tiled(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], fill: Fill, tile: int,
               overlap: int, whole_clip: bool = False) -> list[np.ndarray]:
    """Fill dropout in frames of one size, tile by tile.

    Args:
        images: uint8 sRGB (H, W, 3) frames.
        masks: bool (H, W), True where a pixel must be filled.
        fill: fills a batch of crops of one size (see :data:`Fill`).
        tile: largest crop side in pixels; overlap: pixels shared by neighbouring tiles.
        whole_clip: ``fill`` takes the frames as one clip (a video inpainter): a tile goes with every frame
            when any has dropout in it, not only with those that have.

    Returns:
        float32 sRGB (H, W, 3) in [0, 1]: the fill blended across tiles under the masks, the frame elsewhere.
    """
    h, w = masks[0].shape
    rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    acc = [np.zeros((h, w, 3), np.float32) for _ in images]
    weight = [np.zeros((h, w), np.float32) for _ in images]
    for a, y in enumerate(rows):
        for b, x in enumerate(cols):
            fade_top = rows[a - 1] + th - y if a > 0 else 0
            fade_bottom = y + th - rows[a + 1] if a + 1 < len(rows) else 0
            fade_left = cols[b - 1] + tw - x if b > 0 else 0
            fade_right = x + tw - cols[b + 1] if b + 1 < len(cols) else 0
            ramp = np.outer(_ramp(th, fade_top, fade_bottom), _ramp(tw, fade_left, fade_right))
            todo = [i for i, m in enumerate(masks) if m[y:y + th, x:x + tw].any()]
            if not todo:
                continue
            if whole_clip:
                todo = list(range(len(images)))
            filled = fill([images[i][y:y + th, x:x + tw] for i in todo], [masks[i][y:y + th, x:x + tw] for i in todo])
            for i, crop in zip(todo, filled, strict=True):
                acc[i][y:y + th, x:x + tw] += crop * ramp[..., None]
                weight[i][y:y + th, x:x + tw] += ramp
    out = []
    for image, mask, a, wt in zip(images, masks, acc, weight, strict=True):
        frame = image.astype(np.float32) / 255.0
        blended = a / np.maximum(wt, 1e-12)[..., None]
        out.append(np.where(mask[..., None] & (wt[..., None] > 0), blended, frame).astype(np.float32))
    return out


def fill_in_chunks(numbers: Sequence[int], load: Callable[[int], tuple[np.ndarray, np.ndarray]],
                   fill: Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]], chunk: int,
                   overlap: int) -> Iterator[tuple[int, np.ndarray]]:
    """Fill frames ``numbers`` (in order) ``chunk`` at a time; yields ``(number, fill)`` once per frame, in order.

    The last ``overlap`` frames of each chunk are held back and filled again with the next chunk; their final
    fill cross-fades from the earlier to the later one (weights ``k / (overlap + 1)``), so the result moves
    smoothly from one chunk to the next. ``load(n)`` gives frame ``n``'s (image, mask); ``fill`` a batch's fills.
    """
    held: list[tuple[int, np.ndarray]] = []
    for start in range(0, len(numbers), chunk):
        fresh = list(numbers[start:start + chunk])
        batch = [n for n, _ in held] + fresh
        loaded = [load(n) for n in batch]
        fills = fill([image for image, _ in loaded], [mask for _, mask in loaded])
        for k, ((n, earlier), later) in enumerate(zip(held, fills[:len(held)], strict=True)):
            t = (k + 1) / (len(held) + 1)
            yield n, ((1.0 - t) * earlier + t * later).astype(np.float32)
        new = list(zip(fresh, fills[len(held):], strict=True))
        last_chunk = start + chunk >= len(numbers)
        keep = 0 if last_chunk else min(overlap, len(new))
        yield from new[:len(new) - keep]
        held = new[len(new) - keep:]


class InpaintModel:
    """A diffusers inpainting pipeline with one entry point: :meth:`fill`, a batch of crops of one size.

    An image inpainter fills each crop on its own (one batched call); a video inpainter (``whole_clip``) fills
    them as one clip, in order, padded with copies of the last frame to a frame count its VAE takes (Wan: 4k + 1).
    """

    def __init__(self, pipe, info: dict, prompt: str = "", steps: int | None = None, seed: int = 0):
        self.pipe = pipe
        self.info = info
        self.prompt = prompt
        self.steps = steps
        self.seed = seed
        self.name = type(pipe).__name__
        self.params = inspect.signature(pipe.__call__).parameters
        self.whole_clip = takes_video_and_mask(self.params)
        if not self.whole_clip and "mask_image" not in self.params:
            raise InputError(f"inpaint model '{info.get('id')}' is a {self.name}, which takes no mask_image, nor a "
                             "video and a mask: it does not inpaint; give a diffusers inpainting pipeline (e.g. "
                             "Stable Diffusion inpainting, Wan VACE)")
        # Frame sides are a multiple of the VAE's scale (times the transformer's patch, for video transformers).
        transformer = getattr(pipe, "transformer", None)
        patch = getattr(getattr(transformer, "config", None), "patch_size", None)
        scale = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_scale_factor", 8) or 8
        self.multiple = int(scale) * (int(patch[-1]) if isinstance(patch, (list, tuple)) else 1)
        self.frames_step = int(getattr(pipe, "vae_scale_factor_temporal", 1) or 1)

    def fill(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        from PIL import Image

        h, w = masks[0].shape
        ph, pw = -h % self.multiple, -w % self.multiple
        pad = ((0, ph), (0, pw))
        mode = "reflect" if ph < h and pw < w else "edge"  # reflection needs more pixels than it pads
        pil_images = [Image.fromarray(np.pad(im, pad + ((0, 0),), mode=mode)) for im in images]
        pil_masks = [Image.fromarray(np.pad(m.astype(np.uint8) * 255, pad, mode="edge")) for m in masks]
        n = len(images)
        kwargs = {"height": h + ph, "width": w + pw}
        if self.whole_clip:
            count = n + (-(n - 1) % self.frames_step)
            kwargs |= {"video": pil_images + pil_images[-1:] * (count - n),
                       "mask": pil_masks + pil_masks[-1:] * (count - n), "num_frames": count,
                       "generator": torch.Generator(device="cpu").manual_seed(self.seed)}
        else:
            kwargs |= {"image": pil_images, "mask_image": pil_masks,
                       "generator": [torch.Generator(device="cpu").manual_seed(self.seed) for _ in range(n)]}
        if "prompt" in self.params:
            kwargs["prompt"] = self.prompt if self.whole_clip else [self.prompt] * n
        if "output_type" in self.params:
            kwargs["output_type"] = "np"
        if self.steps is not None:
            kwargs["num_inference_steps"] = self.steps
        try:
            with torch.inference_mode():
                result = self.pipe(**kwargs)
        except (ValueError, TypeError) as exc:
            raise InputError(f"inpaint model '{self.info.get('id')}' ({self.name}) refused the request: {exc}") from exc
        filled = result.frames[0][:n] if self.whole_clip else result.images
        if not isinstance(filled, np.ndarray):
            filled = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in filled])
        return [np.asarray(f[:h, :w, :3], dtype=np.float32) for f in filled]


def load_inpaint_model(model_id: str, options: LoadOptions, prompt: str = "", steps: int | None = None,
                       seed: int = 0, log: Log | None = None) -> InpaintModel:
    options.check()
    ref = locate(model_id, "inpaint", options.revision)

    def load() -> InpaintModel:
        pipe = load_pipeline(ref, options, "inpaint", log)
        return InpaintModel(pipe, provenance(ref, pipe, options), prompt=prompt, steps=steps, seed=seed)

    return cached("inpaint", (model_id, options, prompt, steps, seed), load)


class _InOrder:
    """``fill(n)`` of an inpainter that fills frames in increasing order, for a caller that asks for the last
    few again (the frames a chunk holds back): each frame is filled once and kept while ``keep`` newer ones are
    not."""

    def __init__(self, fill: Callable[[int], np.ndarray], keep: int):
        self._fill = fill
        self.keep = keep
        self._made: dict[int, np.ndarray] = {}

    def __call__(self, n: int) -> np.ndarray:
        if n not in self._made:
            self._made = {m: image for m, image in self._made.items() if m > n - self.keep}
            self._made[n] = self._fill(n)
        return self._made[n]


def inpaint_stage(job) -> None:
    """The pipeline's inpaint stage when ``spec.inpaint_model`` is set: ``filled/{left,right}/`` from the eyes and
    their dropout masks, eye by eye and chunk by chunk; resumable (frames already filled are skipped).

    ``job`` is the pipeline's running :class:`~stereoforge.stages.Job` (its paths, the frames it does, progress,
    cancel, log, and ``clip(eye)``: an eye's frames as the default inpainter reads them).
    """
    from ..inpaint import DEFAULT_INPAINTER, INPAINTERS
    from ..io.images import write_png

    spec, total = job.plan.spec, len(job.frames)
    model = load_inpaint_model(spec.inpaint_model, model_options(spec), prompt=spec.inpaint_prompt,
                               steps=spec.inpaint_steps, seed=spec.seed or 0, log=job.log)

    def fill(images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        if job.cancel():
            raise Cancelled(f"cancelled during inpainting; the frames finished so far are kept in '{job.dir}'")
        return fill_tiled(images, masks, model.fill, spec.inpaint_tile, spec.inpaint_tile_overlap,
                          whole_clip=model.whole_clip)

    for eye in job.eyes:  # both, or the one eye of a farm's task
        os.makedirs(job.path("filled", eye), exist_ok=True)
        target = lambda n, eye=eye: job.path("filled", eye, frame_name(n, "png"))
        numbers = [n for n in job.frames if not os.path.exists(target(n))]
        done = total - len(numbers)
        job.progress(f"inpaint {eye}", done, total)
        clip = job.clip(eye)
        # A video inpainter starts from the weight-free default's fill (the same frames, covered pixels kept).
        start = _InOrder(INPAINTERS[DEFAULT_INPAINTER](clip).fill,
                         spec.inpaint_chunk + spec.inpaint_overlap) if model.whole_clip else None

        def load(n: int, clip=clip, start=start) -> tuple[np.ndarray, np.ndarray]:
            eye_frame = clip.eye(n)
            return (start(n) if start else to_uint8_srgb(eye_frame.rgb)), eye_frame.dropout

        for n, filled in fill_in_chunks(numbers, load, fill, spec.inpaint_chunk, spec.inpaint_overlap):
            write_png(target(n), np.clip(filled * 255.0 + 0.5, 0, 255).astype(np.uint8), fast=True)
            done += 1
            job.progress(f"inpaint {eye}", done, total)

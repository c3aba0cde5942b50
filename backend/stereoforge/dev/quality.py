"""``stereoforge bench quality``: how close the filled eyes come to the true eyes, on Blender ground truth.

    stereoforge bench quality [--scenes demo,planes,orbit] [--inpainters none,telea,background] [--json]

For each scene, Blender renders the centre view with its Z pass and the true left and right eyes through its
own stereo camera (``tools/blender_truth.py``; the renders are cached, so reruns are fast). The centre view and
its depth are converted to eyes by the pipeline (``convert``'s ingest and eyes stages, with Blender's rig),
and each inpainter fills the dropout (``convert``'s inpaint stage). Every filled eye is compared with Blender's
eye of the same frame, in 8-bit sRGB:

* PSNR and SSIM (Wang et al. 2004: Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, on each colour channel,
  averaged) on the covered pixels, on the dropout pixels (the splatter's masks) and on all pixels, pooled
  over the clip;
* flicker: the mean absolute change, in 8-bit levels, between consecutive frames after motion compensation
  (each frame compared with the next one warped back by the optical flow of the *true* eyes, where that flow
  is consistent both ways), over the dropout pixels and over all pixels; given as ``(ours + 1) / (truth + 1)``,
  so 1 is as steady as the true eyes (and a still scene filled identically in every frame scores 1);
* the dropout fraction, and the inpaint stage's seconds per frame (both eyes, reading and writing files).

Scenes: ``demo`` (a room, the camera trucking and dollying, a cube flying), ``planes`` (textured planes at
2, 4 and 8 m, all still: only the background side can fill), ``orbit`` (the camera circling objects, a ball
rolling across). And one real stereo pair, kept aside: ``motorcycle``, Middlebury
2014's Motorcycle as scikit-image ships it (``skimage.data.stereo_motorcycle``: left, right, and the left
view's true disparity). The left view and its disparity make the right eye (pivot LEFT, PARALLEL, as a
disparity map implies), which is scored against the real right view; it is one frame, so it has no flicker.
(It is not untouched: its first run exposed a bug in the default inpainter, fixed since; no setting was tuned
on it.)
It runs when scikit-image is installed (``pip install scikit-image``).

``demo-rig`` is ``demo`` with an animated rig (issue 12): Blender's stereo camera has its interocular keyed
from 0.03 to 0.2 m over the clip, and the conversion gets the same curve, frame by frame.

Inpainters: ``none``, ``telea``, the default, and every diffusers inpainting model found on
this machine (``stereoforge models``) unless ``--no-models``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..rig import DEFAULT_INTEROCULAR
from ..shot import EYES, frame_name

SCENES = ("demo", "planes", "orbit")
#: Scenes whose stereo camera moves (issue 12): name -> (the Blender scene, interocular at the first and the last
#: frame, metres). The truth's camera is keyed between them; the conversion gets the same curve.
ANIMATED_RIGS = {"demo-rig": ("demo", 0.03, 0.2)}
#: Real stereo pairs with true disparity: name -> where they come from.
REAL_PAIRS = {"motorcycle": "Middlebury 2014 Motorcycle (perfect rectification), from skimage.data"}
#: Where the Blender ground truth script lives in a checkout of the repository.
TRUTH_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "blender_truth.py"
#: The consistency of the true eyes' flow, forwards then backwards, within which a pixel counts for flicker.
_FLOW_CONSISTENCY_PX = 0.5


# -- metrics --------------------------------------------------------------------------------------------------


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5,
             window: int = 11) -> np.ndarray:
    """Per-pixel SSIM of two images (Wang, Bovik, Sheikh, Simoncelli 2004).

    Args:
        a, b: (H, W) or (H, W, C) images on the same scale (uint8 or float).
        data_range: the value range (255 for 8-bit).
        sigma, window: the Gaussian window's standard deviation and size (1.5 and 11 x 11, as in the paper).

    Returns:
        (H, W) float64: the SSIM index of the window centred on each pixel, averaged over the channels.
        Windows at the border are completed by reflection.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim_map needs images of one shape, got {a.shape} and {b.shape}")

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (window, window), sigma, borderType=cv2.BORDER_REFLECT)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return index.mean(axis=-1) if index.ndim == 3 else index


def psnr(squared_error: float, count: int, peak: float = 255.0) -> float:
    """PSNR in dB of a pooled squared error over ``count`` values; inf when they match exactly."""
    if count == 0:
        return float("nan")
    mse = squared_error / count
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def true_flow(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optical flow from uint8 RGB image ``a`` to ``b`` (DIS, medium preset) and where it holds both ways.

    Returns ``(positions (H, W, 2) float32 in b of each pixel of a, reliable (H, W) bool)``.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    forward, backward = dis.calc(ga, gb, None), dis.calc(gb, ga, None)
    h, w = ga.shape
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    where = grid + forward
    back = cv2.remap(backward, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (where[..., 0] >= 0) & (where[..., 0] <= w - 1) & (where[..., 1] >= 0) & (where[..., 1] <= h - 1)
    reliable = inside & (np.linalg.norm(forward + back, axis=-1) < _FLOW_CONSISTENCY_PX)
    return where, reliable


def _change(frame: np.ndarray, following: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Mean absolute change over the channels between ``frame`` and ``following`` moved back by ``where``."""
    back = cv2.remap(following, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.abs(frame.astype(np.float64) - back).mean(axis=-1)


@dataclass
class _Sums:
    """Pooled sums of one eye over a clip, for one pixel set."""

    squared_error: float = 0.0
    values: int = 0
    ssim: float = 0.0
    pixels: int = 0
    change: float = 0.0
    true_change: float = 0.0
    change_pixels: int = 0

    def add_frame(self, ours: np.ndarray, truth: np.ndarray, ssim: np.ndarray, mask: np.ndarray) -> None:
        diff = ours[mask].astype(np.float64) - truth[mask]
        self.squared_error += float(np.sum(diff * diff))
        self.values += diff.size
        self.ssim += float(ssim[mask].sum())
        self.pixels += int(mask.sum())

    def add_change(self, ours: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> None:
        self.change += float(ours[mask].sum())
        self.true_change += float(truth[mask].sum())
        self.change_pixels += int(mask.sum())

    def figures(self) -> dict:
        nan = float("nan")  # one frame has no change to measure
        ours, truth = (x / self.change_pixels if self.change_pixels else nan for x in (self.change, self.true_change))
        return {"psnr": psnr(self.squared_error, self.values),
                "ssim": self.ssim / self.pixels if self.pixels else nan,
                "change": ours, "true_change": truth, "flicker": (ours + 1.0) / (truth + 1.0)}


def score_eye(filled: list[np.ndarray], truth: list[np.ndarray], dropout: list[np.ndarray],
              trusted: list[np.ndarray] | None = None) -> dict:
    """Figures of one eye over a clip.

    Args:
        filled, truth: uint8 sRGB (H, W, 3) frames, ours and the true eye's.
        dropout: bool (H, W) masks of the pixels that were filled.
        trusted: bool (H, W) masks of the pixels whose truth holds (a real pair's, see :func:`trusted_pixels`);
            None: all. Only they are scored.

    Returns:
        ``{"dropout_fraction", "covered": {...}, "dropout": {...}, "all": {...}}``, each set with ``psnr``,
        ``ssim``, ``change`` and ``true_change`` (8-bit levels) and ``flicker`` (see the module docstring).
    """
    sets = {"covered": _Sums(), "dropout": _Sums(), "all": _Sums()}
    trusted = trusted or [np.ones_like(holes) for holes in dropout]
    for ours, true, holes, sure in zip(filled, truth, dropout, trusted, strict=True):
        ssim = ssim_map(ours, true)
        for name, mask in (("covered", ~holes & sure), ("dropout", holes & sure), ("all", sure)):
            sets[name].add_frame(ours, true, ssim, mask)
    for n in range(len(filled) - 1):
        where, reliable = true_flow(truth[n], truth[n + 1])
        reliable &= trusted[n]
        ours, true = (_change(frames[n], frames[n + 1], where) for frames in (filled, truth))
        sets["dropout"].add_change(ours, true, reliable & dropout[n])
        sets["all"].add_change(ours, true, reliable)
        sets["covered"].add_change(ours, true, reliable & ~dropout[n])
    result = {name: sums.figures() for name, sums in sets.items()}
    result["dropout_fraction"] = float(np.mean([m.mean() for m in dropout]))
    return result


# -- ground truth ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthSettings:
    """What the ground truth renders depend on (besides the scene and the render script); each field is an
    option of ``bench quality`` (:data:`TRUTH_OPTIONS`) and of the render script, of the same name."""

    width: int = 480
    height: int = 270
    frames: int = 24
    samples: int = 16
    interocular: float = DEFAULT_INTEROCULAR
    convergence_distance: float = 4.0

    def args(self) -> list[str]:
        """The render script's arguments."""
        given = [text for name in TRUTH_OPTIONS for text in (_flag(name), str(getattr(self, name)))]
        return [*given, "--convergence-mode", "OFFAXIS", "--pivot", "CENTER"]


#: The fields of :class:`TruthSettings`, as options: what each is (its default is the field's).
TRUTH_OPTIONS = {"width": "render width in pixels", "height": "render height in pixels",
                 "frames": "frames per scene", "samples": "Cycles samples per pixel",
                 "interocular": "the rig's interocular distance in metres",
                 "convergence_distance": "the rig's convergence distance in metres, OFFAXIS"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stereoforge", "bench-quality")


def truth_sources(script: Path) -> list[Path]:
    """The render script and the modules of its project that decide what it renders: the add-on's render
    settings and stereo views (``addon/scene.py``, ``addon/render.py``) and the rig (``stereoforge/rig.py``),
    where the script sits in a StereoForge checkout (``tools/``); a script elsewhere counts alone."""
    root = script.resolve().parent.parent
    modules = [root / "addon" / "scene.py", root / "addon" / "render.py", root / "backend" / "stereoforge" / "rig.py"]
    return [script, *(path for path in modules if path.is_file())]


def truth_folder(cache: str, scene: str, settings: TruthSettings, script: Path) -> str:
    """The cache folder of one scene's renders: named by the settings and by the contents of the render script
    and of the project modules it renders with (:func:`truth_sources`), so a changed scene or render setting is
    rendered again."""
    digest = hashlib.sha1(b"".join(path.read_bytes() for path in truth_sources(script))).hexdigest()[:10]
    s = settings
    name = (f"{scene}-{s.width}x{s.height}-{s.frames}f-{s.samples}spp-io{s.interocular:g}-"
            f"c{s.convergence_distance:g}-{digest}")
    return os.path.join(cache, name)


def render_truth(scene: str, folder: str, settings: TruthSettings, script: Path, python: str,
                 log=print) -> dict:
    """The truth of ``scene`` in ``folder``: rendered unless a complete render is already there."""
    done = os.path.join(folder, "truth.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    log(f"rendering the ground truth of '{scene}' with Blender ({settings.frames} frames at "
        f"{settings.width}x{settings.height}) into {folder}; this is done once")
    partial = folder + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    run = subprocess.run([python, str(script), "--out", partial, *settings.args(), *_scene_args(scene)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join((run.stderr or run.stdout).strip().splitlines()[-8:])
        raise InputError(f"rendering the ground truth of '{scene}' failed ({python} {script}):\n{tail}")
    os.replace(partial, folder)  # the whole render appears at once: a cached folder is complete
    log(f"  rendered in {time.perf_counter() - started:.0f} s")
    with open(done) as f:
        return json.load(f)


def _scene_args(scene: str) -> list[str]:
    """The truth script's arguments that pick ``scene`` (and, for an animated rig, key its interocular)."""
    if scene not in ANIMATED_RIGS:
        return ["--scene", scene]
    blender_scene, start, end = ANIMATED_RIGS[scene]
    return ["--scene", blender_scene, "--interocular", str(start), "--interocular-end", str(end)]


def _rig_curve(info: dict) -> dict:
    """The truth's rig as convert options: its interocular, or its curve when the camera's was keyed."""
    per_frame = info.get("interocular_frames") or []
    if len(set(per_frame)) > 1:
        return {"interocular_curve": ",".join(f"{n}:{b!r}" for n, b in enumerate(per_frame, 1))}
    return {"interocular": info["interocular"]}


def find_blender_python(python: str | None) -> str:
    """``python`` if given, else this Python when it has ``bpy``; else an error that says how to get one."""
    if python is not None:
        return python
    if importlib.util.find_spec("bpy") is None:
        raise InputError("this benchmark renders with Blender, but this Python has no 'bpy'; "
                         "pip install bpy==4.5.* (Python 3.11), or give --blender-python PATH of a Python "
                         "that has it")
    return sys.executable


def real_pair_truth(name: str, cache: str) -> tuple[str, dict]:
    """The real stereo pair ``name`` as a truth folder like the Blender scenes' (``center/`` = the left view,
    ``depth/`` = its disparity in pixels, ``left/`` and ``right/`` = the true eyes), made once in ``cache``.

    Returns ``(folder, info)``; ``info`` says how to convert it (disparity, pivot LEFT, PARALLEL).
    """
    try:
        import skimage
        from skimage.data import stereo_motorcycle
    except ImportError as exc:
        raise InputError(f"the real stereo pair '{name}' comes with scikit-image: pip install scikit-image, or "
                         "leave it out of --scenes") from exc
    folder = os.path.join(cache, f"{name}-skimage{skimage.__version__}")
    if not os.path.exists(os.path.join(folder, "trusted", "000001.png")):  # made before the trusted pixels
        left, right, disparity = stereo_motorcycle()
        # Unknown disparity is +inf in the data.
        disparity = np.where(np.isfinite(disparity), disparity, np.nan).astype(np.float32)
        write_pair_truth(folder, StereoPair(name, left, right, disparity, 1.0), REAL_PAIRS[name])
    with open(os.path.join(folder, "truth.json")) as f:
        return folder, json.load(f)


def write_pair_truth(folder: str, pair: StereoPair, description: str) -> None:
    """``pair`` as a truth folder like the Blender scenes' (``center/`` = the left view, ``depth/`` = its
    disparity in pixels, ``left/`` and ``right/`` = the true eyes), with ``trusted/``, the right-view pixels
    whose truth holds (:func:`trusted_pixels`); written whole or not at all."""
    partial = folder + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for sub in ("center", "depth", "left", "right", "trusted"):
        os.makedirs(os.path.join(partial, sub))
    for sub, image in (("center", pair.left), ("left", pair.left), ("right", pair.right)):
        cv2.imwrite(os.path.join(partial, sub, "000001.png"), np.ascontiguousarray(image[..., ::-1]))
    cv2.imwrite(os.path.join(partial, "trusted", "000001.png"), trusted_pixels(pair.disparity).astype(np.uint8) * 255)
    # No truth is NaN: no point there (the converter drops non-finite values).
    np.save(os.path.join(partial, "depth", "000001.npy"), pair.disparity.astype(np.float32))
    h, w = pair.disparity.shape
    info = {"scene": pair.name, "description": description, "width": w, "height": h, "frames": 1,
            "depth_kind": "disparity", "disparity_scale": pair.scale, "baseline": 1.0, "interocular": 1.0,
            "convergence_mode": "PARALLEL", "pivot": "LEFT", "eyes": ["right"]}
    with open(os.path.join(partial, "truth.json"), "w") as f:
        json.dump(info, f, indent=2)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


# -- folders of real stereo pairs ----------------------------------------------------------------------------

#: The divisors public data sets store disparity with (Middlebury 2014 and quarter sizes: 1; 2003: 4; 2001: 8,
#: Tsukuba 16; KITTI: 256); a pair without ``pair.json`` gets the one whose warp matches its right view best.
DISPARITY_SCALES = (1.0, 4.0, 8.0, 16.0, 256.0)
PAIR_MANIFEST = "pair.json"
_IMAGE_SUFFIXES = (".png", ".pgm", ".ppm", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pfm")


@dataclass(frozen=True)
class StereoPair:
    """One rectified pair with the left view's true disparity (right-view x = left x - disparity)."""

    name: str
    left: np.ndarray  # (H, W, 3) uint8 RGB
    right: np.ndarray  # (H, W, 3) uint8 RGB
    disparity: np.ndarray  # (H, W) float32 pixels; NaN where there is no truth
    scale: float  # what the stored values were divided by


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read '{path}': give PNG, PGM/PPM, JPEG, TIFF or BMP files")
    return image


def _pair_files(folder: Path) -> tuple[Path, Path, Path]:
    """(left, right, disparity) of a pair folder without ``pair.json``: the disparity is the image named
    ``disp*`` or ``*gt*``; of the two views, names that say left and right, else the first in name order (data
    sets number views from left to right: Middlebury's im2 / im6, KITTI's image_0 / image_1)."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    truth = [p for p in images if p.stem.lower().startswith("disp") or "gt" in p.stem.lower().split("_")]
    views = [p for p in images if p not in truth]
    if len(truth) != 1 or len(views) != 2:
        raise InputError(f"stereo pair folder '{folder}' holds {[p.name for p in images]}: give two views and one "
                         f"disparity file named disp* or *_gt*, or a {PAIR_MANIFEST} naming them")
    named = {side: [p for p in views if side in p.stem.lower()] for side in ("left", "right")}
    if len(named["left"]) == 1 and len(named["right"]) == 1:
        views = [named["left"][0], named["right"][0]]
    return views[0], views[1], truth[0]


def _best_scale(left: np.ndarray, right: np.ndarray, stored: np.ndarray) -> float:
    """The divisor of :data:`DISPARITY_SCALES` under which the left view, moved by the disparity, matches the
    right view best (mean absolute difference; a point that lands outside the view differs by 255)."""
    grey = [cv2.cvtColor(v, cv2.COLOR_RGB2GRAY).astype(np.float32) for v in (left, right)]
    rows, cols = np.nonzero(stored > 0)

    def error(scale: float) -> float:
        x = np.rint(cols - stored[rows, cols] / scale).astype(np.int64)
        inside = x >= 0
        differ = np.abs(grey[0][rows[inside], cols[inside]] - grey[1][rows[inside], x[inside]])
        return (float(differ.sum()) + 255.0 * np.count_nonzero(~inside)) / max(rows.size, 1)

    return min(DISPARITY_SCALES, key=error)


def read_pair(folder: Path) -> StereoPair:
    """A pair folder (see the README, "Scoring on real stereo pairs"): two views and the left view's disparity,
    named in ``pair.json`` (``{"left", "right", "disparity", "scale", "no_truth"}``, each optional) or
    recognised by name; the stored value ``no_truth`` (default 0) means no truth, and the scale is found when
    not given (see :func:`_best_scale`)."""
    manifest = folder / PAIR_MANIFEST
    spec = json.loads(manifest.read_text()) if manifest.exists() else {}
    found = _pair_files(folder) if not {"left", "right", "disparity"} <= spec.keys() else ()
    left, right, disparity = (folder / spec[key] if key in spec else found[i]
                              for i, key in enumerate(("left", "right", "disparity")))
    views = []
    for path in (left, right):
        image = _read_image(path)
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., 2::-1]
        views.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    from ..io.images import read_depth_file

    stored = (read_depth_file(disparity) if disparity.suffix.lower() == ".pfm" else
              _read_image(disparity)).astype(np.float32)
    if stored.ndim == 3:
        stored = stored[..., 0]
    if not (views[0].shape == views[1].shape and views[0].shape[:2] == stored.shape):
        raise InputError(f"stereo pair '{folder}': the left view ({views[0].shape[1]}x{views[0].shape[0]}), "
                         f"right view ({views[1].shape[1]}x{views[1].shape[0]}) and disparity "
                         f"({stored.shape[1]}x{stored.shape[0]}) must have one size")
    stored = np.where(np.isfinite(stored) & (stored != float(spec.get("no_truth", 0))), stored, 0.0)
    scale = float(spec.get("scale") or _best_scale(views[0], views[1], stored))
    disparity_px = np.where(stored > 0, stored / scale, np.nan).astype(np.float32)
    return StereoPair(folder.name, views[0], views[1], disparity_px, scale)


def pair_folders(root: str) -> list[Path]:
    """The pair folders under ``root``: its sub-folders with images in them, by name."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"--pairs {root}: no such folder; give a folder of stereo pair folders")
    folders = sorted(p for p in base.iterdir() if p.is_dir() and any(
        q.suffix.lower() in _IMAGE_SUFFIXES for q in p.iterdir()))
    if not folders:
        raise InputError(f"--pairs {root}: no pair folders in it (each pair is a folder with its two views and "
                         "the left view's disparity)")
    return folders


def trusted_pixels(disparity: np.ndarray, window: int = 10) -> np.ndarray:
    """(H, W) bool: the right-view pixels whose truth holds, made from the left view's ``disparity`` (NaN =
    no truth): those a left pixel with truth lands on, and those no left pixel without truth could reach. Such a
    pixel's disparity is taken to lie within 1 px of the range of the known ones within ``window`` px of it
    (the pair's whole range where none is known around it). The rest might show a surface whose depth nobody
    knows."""
    h, w = disparity.shape
    valid = np.isfinite(disparity)
    landed = np.zeros((h, w), bool)
    rows, cols = np.nonzero(valid)
    x = cols - disparity[rows, cols]
    for snap in (np.floor, np.ceil):
        at = snap(x).astype(np.int64)
        inside = (at >= 0) & (at < w)
        landed[rows[inside], at[inside]] = True
    if valid.all() or not valid.any():
        return np.ones((h, w), bool)
    square = np.ones((2 * window + 1, 2 * window + 1), np.uint8)
    low_all, high_all = float(disparity[valid].min()), float(disparity[valid].max())
    # (OpenCV's erosion does not keep infinity: "unknown" is a value no disparity reaches.)
    none = np.float32(1e9)
    high = cv2.dilate(np.where(valid, disparity, -none).astype(np.float32), square)
    low = cv2.erode(np.where(valid, disparity, none).astype(np.float32), square)
    rows, cols = np.nonzero(~valid)
    high = np.where(high[rows, cols] < -1.0, high_all, high[rows, cols]) + 1.0
    low = np.where(low[rows, cols] >= none, low_all, low[rows, cols]) - 1.0
    reach = np.zeros((h, w), bool)
    for d in range(int(np.floor(low_all)) - 1, int(np.ceil(high_all)) + 2):
        at = cols - d
        can = (low <= d) & (d <= high) & (at >= 0) & (at < w)
        reach[rows[can], at[can]] = True
    return landed | ~reach


# -- the benchmark --------------------------------------------------------------------------------------------


def installed_models() -> list[str]:
    """Ids of the diffusers inpainting models on this machine (``stereoforge models``)."""
    try:
        from ..models.registry import scan
    except ImportError:
        return []
    return [m.id for m in scan() if m.stage == "inpaint"]


def _read_rgb(path: Path) -> np.ndarray:
    from ..io.images import read_png8

    image = read_png8(str(path))
    if image is None:
        raise InputError(f"cannot read '{path}'")
    return image


def soften_depth(truth_dir: str, info: dict, out_dir: str, sigma: float) -> str:
    """Write the truth's depth with soft outlines into ``out_dir`` (one ``.npy`` per frame), as a depth model
    gives it: inverse depth (or disparity) blurred with a Gaussian of ``sigma`` pixels, over the pixels that have
    depth. Returns ``out_dir``."""
    from ..io.images import read_depth_file

    os.makedirs(out_dir, exist_ok=True)
    inverse_kind = info.get("depth_kind") == "disparity"  # disparity is inverse depth already
    for n in range(1, info["frames"] + 1):
        path = next(p for p in (os.path.join(truth_dir, "depth", frame_name(n, ext)) for ext in ("exr", "npy"))
                    if os.path.exists(p))
        values = read_depth_file(path).astype(np.float64)
        valid = np.isfinite(values) & (values > 0)
        inverse = np.where(valid, values if inverse_kind else 1.0 / np.where(valid, values, 1.0), 0.0)
        weight = cv2.GaussianBlur(valid.astype(np.float64), (0, 0), sigma)
        blurred = cv2.GaussianBlur(inverse, (0, 0), sigma) / np.maximum(weight, 1e-12)
        soft = np.where(valid, blurred if inverse_kind else 1.0 / np.maximum(blurred, 1e-12), np.inf)
        np.save(os.path.join(out_dir, frame_name(n, "npy")), soft.astype(np.float32))
    return out_dir


def _convert(truth_dir: str, info: dict, shot: str, stages: tuple[str, ...], depth: str | None = None,
             **options) -> dict:
    from ..pipeline import convert
    from ..spec import ConvertSpec

    if info.get("depth_kind") == "disparity":  # a real pair: the disparity map fixes the rig
        geometry = {"depth_kind": "disparity", "baseline": info["baseline"], "interocular": info["interocular"]}
    else:
        geometry = {"depth_kind": "metric", "focal_px": info["focal_px"], **_rig_curve(info),
                    "convergence_distance": info["convergence_distance"]}
    spec = ConvertSpec(source=os.path.join(truth_dir, "center"), depth=depth or os.path.join(truth_dir, "depth"),
                       output_dir=shot, convergence_mode=info["convergence_mode"], pivot=info["pivot"],
                       cloud=False, stages=stages, **geometry, **options)
    return convert(spec)


def default_scenes() -> tuple[str, ...]:
    """The Blender scenes, and the real pairs when scikit-image (which carries them) is installed."""
    return SCENES + tuple(ANIMATED_RIGS) + (tuple(REAL_PAIRS) if importlib.util.find_spec("skimage") is not None
                                            else ())


def bench_quality(scenes: tuple[str, ...] | None = None, inpainters: tuple[str, ...] | None = None,
                  models: bool = True, settings: TruthSettings = TruthSettings(), cache: str | None = None,
                  blender_python: str | None = None, script: str | None = None, workdir: str | None = None,
                  log=print, soft_depth: float = 0.0, depth_edge_radius: int | None = None,
                  pairs: str | None = None) -> dict:
    """Render (or reuse) the truth, convert, fill with each inpainter and score; see the module docstring.

    ``soft_depth`` > 0 converts the truth's depth with soft outlines (see :func:`soften_depth`) instead of the
    hard depth; ``depth_edge_radius`` is convert's ``--depth-edge-radius`` (None: its default). ``pairs``: a
    folder of real stereo pair folders (see :func:`read_pair`), scored after ``scenes`` (which default to none
    then), each under its folder's name, and as their mean under ``"pairs_mean"``.

    Returns ``{"settings": {...}, "scenes": {scene: {inpainter: {"seconds_per_frame", "left": score,
    "right": score}}}}`` with each eye's score as :func:`score_eye` gives it.
    """
    from ..inpaint import DEFAULT_INPAINTER, INPAINTERS
    from ..io.images import read_mask

    scenes = tuple(scenes) if scenes else (() if pairs else default_scenes())
    folders = pair_folders(pairs) if pairs else []
    for scene in scenes:
        if scene not in (*SCENES, *ANIMATED_RIGS, *REAL_PAIRS):
            raise InputError(f"scene {scene!r} is not one of {', '.join((*SCENES, *ANIMATED_RIGS, *REAL_PAIRS))}")
    names = tuple(inpainters) if inpainters else ("none", "telea", DEFAULT_INPAINTER)
    for name in names:
        if name not in INPAINTERS:
            raise InputError(f"inpainter {name!r} is not one of {', '.join(INPAINTERS)}")
    runs = [(name, {"inpaint": name}) for name in names]
    if models:
        runs += [(f"model:{model}", {"inpaint_model": model}) for model in installed_models()]
    script_path = Path(script) if script else TRUTH_SCRIPT
    if not script_path.exists():
        raise InputError(f"the ground truth script '{script_path}' is missing: bench quality runs from a checkout "
                         "of the StereoForge repository (tools/blender_truth.py), or give --truth-script")
    cache = cache or default_cache()
    os.makedirs(cache, exist_ok=True)
    own_workdir = workdir is None
    work = tempfile.mkdtemp(prefix="stereoforge-quality-") if own_workdir else workdir
    results: dict = {}

    def truths():
        for scene in scenes:
            if scene in REAL_PAIRS:
                yield scene, *real_pair_truth(scene, cache)
            else:
                folder = truth_folder(cache, scene, settings, script_path)
                python = sys.executable if os.path.exists(os.path.join(folder, "truth.json")) else \
                    find_blender_python(blender_python)
                yield scene, folder, render_truth(scene, folder, settings, script_path, python, log)
        for path in folders:
            pair = read_pair(path)
            folder = os.path.join(work, "pairs", pair.name)
            write_pair_truth(folder, pair, str(path))
            with open(os.path.join(folder, "truth.json")) as f:
                yield pair.name, folder, json.load(f)

    try:
        for scene, folder, info in truths():
            eyes = tuple(info.get("eyes", EYES))  # a real pair's left eye is its source: nothing to fill
            shot = os.path.join(work, scene)
            shutil.rmtree(shot, ignore_errors=True)
            depth = soften_depth(folder, info, shot + ".soft-depth", soft_depth) if soft_depth > 0 else None
            edges = {} if depth_edge_radius is None else {"depth_edge_radius": depth_edge_radius}
            _convert(folder, info, shot, ("ingest", "eyes"), depth, **edges)
            count = info["frames"]
            truth = {eye: [_read_rgb(Path(folder, eye, frame_name(n, "png"))) for n in range(1, count + 1)]
                     for eye in eyes}
            masks = {eye: [read_mask(os.path.join(shot, "masks", eye, frame_name(n, "png")))
                           for n in range(1, count + 1)]
                     for eye in eyes}
            trusted = [read_mask(path) for path in (os.path.join(folder, "trusted", frame_name(n, "png"))
                                                    for n in range(1, count + 1)) if os.path.exists(path)] or None
            results[scene] = {}
            for label, options in runs:
                log(f"{scene}: filling with {label}")
                timings = _convert(folder, info, shot, ("inpaint",), depth, **edges, **options)["timings"]
                entry = {"seconds_per_frame": timings["inpaint"] / count}
                for eye in eyes:
                    filled = [_read_rgb(Path(shot, "filled", eye, frame_name(n, "png"))) for n in range(1, count + 1)]
                    entry[eye] = score_eye(filled, truth[eye], masks[eye], trusted)
                results[scene][label] = entry
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
    result = {"settings": {**settings.__dict__, "cache": cache, "soft_depth": soft_depth,
                           "depth_edge_radius": depth_edge_radius}, "scenes": results}
    if folders:
        result["pairs_mean"] = mean_scores([results[p.name] for p in folders])
    return result


def mean_scores(scenes: list[dict]) -> dict:
    """The mean over scenes of each figure (PSNR in dB, as tables of stereo pairs give it), per inpainter and
    eye, of the inpainters every scene has."""
    def mean(values: list):
        if isinstance(values[0], dict):
            return {key: mean([v[key] for v in values]) for key in values[0]}
        return float(np.mean(values))

    labels = [label for label in scenes[0] if all(label in s for s in scenes)]
    return {label: mean([s[label] for s in scenes]) for label in labels}


def print_table(result: dict) -> None:
    s = result["settings"]
    if any(scene in SCENES for scene in result["scenes"]):
        print(f"bench quality: filled eyes against Blender's true eyes, {s['frames']} frames at "
              f"{s['width']}x{s['height']}, interocular {s['interocular']} m, convergence "
              f"{s['convergence_distance']} m")
    print("settings:" + (f" depth softened (sigma {s['soft_depth']} px)" if s.get("soft_depth") else " hard depth")
          + (f", --depth-edge-radius {s['depth_edge_radius']}" if s.get("depth_edge_radius") is not None else ""))
    print("PSNR (dB) and SSIM on covered / dropout / all pixels; flicker = (ours + 1) / (truth + 1) of the "
          "motion-compensated change between frames, on dropout / all pixels (1 = as steady as the truth)")
    if "pairs_mean" in result:
        print("real pairs: the right eye made from the left view and its true disparity, scored on the pixels "
              "whose truth holds")
    rows = {**result["scenes"], **({"mean": result["pairs_mean"]} if "pairs_mean" in result else {})}
    width = max(8, *(len(scene) for scene in rows))
    head = (f"{'scene':<{width}} {'inpainter':<12} {'eye':<5} {'drop%':>6} {'PSNR cov':>8} {'drop':>6} {'all':>6} "
            f"{'SSIM cov':>8} {'drop':>6} {'all':>6} {'flick drop':>10} {'all':>5} {'s/frame':>8}")
    print(head)
    print("-" * len(head))
    for scene, by_inpainter in rows.items():
        for label, entry in by_inpainter.items():
            for eye in (eye for eye in EYES if eye in entry):
                r = entry[eye]
                print(f"{scene:<{width}} {label[:12]:<12} {eye:<5} {100 * r['dropout_fraction']:6.2f} "
                      f"{r['covered']['psnr']:8.2f} {r['dropout']['psnr']:6.2f} {r['all']['psnr']:6.2f} "
                      f"{r['covered']['ssim']:8.4f} {r['dropout']['ssim']:6.4f} {r['all']['ssim']:6.4f} "
                      f"{r['dropout']['flicker']:10.2f} {r['all']['flicker']:5.2f} "
                      f"{entry['seconds_per_frame']:8.3f}")
        print()


# -- command line ---------------------------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_quality(args: argparse.Namespace) -> int:
    settings = TruthSettings(**{name: getattr(args, name) for name in TRUTH_OPTIONS})
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    result = bench_quality(args.scenes, args.inpainters, not args.no_models, settings, args.cache,
                           args.blender_python, args.truth_script, args.workdir, log, args.soft_depth,
                           args.depth_edge_radius, args.pairs)
    print_table(result)
    if args.json:
        print(json.dumps(_finite(result), allow_nan=False))
    return 0


def _finite(value):
    """JSON has no inf or NaN: they become null (a PSNR is inf where every pixel matches)."""
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenes", type=_names, default=None, metavar="SCENE[,SCENE...]",
                   help=f"Blender scenes to render and score, of {', '.join(SCENES)}, scenes whose rig moves, of "
                        f"{', '.join(ANIMATED_RIGS)} (the interocular keyed from "
                        f"{ANIMATED_RIGS['demo-rig'][1]} to {ANIMATED_RIGS['demo-rig'][2]} m over the clip), and "
                        f"real stereo pairs, of {', '.join(REAL_PAIRS)} (default: all; the real pairs when "
                        "scikit-image is installed)")
    p.add_argument("--pairs", metavar="DIR", default=None,
                   help="also score real stereo pairs: DIR holds one folder per pair, with its two views and the "
                        f"left view's disparity (named disp* or *_gt*, or in a {PAIR_MANIFEST}); the right eye is "
                        "made from the left view and scored per pair and as a mean (without --scenes, only the "
                        "pairs)")
    p.add_argument("--inpainters", type=_names, default=None, metavar="NAME[,NAME...]",
                   help="inpainters to score (default: none, telea and the default)")
    p.add_argument("--no-models", action="store_true",
                   help="skip the diffusers inpainting models found on this machine")
    defaults = TruthSettings()
    for name, what in TRUTH_OPTIONS.items():
        value = getattr(defaults, name)
        p.add_argument(_flag(name), type=type(value), default=value, help=f"{what} (default: %(default)s)")
    p.add_argument("--soft-depth", type=float, default=0.0, metavar="SIGMA",
                   help="convert the truth's depth with soft outlines, as a depth model gives it: inverse depth "
                        "blurred by a Gaussian of SIGMA pixels (default: 0, the hard depth)")
    p.add_argument("--depth-edge-radius", type=int, default=None, metavar="PX",
                   help="convert's --depth-edge-radius (0 leaves soft outlines as they are; default: convert's)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help=f"where the Blender renders are kept between runs (default: {default_cache()})")
    p.add_argument("--blender-python", metavar="PATH", default=None,
                   help="a Python with bpy 4.5 to render with (default: this one)")
    p.add_argument("--truth-script", metavar="PATH", default=None,
                   help=f"the ground truth script (default: {TRUTH_SCRIPT})")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="where to keep the shot folders (default: a temporary folder, removed afterwards)")
    p.add_argument("--json", action="store_true", help="end with one line of JSON holding every figure")
    p.set_defaults(func=cmd_quality)


def register(bench_subparsers) -> None:
    """Add ``quality`` to the sub-commands of ``stereoforge bench``."""
    p = bench_subparsers.add_parser(
        "quality", help="filled eyes against Blender's true eyes: PSNR, SSIM, flicker per inpainter",
        description="Render Blender ground truth (cached), convert its centre view and depth to eyes, fill the "
                    "dropout with each inpainter and compare with Blender's own eyes: PSNR and SSIM on "
                    "covered, dropout and all pixels, flicker, dropout fraction and seconds per frame.")
    add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stereoforge.dev.quality",
                                     description="bench quality: " + __doc__.strip().splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

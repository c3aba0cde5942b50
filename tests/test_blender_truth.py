"""The eyes match Blender's own stereo camera.

Blender renders a small scene's centre view with its Z pass, and the same frame through its stereo camera
(``tools/blender_truth.py``). ``stereoforge convert`` turns the centre view and depth into eyes with the same
rig; on the pixels the conversion covers (away from depth edges, where antialiasing mixes two surfaces, and from
dropout), the eyes must match Blender's pixel for pixel, up to resampling: PSNR well above 30 dB. Swapping the
eyes, or leaving out the off-axis shift, must fail the same comparison.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereoforge.cli import main
from stereoforge.io.images import read_eye, to_uint8_srgb

ROOT = Path(__file__).resolve().parents[1]
W, H = 192, 108


def render_truth(out: Path, mode: str, pivot: str, interocular: float = 0.1, convergence: float = 4.0,
                 frames: int = 1, *extra: str) -> dict:
    subprocess.run([sys.executable, str(ROOT / "tools" / "blender_truth.py"), "--scene", "demo", "--out", str(out),
                    "--width", str(W), "--height", str(H), "--frames", str(frames), "--samples", "16",
                    "--interocular", str(interocular), "--convergence-distance", str(convergence),
                    "--convergence-mode", mode, "--pivot", pivot, *extra], check=True, capture_output=True,
                   timeout=600)
    return json.loads((out / "truth.json").read_text())


def convert(truth: Path, info: dict, shot: Path, **rig) -> None:
    args = ["convert", str(truth / "center"), "--depth", str(truth / "depth"), "--depth-kind", "metric",
            "--focal-px", str(info["focal_px"]), "--inpaint", "none", "--no-cloud", "-o", str(shot), "-q",
            "--keep", "eyes,masks,filled"]
    for key, value in rig.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    assert main(args) == 0


def comparable(alpha: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Fully covered pixels, 2 px away from dropout and from depth edges (a 10 % jump between neighbours)."""
    kernel = np.ones((5, 5), np.uint8)
    covered = cv2.erode((alpha > 0.95).astype(np.uint8), kernel) > 0
    finite = np.where(np.isfinite(depth), depth, 1e6).astype(np.float32)
    square = np.ones((3, 3), np.uint8)
    jump = cv2.dilate(finite, square) > cv2.erode(finite, square) * 1.1
    return covered & ~(cv2.dilate(jump.astype(np.uint8), kernel) > 0)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    err = np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-12)))


def eye_scores(shot: Path, truth: Path, n: int = 1) -> dict:
    """PSNR of each of our eyes of frame ``n`` against each of Blender's, on the pixels comparable."""
    scores = {}
    for eye in ("left", "right"):
        rgb, alpha, depth = read_eye(str(shot / "eyes" / eye / f"{n:06d}.exr"))
        ours = to_uint8_srgb(rgb)
        mask = comparable(alpha, depth)
        assert mask.mean() > 0.5, f"only {mask.mean():.0%} of the {eye} eye is comparable"
        for other in ("left", "right"):
            theirs = cv2.imread(str(truth / other / f"{n:06d}.png"))[..., ::-1]
            scores[(eye, other)] = psnr(ours, theirs, mask)
    return scores


@pytest.mark.parametrize("mode,pivot", [("OFFAXIS", "CENTER"), ("PARALLEL", "LEFT"), ("TOE", "CENTER"),
                                        ("OFFAXIS", "RIGHT")])
def test_eyes_match_blenders_stereo_camera(tmp_path, mode, pivot):
    truth = tmp_path / "truth"
    info = render_truth(truth, mode, pivot)
    shot = tmp_path / "shot"
    convert(truth, info, shot, interocular=info["interocular"], convergence_distance=info["convergence_distance"],
            convergence_mode=mode, pivot=pivot)
    scores = eye_scores(shot, truth)
    print(mode, pivot, {f"{a}/{b}": round(v, 1) for (a, b), v in scores.items()})
    for eye in ("left", "right"):
        assert scores[(eye, eye)] > 33.0, f"{mode}/{pivot}: the {eye} eye is {scores[(eye, eye)]:.1f} dB"
    # The comparison can tell the eyes apart: each eye matches its own Blender eye far better than the other.
    assert scores[("left", "left")] > scores[("left", "right")] + 6
    assert scores[("right", "right")] > scores[("right", "left")] + 6


def test_off_axis_shift_is_needed_to_match(tmp_path):
    """Converting with PARALLEL where Blender used OFFAXIS leaves every pixel a few pixels off: it fails."""
    truth = tmp_path / "truth"
    info = render_truth(truth, "OFFAXIS", "CENTER", interocular=0.2, convergence=2.5)
    good, wrong = tmp_path / "good", tmp_path / "wrong"
    convert(truth, info, good, interocular=0.2, convergence_distance=2.5, convergence_mode="OFFAXIS", pivot="CENTER")
    convert(truth, info, wrong, interocular=0.2, convergence_distance=2.5, convergence_mode="PARALLEL",
            pivot="CENTER")
    right, wrong_scores = eye_scores(good, truth), eye_scores(wrong, truth)
    assert right[("left", "left")] > 33.0
    assert wrong_scores[("left", "left")] < right[("left", "left")] - 8



def test_a_stereo_pair_is_reproduced_from_its_disparity(tmp_path):
    """The shape of a real stereo pair with ground truth (Middlebury-style): a left image and its disparity in
    pixels as a PFM file. Converting with only ``--depth-kind disparity`` (the defaults then keep the source as
    the left eye and put a parallel right eye one baseline away) must give Blender's right eye back."""
    truth = tmp_path / "truth"
    info = render_truth(truth, "PARALLEL", "LEFT", interocular=0.25)
    from stereoforge.io.images import read_depth_file

    depth = read_depth_file(truth / "depth" / "000001.exr")
    disparity = (info["focal_px"] * 0.25 / depth).astype("<f4")
    with open(tmp_path / "disp0.pfm", "wb") as f:  # PFM: bottom row first, negative scale = little-endian
        f.write(f"Pf\n{W} {H}\n-1.0\n".encode())
        f.write(np.flipud(disparity).tobytes())
    left = tmp_path / "im0.png"
    left.write_bytes((truth / "left" / "000001.png").read_bytes())
    shot = tmp_path / "shot"
    assert main(["convert", str(left), "--depth", str(tmp_path / "disp0.pfm"), "--depth-kind", "disparity",
                 "--baseline", "0.25", "-o", str(shot), "--no-cloud", "-q", "--keep", "eyes,masks,filled"]) == 0
    scores = eye_scores(shot, truth)
    print("disparity", {f"{a}/{b}": round(v, 1) for (a, b), v in scores.items()})
    assert scores[("left", "left")] > 60  # the source itself
    assert scores[("right", "right")] > 33.0
    assert scores[("right", "right")] > scores[("right", "left")] + 6


def test_an_animated_rig_matches_blenders_animated_stereo_camera(tmp_path):
    """Blender's stereo camera with its interocular keyed from 0.03 to 0.2 m over 8 frames, and the pipeline
    with the same curve: every frame's eyes match Blender's, within 1 dB of what a rig held still at that
    frame's interocular scores (frames 1 and 8), and far better than a rig held at the first frame's."""
    frames, start, end = 8, 0.03, 0.2
    animated = render_truth(tmp_path / "animated", "OFFAXIS", "CENTER", start, 4.0, frames,
                            "--interocular-end", str(end))
    assert animated["interocular_frames"] == pytest.approx(np.linspace(start, end, frames), abs=1e-6)
    curve = f"1:{start},{frames}:{end}"
    shot, held = tmp_path / "shot", tmp_path / "held"
    convert(tmp_path / "animated", animated, shot, interocular_curve=curve, convergence_distance=4.0)
    convert(tmp_path / "animated", animated, held, interocular=start, convergence_distance=4.0)
    scores = [eye_scores(shot, tmp_path / "animated", n) for n in range(1, frames + 1)]
    print("animated", [round(s[("right", "right")], 1) for s in scores])
    for n, s in enumerate(scores, 1):
        assert s[("left", "left")] > 33.0 and s[("right", "right")] > 33.0, (n, s)
    for n, interocular in ((1, start), (frames, end)):
        still = tmp_path / f"still{n}"
        info = render_truth(still, "OFFAXIS", "CENTER", interocular, 4.0, frames)
        ours = tmp_path / f"ours{n}"
        convert(still, info, ours, interocular=interocular, convergence_distance=4.0)
        reference = eye_scores(ours, still, n)
        print(f"frame {n} still", {k: round(v, 1) for k, v in reference.items()})
        for eye in ("left", "right"):
            assert abs(scores[n - 1][(eye, eye)] - reference[(eye, eye)]) < 1.0, (n, eye)
    assert eye_scores(held, tmp_path / "animated", frames)[("right", "right")] < scores[-1][("right", "right")] - 6

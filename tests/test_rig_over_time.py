"""A rig that moves over a shot, and comfort: ``--interocular-curve`` and friends, the far-parallax limit, the
per-frame parallax report and the floating window, through the real command line.

Inputs are small: 96x64 frames of a smooth random texture, with depth of a near rectangle (2 m) in front of a
plane (6 m), as in test_convert.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereoforge.cli import main
from stereoforge.comfort import VIEWER_EYE_SEPARATION, window_edges
from stereoforge.curve import parse_curve, sample
from stereoforge.errors import InputError
from stereoforge.io.images import read_exr_channels
from stereoforge.rig import StereoRig, parallax_px

H, W, FRAMES = 64, 96, 8
NEAR_M, FAR_M = 2.0, 6.0
FOCAL_PX = W * 35.0 / 36.0


def make_clip(folder: Path, near_col: int = 36, frames: int = FRAMES) -> tuple[Path, Path]:
    """A folder of frames and an .npy depth stack: the near rectangle at columns ``near_col``..+24."""
    plate = folder / "plate"
    plate.mkdir(parents=True)
    rng = np.random.default_rng(3)
    coarse = rng.random((H // 6 + 2, W // 6 + 2, 3)).astype(np.float32)
    rgb = np.clip(cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC) * 230 + 15.5, 0, 255).astype(np.uint8)
    depth = np.full((frames, H, W), FAR_M, np.float32)
    depth[:, 20:44, near_col:near_col + 24] = NEAR_M
    for n in range(frames):
        cv2.imwrite(str(plate / f"{n + 1:04d}.png"), rgb[..., ::-1])
    np.save(folder / "depth.npy", depth)
    return plate, folder / "depth.npy"


def convert(plate: Path, depth: Path, shot: Path, *args: str, capsys=None) -> str:
    code = main(["convert", str(plate), "--depth", str(depth), "--depth-kind", "metric", "--inpaint", "none",
                 "--no-cloud", "-o", str(shot), "-q", "--keep", "eyes,masks,filled", *map(str, args)])
    err = capsys.readouterr().err if capsys else ""
    assert code == 0, err
    return err


def meta(shot: Path) -> dict:
    return json.loads((shot / "shot.json").read_text())


def eye(shot: Path, side: str, n: int) -> np.ndarray:
    channels = read_exr_channels(shot / "eyes" / side / f"{n:06d}.exr")
    return np.stack([channels[c] for c in "RGBA"], axis=-1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    return make_clip(tmp_path_factory.mktemp("clip"))


# -- curves ---------------------------------------------------------------------------------------------------

def test_a_curve_is_keys_linear_between_and_held_outside(tmp_path):
    keys = parse_curve("8:0.2, 1:0.03", "--interocular-curve")
    assert keys == ((1.0, 0.03), (8.0, 0.2))
    np.testing.assert_allclose(sample(keys, 10), [0.03 + (0.2 - 0.03) * min(n, 7) / 7 for n in range(10)])
    path = tmp_path / "rig.txt"
    path.write_text("# frame metres\n1 0.03\n8, 0.2\n")
    assert parse_curve(str(path), "--interocular-curve") == keys
    path.write_text("[[1, 0.03], [8, 0.2]]")
    assert parse_curve(str(path), "--interocular-curve") == keys
    for bad, words in (("1:0.03,1:0.2", "keyed twice"), ("0:0.1", "count from 1"), ("1:-2", "positive"),
                       ("fast", "not a curve")):
        with pytest.raises(InputError, match=words):
            parse_curve(bad, "--interocular-curve")


def test_bad_curves_and_clashing_options_are_refused_in_one_line(clip, tmp_path, capsys):
    plate, depth = clip
    for args, words in ((["--interocular-curve", "1:abc"], "--interocular-curve '1:abc' is not a curve"),
                        (["--interocular-curve", "1:0.1", "--interocular", "0.1"], "give one of them"),
                        (["--max-parallax-curve", "1:2", "--max-parallax", "2"], "give one of them"),
                        (["--convergence-curve", "1:3", "--convergence-distance", "3"], "not both")):
        code = main(["convert", str(plate), "--depth", str(depth), "-o", str(tmp_path / "s"), "-q", *args])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


# -- an animated rig ------------------------------------------------------------------------------------------

def test_each_frame_is_splatted_with_its_own_rig(clip, tmp_path):
    """An interocular keyed 0.03 -> 0.2 over 8 frames: shot.json holds every frame's rig, and each frame's eyes
    are exactly those of a shot made with that frame's interocular throughout."""
    plate, depth = clip
    shot = tmp_path / "animated"
    convert(plate, depth, shot, "--interocular-curve", "1:0.03,8:0.2", "--convergence-distance", "3")
    m = meta(shot)
    expected = [0.03 + (0.2 - 0.03) * n / 7 for n in range(FRAMES)]
    assert m["rig_frames"]["interocular_distance"] == pytest.approx(expected, rel=1e-12)
    assert m["rig_frames"]["convergence_distance"] == [3.0] * FRAMES
    assert m["rig"]["interocular_distance"] == pytest.approx(0.03)
    for n in (1, 4, 8):
        fixed = tmp_path / f"fixed{n}"
        convert(plate, depth, fixed, "--interocular", repr(expected[n - 1]), "--convergence-distance", "3",
                "--frames", f"{n}:{n}")
        for side in ("left", "right"):
            np.testing.assert_array_equal(eye(shot, side, n), eye(fixed, side, 1), err_msg=f"frame {n} {side}")
    # The near rectangle's parallax follows the rig: the right eye's rectangle moves further left each frame.
    near = [float(v) for v in m["parallax_frames"]["near_px"]]
    assert near == pytest.approx([FOCAL_PX * b * (1 / 3 - 1 / NEAR_M) for b in expected], rel=1e-9)
    assert all(a > b for a, b in zip(near, near[1:], strict=False))


def test_a_depth_budget_and_the_convergence_can_change_over_time(clip, tmp_path):
    plate, depth = clip
    shot = tmp_path / "budget"
    convert(plate, depth, shot, "--max-parallax-curve", "1:1,8:3", "--convergence-curve", "1:4,8:3")
    frames = meta(shot)["parallax_frames"]
    budget = np.linspace(1, 3, FRAMES)
    assert frames["near_pct"] == pytest.approx(-budget, abs=1e-3)  # the nearest point sits on the budget
    assert meta(shot)["rig_frames"]["convergence_distance"] == pytest.approx(np.linspace(4, 3, FRAMES))


# -- comfort --------------------------------------------------------------------------------------------------

def test_far_parallax_past_the_limit_is_narrowed_with_a_warning(clip, tmp_path, capsys):
    plate, depth = clip
    shot = tmp_path / "far"
    # Converging at 2.5 m with 0.3 m: the 6 m plane is 0.3 * f * (1/2.5 - 1/6) = 6.3 px = 6.6 % behind.
    err = convert(plate, depth, shot, "--interocular", "0.3", "--convergence-distance", "2.5",
                  "--max-far-parallax", "2", capsys=capsys)
    assert "warning" in err and "2.00 %" in err and "8 of 8 frames" in err
    m = meta(shot)
    assert max(m["parallax_frames"]["far_pct"]) == pytest.approx(2.0, abs=1e-3)
    assert m["comfort"]["narrowed_frames"] == list(range(1, FRAMES + 1))
    assert m["rig"]["interocular_distance"] == pytest.approx(0.02 * W / (FOCAL_PX * (1 / 2.5 - 1 / FAR_M)))


def test_divergence_on_the_given_screen_is_narrowed(clip, tmp_path, capsys):
    """On a 10 m screen the eyes diverge past 6.5 mm of parallax: 0.065 % of the width."""
    plate, depth = clip
    shot = tmp_path / "screen"
    err = convert(plate, depth, shot, "--interocular", "0.1", "--convergence-distance", "2.5", "--screen-width",
                  "10", capsys=capsys)
    assert "narrowed" in err
    far = max(meta(shot)["parallax_frames"]["far_pct"])
    assert far == pytest.approx(100 * VIEWER_EYE_SEPARATION / 10, abs=1e-3)
    comfortable = tmp_path / "small screen"
    assert "narrowed" not in convert(plate, depth, comfortable, "--interocular", "0.1", "--convergence-distance",
                                     "2.5", "--screen-width", "0.5", capsys=capsys)
    assert meta(comfortable)["comfort"]["narrowed_frames"] == []


def test_floating_window_blacks_out_the_strip_one_eye_sees(tmp_path):
    """The near rectangle touches the left frame edge, in front of the screen: the left eye's left edge goes
    black for the width of its parallax, and nothing else changes."""
    plate, depth = make_clip(tmp_path / "clip", near_col=0, frames=1)
    args = ("--interocular", "0.2", "--convergence-distance", "4", "--inpaint", "telea", "--layout", "separate")
    plain, floating = tmp_path / "plain", tmp_path / "floating"
    for shot, extra in ((plain, ()), (floating, ("--floating-window",))):
        assert main(["convert", str(plate), "--depth", str(depth), "--depth-kind", "metric", "--no-cloud", "-o",
                     str(shot), "-q", *args, *extra]) == 0
    rig = StereoRig(0.2, 4.0)
    width = math.ceil(-float(parallax_px(rig, FOCAL_PX, NEAR_M)))
    assert window_edges(np.load(depth)[0], rig, FOCAL_PX) == (width, 0) and width >= 3
    read = lambda shot, side: cv2.imread(str(shot / "out" / "frames" / side / f"{side}_000001.png"))
    left, plain_left = read(floating, "left"), read(plain, "left")
    assert (left[:, :width] == 0).all() and (plain_left[:, :width] > 0).any()
    np.testing.assert_array_equal(left[:, width:], plain_left[:, width:])
    np.testing.assert_array_equal(read(floating, "right"), read(plain, "right"))


def test_bench_quality_scores_a_scene_with_an_animated_rig(tmp_path):
    """``demo-rig``: Blender's stereo camera keyed from 0.03 to 0.2 m, converted with the same curve; the
    covered pixels score within 1 dB of the same scene with a rig held still."""
    from stereoforge.dev.quality import TruthSettings, bench_quality

    settings = TruthSettings(width=192, height=108, frames=FRAMES, samples=16)
    result = bench_quality(("demo-rig", "demo"), ("none",), models=False, settings=settings,
                           cache=str(tmp_path / "cache"), log=lambda message: None)
    truth = next((tmp_path / "cache").glob("demo-rig-*")) / "truth.json"
    assert json.loads(truth.read_text())["interocular_frames"] == pytest.approx(np.linspace(0.03, 0.2, FRAMES))
    for side in ("left", "right"):
        animated, still = (result["scenes"][scene]["none"][side]["covered"]["psnr"] for scene in ("demo-rig", "demo"))
        assert animated > 33.0 and abs(animated - still) < 1.0, (side, animated, still)

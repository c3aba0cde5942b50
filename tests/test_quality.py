"""``stereoforge bench quality``: the filled eyes against true eyes, on Blender renders and on a real stereo pair.

The Blender part renders a tiny version of one scene (a few frames, few samples) into a cache in a temporary
folder; the real pair is Middlebury's Motorcycle as scikit-image ships it.
"""

import json

import numpy as np

from stereoforge.cli import main
from stereoforge.quality import bench_quality, real_pair_truth


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bench_quality_scores_each_inpainter_on_a_blender_scene_and_caches_the_render(tmp_path, capsys):
    args = ["bench", "quality", "--scenes", "planes", "--inpainters", "none,telea,background", "--no-models",
            "--frames", "3", "--width", "160", "--height", "90", "--samples", "4", "--cache", str(tmp_path / "cache"),
            "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "rendering the ground truth of 'planes'" in err  # with --json, the log goes to stderr
    assert "planes   background   left" in out  # the table
    result = json.loads(out.strip().splitlines()[-1])
    scores = result["scenes"]["planes"]
    assert set(scores) == {"none", "telea", "background"}
    for eye in ("left", "right"):
        none, telea, ours = (scores[name][eye] for name in ("none", "telea", "background"))
        assert 0.0 < ours["dropout_fraction"] < 0.2
        # Covered pixels are the eyes' own, whatever fills the holes; the planes are still, so nothing flickers.
        assert ours["covered"]["psnr"] == none["covered"]["psnr"] == telea["covered"]["psnr"]
        assert ours["covered"]["psnr"] > 30.0
        assert ours["dropout"]["flicker"] == 1.0
        # Black holes are far off; the background side beats Telea, which smears the nearer planes in.
        assert none["dropout"]["psnr"] < 10.0
        assert ours["dropout"]["psnr"] > telea["dropout"]["psnr"] + 3.0
        assert ours["all"]["psnr"] > telea["all"]["psnr"]
        assert scores["background"]["seconds_per_frame"] > 0

    # Again: the render comes from the cache.
    code, out, err = run_cli(args[:-1], capsys)
    assert code == 0 and "rendering" not in out + err
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_an_unknown_scene_is_refused(tmp_path, capsys):
    code, _, err = run_cli(["bench", "quality", "--scenes", "moon", "--cache", str(tmp_path)], capsys)
    assert code == 2 and "'moon'" in err and "motorcycle" in err


def test_the_real_pairs_right_eye_is_the_real_right_view_and_the_default_fills_its_holes_best(tmp_path):
    """Middlebury's Motorcycle: the left view and its true disparity make the right eye (issue 2's check), and
    on its dropout the default inpainter is closer to the real right view than Telea (issue 5's)."""
    folder, info = real_pair_truth("motorcycle", str(tmp_path / "cache"))
    assert info["eyes"] == ["right"] and info["depth_kind"] == "disparity"
    result = bench_quality(("motorcycle",), ("none", "telea", "background"), models=False,
                           cache=str(tmp_path / "cache"), log=lambda message: None)
    scores = result["scenes"]["motorcycle"]
    none, telea, ours = (scores[name]["right"] for name in ("none", "telea", "background"))
    assert set(scores["background"]) == {"seconds_per_frame", "right"}  # the left eye is the source itself
    # Where points landed, the right eye is the real right view (a real camera pair: exposure and
    # reflections differ a little), far closer than the left view is to it.
    assert ours["covered"]["psnr"] > 26.0
    import cv2

    left = cv2.imread(str(folder) + "/left/000001.png").astype(np.float64)
    right = cv2.imread(str(folder) + "/right/000001.png").astype(np.float64)
    assert 10 * np.log10(255.0 ** 2 / np.mean((left - right) ** 2)) < ours["covered"]["psnr"] - 10.0
    assert 0.05 < ours["dropout_fraction"] < 0.3
    assert ours["dropout"]["psnr"] > telea["dropout"]["psnr"] > none["dropout"]["psnr"]
    assert ours["all"]["psnr"] >= telea["all"]["psnr"]

"""``stereoforge bench blender``: Blender renders both eyes of a synthetic clip through the installed add-on."""

import json

from stereoforge.cli import main


def test_bench_blender_times_blenders_eye_renders_of_every_frame(capsys):
    code = main(["bench", "blender", "--height", "60", "--width", "108", "--frames", "2", "--samples", "2", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    r = json.loads(out.strip().splitlines()[-1])
    assert (r["width"], r["height"], r["frames"], r["eye_frames"]) == (108, 60, 2, 4)
    assert 0 < r["seconds_per_eye_frame"] == r["render_seconds"] / 4
    assert r["peak_rss_mb"] > 50  # Blender's own process, not this one
    assert "s per eye-frame" in out
    # A resume with nothing to do, on the warm local backend (a figure, not a limit: timing is the bench's job).
    assert r["resume_seconds"] > 0 and r["resume_splatter_seconds"] > 0 and r["backend_start_seconds"] > 0
    assert "Run again with nothing to do" in out


def test_bench_blender_refuses_a_clip_of_no_frames(capsys):
    assert main(["bench", "blender", "--frames", "0"]) == 2
    assert "--frames 0" in capsys.readouterr().err

"""The README's first command: ``stereoforge demo`` makes the stereo videos and a shot folder that shows each
stage's work."""

from __future__ import annotations

import av

from stereoforge.cli import main
from stereoforge.shot import INTERMEDIATES


def test_demo_writes_the_videos_and_every_stage_folder_it_names(tmp_path, capsys):
    shot = tmp_path / "demo-out"
    assert main(["demo", "-o", str(shot), "-q"]) == 0
    said = capsys.readouterr().out
    for video in ("demo-out_sbs.mp4", "demo-out_anaglyph.mp4"):
        path = shot / "out" / "video" / video
        assert str(path) in said
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames > 1
    # The closing lines name the folders; each holds frames of its stage.
    for folder in ("source", "depth", *INTERMEDIATES, "out"):
        assert f"{folder}/" in said
        assert any(p.is_file() for p in (shot / folder).rglob("*")), folder

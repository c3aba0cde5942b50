"""Models that drop in, run through the same ``from_pretrained`` path a user's model takes.

Every model here is a tiny random-weight one built from its real config class and saved with ``save_pretrained``
(``tiny_models.py``); nothing is downloaded (``HF_HUB_OFFLINE=1``). Covered: TextToVideoSD (zeroscope's family,
legacy step callback), LTX-Video text-to-video and image-to-video (``callback_on_step_end``), DPT and Depth
Anything (relative and metric), Marigold depth (affine), Stable Diffusion inpainting. The pictures are noise:
the tests check frame counts, shapes, dtypes, chunking and tiling, cancellation, files and provenance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_models  # noqa: E402
from stereoforge.cli import main  # noqa: E402
from stereoforge.depth import DepthConverter, DepthStats, observe  # noqa: E402
from stereoforge.errors import Cancelled, InputError  # noqa: E402
from stereoforge.io.images import read_depth_file, read_image, to_uint8_srgb, write_png  # noqa: E402
from stereoforge.models import depth as depth_models  # noqa: E402
from stereoforge.models import loading, registry  # noqa: E402
from stereoforge.models.depth import load_depth_model  # noqa: E402
from stereoforge.models.inpaint import fill_in_chunks, fill_tiled, load_inpaint_model, tile_starts  # noqa: E402
from stereoforge.models.loading import LoadOptions, locate  # noqa: E402
from stereoforge.models.video import VideoRequest, load_video_model  # noqa: E402
from stereoforge.pipeline import convert  # noqa: E402
from stereoforge.spec import ConvertSpec  # noqa: E402

CPU = LoadOptions(device="cpu")
EYES = ("left", "right")


class Tiny:
    """Tiny model folders, built on first use."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __getitem__(self, name: str) -> str:
        path = self.folder / name
        if not path.exists():
            builder = {"depth_anything_metric": lambda p: tiny_models.depth_anything(p, metric=True)}.get(
                name, getattr(tiny_models, name, None))
            builder(path)
        return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache: nothing cached, nothing fetched
    yield
    loading.release()


def frames_folder(folder: Path, count: int, height: int = 32, width: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        write_png(folder / f"frame{i + 1:03d}.png", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return folder


def count_files(folder: Path, ext: str) -> int:
    return len([p for p in Path(folder).iterdir() if p.suffix == ext and not p.name.startswith(".")])


# ---------------------------------------------------------------------------------------------- locating


def test_locate_reads_what_a_folder_holds(tiny):
    ref = locate(tiny["text_to_video_sd"], "video")
    assert (ref.library, ref.class_name) == ("diffusers", "TextToVideoSDPipeline")
    ref = locate(tiny["dpt"], "depth")
    assert (ref.library, ref.class_name) == ("transformers", "DPTForDepthEstimation")


def test_a_missing_model_is_one_message_that_says_how_to_fetch_it(tmp_path):
    with pytest.raises(InputError) as err:
        locate("nobody/not-a-model", "depth")
    message = str(err.value)
    assert "'nobody/not-a-model'" in message and "HF_HUB_OFFLINE" in message
    assert "hf download nobody/not-a-model" in message and "--local-dir" in message
    with pytest.raises(InputError, match="does not exist"):
        locate(str(tmp_path / "no-such-folder"), "video")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither model_index.json"):
        locate(str(tmp_path / "empty"), "video")


# ------------------------------------------------------------------------------------------------- video


def test_text_to_video_sd_makes_the_frames_asked_for_with_step_progress(tiny):
    model = load_video_model(tiny["text_to_video_sd"], CPU)
    steps = []
    frames = model(VideoRequest("a teddy bear", num_frames=3, height=32, width=48, steps=2, seed=3),
                   progress=lambda done, total: steps.append((done, total)))
    assert len(frames) == 3
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert steps[:2] == [(1, 2), (2, 2)]
    # The same seed gives the same video (noise is drawn on the CPU).
    again = model(VideoRequest("a teddy bear", num_frames=3, height=32, width=48, steps=2, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    assert model.info["class"] == "TextToVideoSDPipeline" and model.info["dtype"] == "float32"


def test_ltx_text_to_video_and_image_to_video(tiny):
    t2v = load_video_model(tiny["ltx_text_to_video"], CPU)
    frames = t2v(VideoRequest("a cat", num_frames=5, height=32, width=64, steps=2))
    assert len(frames) == 5 and frames[0].shape == (32, 64, 3)
    with pytest.raises(InputError, match="takes no first frame"):
        t2v(VideoRequest("a cat", image=np.zeros((32, 64, 3), np.uint8), num_frames=5, height=32, width=64))

    i2v = load_video_model(tiny["ltx_image_to_video"], CPU)
    assert i2v.needs_image
    first = np.random.default_rng(1).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    frames = i2v(VideoRequest("a dog", image=first, num_frames=5, height=32, width=64, steps=2))
    assert len(frames) == 5 and all(f.shape == (32, 64, 3) for f in frames)
    with pytest.raises(InputError, match="pass --image"):
        i2v(VideoRequest("a dog", num_frames=5, height=32, width=64, steps=2))


def test_the_pipelines_own_input_checks_become_input_errors(tiny):
    model = load_video_model(tiny["ltx_text_to_video"], CPU)
    with pytest.raises(InputError, match="divisible by 32"):
        model(VideoRequest("a cat", num_frames=5, height=32, width=48, steps=1))


def test_a_model_of_another_stage_is_refused_by_name_before_any_work(tiny, tmp_path):
    with pytest.raises(InputError, match="StableDiffusionInpaintPipeline, which takes no num_frames"):
        load_video_model(tiny["sd_inpaint"], CPU)
    source = frames_folder(tmp_path / "plate", 1)
    spec = ConvertSpec(source=str(source), output_dir=str(tmp_path / "shot"), depth_model=tiny["sd_inpaint"])
    with pytest.raises(InputError, match="is a StableDiffusionInpaintPipeline: an inpainting model, not a depth"):
        convert(spec)
    assert not (tmp_path / "shot").exists()


@pytest.mark.parametrize("name,size", [("text_to_video_sd", (32, 48)), ("ltx_text_to_video", (32, 64))])
def test_cancel_stops_inside_the_denoising_loop(tiny, name, size):
    """TextToVideoSD reports steps through the legacy ``callback``, LTX through ``callback_on_step_end``."""
    model = load_video_model(tiny[name], CPU)
    steps = []
    with pytest.raises(Cancelled, match="step 1 of 5"):
        model(VideoRequest("a cat", num_frames=5, height=size[0], width=size[1], steps=5),
              progress=lambda done, total: steps.append(done), cancel=lambda: len(steps) >= 1)
    assert steps == [1]


# ------------------------------------------------------------------------------------------------- depth


@pytest.mark.parametrize("name,kind", [("dpt", "relative"), ("depth_anything", "relative"),
                                       ("depth_anything_metric", "metric"), ("marigold", "affine")])
def test_depth_models_know_their_kind_and_keep_the_frame_size(tiny, name, kind):
    model = load_depth_model(tiny[name], CPU)
    assert model.kind == kind
    frames = [np.random.default_rng(i).integers(0, 255, (36, 52, 3), dtype=np.uint8) for i in range(3)]
    depth = model(frames)
    assert len(depth) == 3
    for d in depth:
        assert d.shape == (36, 52) and d.dtype == np.float32
        assert np.isfinite(d).all()
        if kind != "metric":
            assert (d > 0).all()  # usable everywhere: zero would read as "no depth"
    if kind == "affine":
        assert all(1.0 <= d.min() and d.max() <= 2.0 for d in depth)  # stored as 1 + Marigold's [0, 1]


def test_affine_depth_maps_linearly_between_near_and_far():
    raw = np.linspace(1.0, 2.0, 101, dtype=np.float32)[None].repeat(4, 0)
    stats = DepthStats("affine")
    observe(stats, raw, label="frame")
    z = DepthConverter.from_stats(stats, 0, near=1.0, far=10.0)(raw, 0)
    lo, hi = np.percentile(raw, [1, 99])
    t = np.clip((raw - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(z, 1.0 + 9.0 * t, rtol=1e-5)  # linear in depth, not in inverse depth
    assert z[0, 0] < z[0, -1]  # bigger = farther


def test_convert_with_a_depth_model_estimates_into_the_shot_and_resumes(tiny, tmp_path, monkeypatch):
    source = frames_folder(tmp_path / "plate", 3)
    shot = tmp_path / "shot"
    spec = ConvertSpec(source=str(source), output_dir=str(shot), depth_model=tiny["depth_anything"], device="cpu",
                       frames=(2, 3), layouts=("sbs",), cloud=False, keep=("filled",))
    stages = []
    result = convert(spec, progress=lambda stage, done, total: stages.append(stage))
    assert "depth model" in stages and result["frames"] == 2
    assert count_files(shot / "estimated_depth", ".exr") == 2  # the selected frames only
    raw = read_depth_file(shot / "estimated_depth" / "000001.exr")
    assert raw.shape == (32, 48) and raw.dtype == np.float32
    meta = json.loads((shot / "shot.json").read_text())
    assert meta["spec"]["depth_model"] == tiny["depth_anything"] and meta["spec"]["depth"] is None
    assert meta["models"]["depth"]["kind"] == "relative"
    assert meta["models"]["depth"]["class"] == "DepthAnythingForDepthEstimation"
    assert meta["versions"]["transformers"]
    for eye in EYES:
        assert count_files(shot / "filled" / eye, ".png") == 2

    # A second run finds every estimated frame: the model is not even loaded.
    def no_model(*args, **kwargs):
        raise AssertionError("the depth model should not load when its frames are all there")

    monkeypatch.setattr(depth_models, "load_depth_model", no_model)
    convert(spec)
    monkeypatch.undo()
    # Another model: depth is estimated again, and everything made from it is remade.
    before = read_depth_file(shot / "depth" / "000001.exr")
    convert(ConvertSpec(**{**spec.to_dict(), "depth_model": tiny["marigold"]}))
    meta = json.loads((shot / "shot.json").read_text())
    assert meta["models"]["depth"]["kind"] == "affine"
    assert not np.array_equal(read_depth_file(shot / "depth" / "000001.exr"), before)


def test_depth_and_depth_model_together_are_refused(tmp_path):
    spec = ConvertSpec(source="x", output_dir=str(tmp_path / "o"), depth="d", depth_model="m")
    with pytest.raises(InputError, match="either --depth"):
        spec.check()


# ------------------------------------------------------------------------------------------ inpainting


def test_tiles_cover_the_frame_and_overlap():
    assert tile_starts(40, 64, 8) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:], strict=False))


def test_tiled_fill_blends_without_seams_and_keeps_covered_pixels():
    h, w = 40, 100
    image = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[5:35, 3:97] = True
    calls = []

    def fill(crops, masks):  # every tile fills with its own flat value: seams would be jumps
        calls.append(crops[0].shape)
        return [np.full(c.shape, 0.1 * len(calls), np.float32) for c in crops]

    out = fill_tiled([image], [mask], fill, tile=32, overlap=16)[0]
    assert out.dtype == np.float32 and out.shape == (h, w, 3)
    assert len(calls) == len(tile_starts(h, 32, 16)) * len(tile_starts(w, 32, 16))
    np.testing.assert_array_equal(out[~mask], 200 / 255.0)  # covered pixels exactly as they were
    row = out[20, 3:97, 0]
    # Neighbouring tiles differ by up to 0.1 x (rows of tiles); across a 16-pixel ramp that is a small step.
    assert np.abs(np.diff(row)).max() < 0.05
    assert np.abs(np.diff(out[5:35, 50, 0])).max() < 0.3


def test_chunks_hold_back_the_overlap_and_crossfade_it():
    calls = []

    def load(n):
        return np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), bool)

    def fill(images, masks):
        calls.append(len(images))
        return [np.full((2, 2, 3), float(len(calls)), np.float32) for _ in images]

    numbers = list(range(1, 11))
    out = list(fill_in_chunks(numbers, load, fill, chunk=4, overlap=2))
    assert [n for n, _ in out] == numbers  # each frame once, in order
    assert calls == [4, 6, 4]  # later chunks carry the previous chunk's last 2 frames
    values = [f[0, 0, 0] for _, f in out]
    # Chunk 1 fills 1.0, chunk 2 fills 2.0: frames 3 and 4 cross-fade 1/3 and 2/3 of the way.
    np.testing.assert_allclose(values[:6], [1, 1, 1 + 1 / 3, 1 + 2 / 3, 2, 2], rtol=1e-6)
    assert np.all(np.abs(np.diff(values)) <= 1 / 3 + 1e-6)


def test_sd_inpainting_fills_only_dropout_in_tiles(tiny):
    model = load_inpaint_model(tiny["sd_inpaint"], CPU, steps=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (36, 70, 3), dtype=np.uint8) for _ in range(2)]
    masks = [np.zeros((36, 70), bool) for _ in range(2)]
    masks[0][10:20, 30:50] = True
    masks[1][0:36, 60:70] = True
    out = fill_tiled(images, masks, model.fill, tile=32, overlap=8)
    for image, mask, filled in zip(images, masks, out, strict=True):
        assert filled.shape == (36, 70, 3) and filled.dtype == np.float32
        np.testing.assert_array_equal(filled[~mask], image[~mask].astype(np.float32) / 255.0)
        assert not np.allclose(filled[mask], image[mask].astype(np.float32) / 255.0)
        assert 0.0 <= filled.min() and filled.max() <= 1.0


def test_wan_vace_fills_a_17_frame_shot_in_overlapping_chunks_and_tiles_keeping_covered_pixels(tiny, tmp_path,
                                                                                               monkeypatch):
    """A video inpainter (Wan VACE: a clip and its mask video) through ``convert --inpaint-model``: chunks of 8
    frames, each carrying the last 2 of the one before, padded to Wan's 4k + 1 frames, and 2 tiles across."""
    from stereoforge.io.images import read_eye, read_mask, read_png8
    from stereoforge.models.inpaint import InpaintModel

    source = frames_folder(tmp_path / "plate", 17, height=48, width=96)
    depth = np.full((17, 48, 96), 4.0, np.float32)
    for n in range(17):  # a near box moving right: holes open beside it in both eyes, in every frame
        depth[n, 12:36, 30 + n:54 + n] = 1.0
    np.save(tmp_path / "depth.npy", depth)
    calls = []
    real_call = InpaintModel.fill

    def counted(self, images, masks):
        calls.append((len(images), images[0].shape[:2]))
        return real_call(self, images, masks)

    monkeypatch.setattr(InpaintModel, "fill", counted)
    shot = tmp_path / "shot"
    code = main(["convert", str(source), "--depth", str(tmp_path / "depth.npy"), "--depth-kind", "metric",
                 "-o", str(shot), "--inpaint-model", tiny["wan_vace"], "--inpaint-steps", "1",
                 "--inpaint-chunk", "8", "--inpaint-overlap", "2", "--inpaint-tile", "64",
                 "--inpaint-tile-overlap", "16", "--interocular", "0.3", "--layout", "sbs", "--no-cloud",
                 "--device", "cpu", "-q"])
    assert code == 0
    # Per eye: chunks of 8, 2 + 8 and 2 + 1 frames, each in 2 tiles (64 px wide, 32 px overlap) of the whole clip.
    assert [count for count, _ in calls] == [8, 8, 10, 10, 3, 3] * 2
    assert {size for _, size in calls} == {(48, 64)}
    assert json.loads((shot / "shot.json").read_text())["spec"]["inpaint_model"] == tiny["wan_vace"]
    model = load_inpaint_model(tiny["wan_vace"], CPU)
    assert model.name == "WanVACEPipeline" and model.whole_clip and model.multiple == 16
    for eye in EYES:
        assert count_files(shot / "filled" / eye, ".png") == 17
        for n in (1, 7, 8, 9, 17):  # frames in one chunk, in the overlap of two, the last one
            rgb, _, _ = read_eye(str(shot / "eyes" / eye / f"{n:06d}.exr"))
            dropout = read_mask(str(shot / "masks" / eye / f"{n:06d}.png"))
            filled = read_png8(str(shot / "filled" / eye / f"{n:06d}.png"))
            assert 0 < dropout.sum() < dropout.size // 4
            np.testing.assert_array_equal(filled[~dropout], to_uint8_srgb(rgb)[~dropout])


# --------------------------------------------------------------------------------------- generate, whole


def test_generate_makes_a_finished_stereo_shot_and_records_how(tiny, tmp_path, capsys):
    shot = tmp_path / "sh010"
    code = main(["generate", "a teddy bear dancing in the snow", "-o", str(shot),
                 "--video-model", tiny["text_to_video_sd"], "--depth-model", tiny["depth_anything"],
                 "--num-frames", "3", "--height", "32", "--width", "48", "--steps", "2", "--seed", "7",
                 "--device", "cpu", "--layout", "sbs,anaglyph", "-q", "--keep", "eyes,masks,filled"])
    assert code == 0
    assert count_files(shot / "generated", ".png") == 3
    assert read_image(shot / "generated" / "000001.png").shape == (32, 48, 3)
    assert count_files(shot / "estimated_depth", ".exr") == 3
    for eye in EYES:
        assert count_files(shot / "eyes" / eye, ".exr") == 3
        assert count_files(shot / "masks" / eye, ".png") == 3
        assert count_files(shot / "filled" / eye, ".png") == 3
    assert (shot / "out" / "video" / "sh010_sbs.mp4").stat().st_size > 0
    assert (shot / "out" / "video" / "sh010_anaglyph.mp4").stat().st_size > 0

    meta = json.loads((shot / "shot.json").read_text())
    gen = meta["generate"]
    assert gen["seed"] == 7 and gen["complete"] and gen["frames"] == 3 and gen["size"] == [48, 32]
    assert gen["settings"]["prompt"] == "a teddy bear dancing in the snow"
    assert gen["call"] == {"prompt": "a teddy bear dancing in the snow", "num_frames": 3, "height": 32,
                           "width": 48, "num_inference_steps": 2, "output_type": "np"}
    assert gen["model"]["class"] == "TextToVideoSDPipeline" and gen["model"]["folder_fingerprint"]
    assert gen["versions"]["diffusers"] and gen["versions"]["torch"]
    assert meta["models"]["video"]["id"] == tiny["text_to_video_sd"]
    assert meta["models"]["depth"]["kind"] == "relative"
    assert meta["spec"]["source"] == str(shot / "generated") and meta["fps"] == 8.0  # zeroscope's frame rate
    assert meta["frames"] == 3 and "seed: 7" in capsys.readouterr().out


def test_generate_from_a_first_frame_with_marigold_and_model_inpainting(tiny, tmp_path):
    first = tmp_path / "first.png"
    write_png(first, np.random.default_rng(5).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    shot = tmp_path / "sh020"
    code = main(["generate", "", "--image", str(first), "-o", str(shot),
                 "--video-model", tiny["ltx_image_to_video"], "--depth-model", tiny["marigold"],
                 "--inpaint-model", tiny["sd_inpaint"], "--inpaint-steps", "1", "--inpaint-chunk", "2",
                 "--inpaint-overlap", "1", "--num-frames", "5", "--height", "32", "--width", "64", "--steps", "2",
                 "--device", "cpu", "--max-parallax", "8", "-q"])
    assert code == 0
    for eye in EYES:
        assert count_files(shot / "filled" / eye, ".png") == 5
        filled = read_image(shot / "filled" / eye / "000003.png")
        assert filled.shape == (32, 64, 3)
    meta = json.loads((shot / "shot.json").read_text())
    assert meta["generate"]["settings"]["image"]["sha1"]
    assert meta["models"]["depth"]["kind"] == "affine"
    assert meta["spec"]["inpaint_model"] == tiny["sd_inpaint"]


def test_generate_resumes_and_a_changed_setting_makes_a_new_take(tiny, tmp_path, monkeypatch):
    shot = tmp_path / "sh030"
    def args(frames: int) -> list[str]:
        return ["generate", "a cat", "-o", str(shot), "--video-model", tiny["text_to_video_sd"],
                "--depth-model", tiny["dpt"], "--num-frames", str(frames), "--height", "32", "--width", "48",
                "--steps", "1", "--device", "cpu", "-q", "--keep", "filled"]

    assert main(args(2)) == 0
    seed = json.loads((shot / "shot.json").read_text())["generate"]["seed"]  # drawn at random, recorded
    from stereoforge.models import video

    def no_model(*a, **k):
        raise AssertionError("the video model should not load when the take is complete")

    monkeypatch.setattr(video, "load_video_model", no_model)
    assert main(args(2)) == 0
    assert json.loads((shot / "shot.json").read_text())["generate"]["seed"] == seed
    monkeypatch.undo()
    (shot / "stale.txt").write_text("from the previous take")
    assert main(args(3)) == 0
    assert not (shot / "stale.txt").exists()
    assert count_files(shot / "generated", ".png") == 3 and count_files(shot / "filled" / "left", ".png") == 3


def test_generate_cancelled_mid_denoising_keeps_a_resumable_shot(tiny, tmp_path):
    from stereoforge.generate import GenerateSpec, generate

    shot = tmp_path / "sh040"
    options = ConvertSpec(source="", output_dir=str(shot), depth_model=tiny["dpt"], device="cpu", seed=1)
    spec = GenerateSpec(prompt="a cat", output_dir=str(shot), video_model=tiny["text_to_video_sd"], num_frames=2,
                        height=32, width=48, steps=3, options=options)
    steps = []
    with pytest.raises(Cancelled, match="denoising step 2"):
        generate(spec, progress=lambda stage, done, total: steps.append(stage) if stage == "generate" else None,
                 cancel=lambda: len(steps) >= 2)
    assert not json.loads((shot / "shot.json").read_text())["generate"]["complete"]
    result = generate(spec)
    assert result["frames"] == 2 and os.path.exists(result["videos"][0])


def test_generate_refuses_depth_files(tiny, tmp_path, capsys):
    code = main(["generate", "a cat", "-o", str(tmp_path / "o"), "--video-model", tiny["text_to_video_sd"],
                 "--depth", str(tmp_path)])
    assert code == 2 and "--depth is for convert" in capsys.readouterr().err


def test_generate_names_its_frame_count_as_the_server_does(tiny, tmp_path, capsys):
    """One name per option: generate's frame count is --num-frames (the server's num_frames); the old --frames N
    is answered in one line that names the new one, and nothing is written."""
    code = main(["generate", "a cat", "-o", str(tmp_path / "o"), "--video-model", tiny["text_to_video_sd"],
                 "--frames", "5"])
    assert code == 2 and "generate's --frames is now --num-frames N" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------- listing


def test_models_lists_what_is_here_by_stage(tiny, tmp_path, capsys):
    for name in ("text_to_video_sd", "ltx_image_to_video", "dpt", "depth_anything_metric", "marigold",
                 "sd_inpaint", "wan_vace"):
        tiny[name]
    found = registry.by_stage(registry.scan([str(tiny.folder)]))
    stages = {stage: {os.path.basename(m["id"]): m["detail"] for m in models} for stage, models in found.items()}
    assert stages["video"]["text_to_video_sd"] == "text-to-video"
    assert stages["video"]["ltx_image_to_video"] == "image-to-video"
    assert stages["depth"]["dpt"] == "relative" and stages["depth"]["depth_anything_metric"] == "metric"
    assert stages["depth"]["marigold"] == "affine"
    assert "sd_inpaint" in stages["inpaint"]
    assert stages["inpaint"]["wan_vace"] == "video"  # a clip and a mask video: no text-to-video model
    assert main(["models", "--dir", str(tiny.folder), "--json"]) == 0
    assert "sd_inpaint" in json.dumps(json.loads(capsys.readouterr().out)["inpaint"])

"""The default inpainter fills holes with background, from other frames first, the same way from frame to frame.

Scenes are made here: a textured far plane (8 m; blue and green, little red) and a red square (2 m), seen by
the centre camera and splatted into the left eye with the real splatter. "The truth" of a hole is the far
plane alone, splatted the same way. Motion is chosen so that shifts are whole pixels.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from stereoforge.camera import Intrinsics
from stereoforge.dev.quality import score_eye, ssim_map
from stereoforge.exemplar import exemplar_estimates
from stereoforge.inpaint import (
    DEFAULT_INPAINTER,
    INPAINTERS,
    BackgroundInpainter,
    EyeFrame,
    FrameList,
    _complete,
    _flow_samples,
    fill_clip,
    nearest_covered_along_rows,
)
from stereoforge.io.images import to_uint8_srgb
from stereoforge.rig import StereoRig, eye_views
from stereoforge.splat import splat_eye
from stereoforge.structure import structure_sides

H, W = 96, 160
FOCAL = 160.0
FAR, NEAR = 8.0, 2.0
VIEWS = eye_views(StereoRig(0.2, 3.0), FOCAL)  # OFFAXIS, pivot CENTER
K = Intrinsics.from_focal(W, H, FOCAL)
RED = (0.9, 0.02, 0.02)
MARGIN = 40  # texture columns beyond the frame on each side, for the camera to pan over


def far_texture(seed: int = 0) -> np.ndarray:
    """Linear RGB (H, W + 2 MARGIN, 3): smooth blobs a few pixels wide, blue and green, red under 0.2."""
    coarse = np.random.default_rng(seed).random((H // 4 + 2, (W + 2 * MARGIN) // 4 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (W + 2 * MARGIN, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return (smooth * np.float32([0.15, 0.7, 0.7]) + np.float32([0.02, 0.15, 0.2])).astype(np.float32)


TEXTURE = far_texture()


def centre_view(camera_x: float = 0.0, square_col: int | None = 60) -> tuple[np.ndarray, np.ndarray]:
    """The centre camera ``camera_x`` metres to the right: the far plane moves ``FOCAL * x / FAR`` columns left
    and the square (at ``square_col`` when the camera is at 0) ``FOCAL * x / NEAR``."""
    far_shift = int(round(FOCAL * camera_x / FAR))
    rgb = TEXTURE[:, MARGIN + far_shift:MARGIN + far_shift + W].copy()
    depth = np.full((H, W), FAR, np.float32)
    if square_col is not None:
        left = square_col - int(round(FOCAL * camera_x / NEAR))
        rgb[30:70, left:left + 36] = RED
        depth[30:70, left:left + 36] = NEAR
    return rgb, depth


def eye(rgb: np.ndarray, depth: np.ndarray, name: str = "left") -> EyeFrame:
    image = splat_eye(torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth)[None], K, VIEWS[name])
    rgba = image.rgba[0].permute(1, 2, 0).numpy()
    alpha = rgba[..., 3]
    straight = np.where(alpha[..., None] > 1e-6, rgba[..., :3] / np.maximum(alpha[..., None], 1e-6), 0.0)
    return EyeFrame(straight.astype(np.float32), alpha, image.depth[0].numpy(), image.dropout[0].numpy())


def truth(camera_x: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The far plane alone in the left eye: (uint8 sRGB, where it has dropout itself)."""
    far = eye(*centre_view(camera_x, square_col=None))
    return to_uint8_srgb(far.rgb), far.dropout


def holes(frame: EyeFrame, truth_dropout: np.ndarray) -> np.ndarray:
    """The dropout the square opened (not the frame border's), where no point landed at all."""
    return frame.dropout & ~truth_dropout & (frame.alpha == 0)


def error(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.abs(a[mask].astype(np.float64) - b[mask]).mean(axis=-1)


def fill_all(frames: list[EyeFrame], name: str = DEFAULT_INPAINTER, **options) -> list[np.ndarray]:
    inpainter = INPAINTERS[name](FrameList(frames), **options)
    return [inpainter.fill(n) for n in range(1, len(frames) + 1)]


# ------------------------------------------------------------------------------------------ background side


def test_a_hole_takes_the_far_planes_colours_not_the_squares():
    frame = eye(*centre_view())
    true, true_dropout = truth()
    hole = holes(frame, true_dropout)
    assert hole.sum() > 100, "the square should open a hole beside it"
    filled = fill_all([frame])[0]
    ours = error(filled, true, hole)
    telea = error(fill_all([frame], "telea")[0], true, hole)
    print(f"mean error in the hole: background {ours.mean():.1f}, telea {telea.mean():.1f} (8-bit levels)")
    assert filled[hole][:, 0].max() < 140, "red from the square was smeared into the hole"
    assert ours.mean() < 0.5 * telea.mean()


# ------------------------------------------------------------------------------------------- other frames


def test_background_seen_in_other_frames_fills_the_hole_when_the_object_moves():
    """The square moves left then right of its place in frame 2: all the background it hides in frame 2 is
    seen in frame 1 or 3, and is copied from there (the camera is still: no resampling)."""
    frames = [eye(*centre_view(square_col=col)) for col in (80, 60, 40)]
    true, true_dropout = truth()
    hole = holes(frames[1], true_dropout)
    filled = fill_all(frames)[1]
    alone = fill_all(frames[1:2])[0]
    err = error(filled, true, hole)
    print(f"frame 2's hole: mean error {err.mean():.2f}, max {err.max():.1f}; "
          f"from frame 2 alone {error(alone, true, hole).mean():.2f}")
    assert err.mean() < 0.5 and err.max() <= 2.0


def test_background_seen_in_other_frames_fills_the_hole_when_the_camera_moves():
    """The camera trucks right 0.1 m a frame: the far plane moves 2 columns a frame, the square 8; the
    background beside the square in frame 2 is seen in frames 1 and 3, at other places."""
    frames = [eye(*centre_view(camera_x=x)) for x in (0.0, 0.1, 0.2)]
    true, true_dropout = truth(0.1)
    hole = holes(frames[1], true_dropout)
    filled = fill_all(frames)[1]
    alone = fill_all(frames[1:2])[0]
    err, err_alone = error(filled, true, hole), error(alone, true, hole)
    print(f"frame 2's hole: mean error {err.mean():.2f}, max {err.max():.1f}; from frame 2 alone "
          f"{err_alone.mean():.2f}")
    assert err.mean() < 1.0 and err.mean() < 0.25 * err_alone.mean()


# -------------------------------------------------------------------------------------------------- stable


def test_a_still_scene_is_filled_identically_in_every_frame():
    frame = eye(*centre_view())
    filled = fill_all([frame] * 4)
    assert frame.dropout.sum() > 100
    for later in filled[1:]:
        np.testing.assert_array_equal(later, filled[0])


def test_a_fill_that_no_frame_saw_follows_the_background():
    """The square and the camera move together (the square is still in the picture, the background slides
    under it): what no frame shows is made up once and then carried along with the background, so frame to
    frame the fill changes as little as the background does."""
    frames, trues = [], []
    for n in range(5):
        x = 0.05 * n
        rgb, depth = centre_view(camera_x=x, square_col=60 + int(round(FOCAL * x / NEAR)))
        frames.append(eye(rgb, depth))
        trues.append(truth(x))
    filled = fill_all(frames)
    alone = [fill_all([f])[0] for f in frames]
    score = score_eye(filled, [t for t, _ in trues], [f.dropout for f in frames])
    score_alone = score_eye(alone, [t for t, _ in trues], [f.dropout for f in frames])
    print(f"change between frames in the holes: {score['dropout']['change']:.2f} (frames alone "
          f"{score_alone['dropout']['change']:.2f}, truth {score['dropout']['true_change']:.2f})")
    assert score["dropout"]["change"] < 0.8 * score_alone["dropout"]["change"]


# -------------------------------------------------------------------------------------------------- border


def border(frame: EyeFrame, truth_dropout: np.ndarray) -> np.ndarray:
    """Dropout at the frame's left or right edge that the far plane alone has too (content entering)."""
    edge = np.zeros_like(frame.dropout)
    edge[:, :8] = edge[:, -8:] = True
    return frame.dropout & truth_dropout & edge & (frame.alpha == 0)


def test_the_frame_border_is_filled_from_inside_and_from_frames_that_saw_beyond_it():
    """Content enters from the side as the camera pans: the border that the eye cannot see in frame 3 is in
    view in frames before or after. With the frame alone, the border continues the picture next to it."""
    xs = (0.0, 0.1, 0.2, 0.3, 0.4)
    frames = [eye(*centre_view(camera_x=x, square_col=None)) for x in xs]
    edge = border(frames[2], frames[2].dropout)
    assert edge.sum() >= H, "the left eye should have dropout along one side of the frame"
    # The far plane wider than the frame, centred where the frame is: the truth beyond the border. The camera
    # at 0.2 m sees texture columns MARGIN + 4 .. MARGIN + 4 + W; the wide view adds ``side`` on each side.
    side = MARGIN - 4
    wide = Intrinsics.from_focal(W + 2 * side, H, FOCAL)
    rgb = TEXTURE[:, MARGIN + 4 - side:MARGIN + 4 + W + side]
    image = splat_eye(torch.from_numpy(rgb).permute(2, 0, 1)[None],
                      torch.full((1, H, W + 2 * side), FAR), wide, eye_views(StereoRig(0.2, 3.0), FOCAL)["left"])
    wide_true = to_uint8_srgb(image.rgba[0, :3].permute(1, 2, 0).numpy())[:, side:side + W]
    filled = fill_all(frames)[2]
    alone = fill_all(frames[2:3])[0]
    err, err_alone = error(filled, wide_true, edge), error(alone, wide_true, edge)
    print(f"border: mean error {err.mean():.2f} from other frames, {err_alone.mean():.2f} from frame 3 alone")
    assert err.mean() < 1.5
    assert err_alone.mean() < 20 and alone[edge].min() > 0  # no black, the neighbouring colours


# -------------------------------------------------------------------------------------------------- cracks


def plain_eye(rgb: np.ndarray, depth: np.ndarray, dropout: np.ndarray) -> EyeFrame:
    alpha = np.where(dropout, 0.0, 1.0).astype(np.float32)
    return EyeFrame(rgb.astype(np.float32), alpha, np.where(dropout, np.inf, depth).astype(np.float32), dropout)


def test_a_crack_in_one_surface_takes_its_neighbours_and_a_thin_disocclusion_the_background():
    # A surface slanted away to the right (3 to 3.3 m), its colour a smooth ramp in sRGB.
    ramp = np.linspace(0.1, 0.9, W, dtype=np.float32)
    srgb = np.stack([ramp, np.full(W, 0.5, np.float32), ramp[::-1]], axis=-1)[None].repeat(H, axis=0)
    from stereoforge.io.images import srgb_to_linear

    rgb = srgb_to_linear(srgb)
    depth = np.broadcast_to(np.linspace(3.0, 3.3, W, dtype=np.float32), (H, W)).copy()
    dropout = np.zeros((H, W), bool)
    dropout[:, 40] = True  # a crack one pixel wide
    dropout[:, 80:82] = True  # and one two pixels wide
    filled = fill_all([plain_eye(rgb, depth, dropout)])[0]
    expected = np.rint(srgb * 255).astype(np.int64)
    assert np.abs(filled[dropout].astype(np.int64) - expected[dropout]).max() <= 2

    # The same thin dropout at a depth edge (near on the left, far on the right) is a disocclusion: it
    # takes the far side, not a mean with the near one.
    depth[:, :41] = 1.5
    dropout[:, 80:82] = False
    filled = fill_all([plain_eye(rgb, depth, dropout)])[0]
    far_side = np.rint(srgb[:, 41] * 255).astype(np.int64)
    assert np.abs(filled[:, 40].astype(np.int64) - far_side).max() <= 2


# ------------------------------------------------------------------------------------------------ streams


def test_fill_clip_streams_a_clip_with_a_bounded_window():
    frames = [eye(*centre_view(camera_x=0.05 * n)) for n in range(12)]
    read = []

    def stream():
        for n, frame in enumerate(frames, start=1):
            read.append(n)
            yield frame

    outputs = []
    for n, filled in enumerate(fill_clip(DEFAULT_INPAINTER, stream(), radius=3), start=1):
        assert len(read) <= n + 3 + 1, f"frame {n} was filled after reading {len(read)} frames"
        outputs.append(filled)
    assert len(outputs) == 12
    np.testing.assert_array_equal(outputs[5], fill_all(frames, radius=3)[5])


def test_every_inpainter_keeps_covered_pixels():
    frame = eye(*centre_view())
    for name in INPAINTERS:
        filled = fill_all([frame], name)[0]
        covered = ~frame.dropout
        np.testing.assert_array_equal(filled[covered], to_uint8_srgb(frame.rgb)[covered], err_msg=name)


def test_a_hole_of_more_pixels_than_remap_takes_in_one_column_is_filled():
    # cv2.remap refuses maps of 32767 rows or more: the hole's pixels (a 4K frame's wide dropout) must not go
    # to it as one column.
    h, w = 256, 320
    coarse = np.random.default_rng(1).random((h // 8, w // 8, 3)).astype(np.float32)
    rgb = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 0.5 + 0.25
    dropout = np.zeros((h, w), bool)
    dropout[20:236, 100:280] = True
    assert dropout.sum() > 32767
    frame = EyeFrame(rgb, np.where(dropout, 0.0, 1.0).astype(np.float32), np.where(dropout, np.inf, 5.0).astype(
        np.float32), dropout)
    filled = fill_all([frame, frame])
    codes = to_uint8_srgb(rgb)
    for out in filled:
        np.testing.assert_array_equal(out[~dropout], codes[~dropout])
        # Filled from the plane around it (both sides of each row), not left black.
        hole_mean, plane_mean = out[dropout].mean(axis=0), codes[~dropout].mean(axis=0)
        assert np.abs(hole_mean - plane_mean).max() < 12, (hole_mean, plane_mean)
        assert out[dropout].min() > 40


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="persistence"):
        BackgroundInpainter(FrameList([]), persistence=2.0)


# ----------------------------------------------------------------------------------------------- pipeline


def test_convert_with_the_default_inpainter_runs_end_to_end_and_resumes(tmp_path):
    from stereoforge.pipeline import convert
    from stereoforge.spec import ConvertSpec

    (tmp_path / "frames").mkdir()
    (tmp_path / "depth").mkdir()
    count = 8
    for n in range(count):  # the camera trucks and the square crosses
        rgb, depth = centre_view(camera_x=0.05 * n, square_col=40 + 6 * n)
        cv2.imwrite(str(tmp_path / "frames" / f"f{n + 1:02d}.png"), to_uint8_srgb(rgb)[..., ::-1])
        np.save(tmp_path / "depth" / f"d{n + 1:02d}.npy", depth)
    shot = tmp_path / "shot"
    spec = ConvertSpec(source=str(tmp_path / "frames"), depth=str(tmp_path / "depth"), output_dir=str(shot),
                       depth_kind="metric", focal_px=FOCAL, interocular=0.2, convergence_distance=3.0,
                       cloud=False, stages=("ingest", "eyes", "inpaint"))
    assert spec.inpaint == DEFAULT_INPAINTER
    convert(spec)
    first = {p.relative_to(shot): p.read_bytes() for p in sorted(shot.glob("filled/*/*.png"))}
    assert len(first) == 2 * count
    # A job stopped after frame 3: the rest is filled again, reading frame 3's fill and the eyes around.
    for eye_name in ("left", "right"):
        for n in range(4, count + 1):
            (shot / "filled" / eye_name / f"{n:06d}.png").unlink()
    convert(spec)
    again = {p.relative_to(shot): p.read_bytes() for p in sorted(shot.glob("filled/*/*.png"))}
    assert again == first


# ----------------------------------------------------------------------------- the quality benchmark's measures


def test_ssim_of_flat_images_is_the_luminance_term_and_one_for_equal_images():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 140 + c1) / (100 ** 2 + 140 ** 2 + c1)
    np.testing.assert_allclose(ssim_map(a, b), expected, rtol=1e-9)
    noisy = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim_map(noisy, noisy), 1.0, atol=1e-9)
    assert ssim_map(noisy, np.clip(noisy.astype(int) + 30, 0, 255)).mean() < 1.0


def test_score_of_the_truth_itself():
    frames = [to_uint8_srgb(eye(*centre_view(camera_x=0.05 * n)).rgb) for n in range(3)]
    masks = [np.zeros((H, W), bool) for _ in frames]
    masks[0][10:20, 10:20] = True
    score = score_eye(frames, frames, masks)
    assert score["all"]["psnr"] == float("inf") and score["all"]["ssim"] == pytest.approx(1.0)
    assert score["all"]["flicker"] == pytest.approx(1.0)
    assert score["dropout_fraction"] == pytest.approx(100 / (H * W) / 3)


def test_exemplar_estimates_continue_the_backgrounds_texture_and_never_copy_the_foreground():
    """Diagonal stripes (period 8) behind a hole 6 pixels wide, with a red object on the hole's other side: the
    estimates, made outwards from the background side, follow the stripes into the hole, where continuing the
    background side's pixel along the row cannot."""
    h, w = 40, 60
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (x + y) / 8.0)
    truth = np.repeat(stripes[..., None], 3, axis=2).astype(np.float32)
    image = truth.copy()
    image[:, 14:20] = RED  # the foreground, left of the hole
    hole = np.zeros((h, w), bool)
    hole[4:36, 20:26] = True
    image[hole] = 0.0
    known = ~hole
    known[:, 14:20] = False  # the foreground is not the hole's background
    rows, cols = np.nonzero(hole)
    order = np.argsort(-cols, kind="stable")  # from the background side (right) inwards
    rows, cols = rows[order], cols[order]
    estimates = exemplar_estimates(image, known, rows, cols, np.ones(rows.size, int))
    assert not np.isnan(estimates).any()
    error = np.abs(estimates - truth[rows, cols]).mean()
    along_row = np.abs(truth[rows, 26] - truth[rows, cols]).mean()  # the background side's neighbour, continued
    assert error < 0.05 < 0.2 < along_row
    assert np.all(np.abs(estimates[:, 0] - estimates[:, 1]) < 0.02)  # grey like the stripes: no red came in


def test_exemplar_candidates_whose_patch_touches_an_unknown_pixel_never_count():
    """Every candidate beyond the hole pixel has an unknown pixel in its patch, where the hole pixel's own patch
    is known (unknown columns every other one, the candidates' centres red between them); the hole pixel has
    15 known patch pixels. No candidate can be compared on all of them, so none matches: no estimate (NaN, the
    background-side fill stays), never a blend of the red centres."""
    h, w, y, x = 30, 40, 15, 10
    image = np.full((h, w, 3), 0.5, np.float32)
    image[:, x + 1::2] = RED  # the candidates' centres
    known = np.ones((h, w), bool)
    known[y, x] = False
    known[:, x + 2::2] = False
    estimate = exemplar_estimates(image, known, np.array([y]), np.array([x]), np.array([1]))
    assert np.isnan(estimate).all()
    known[:, x + 2::2] = True  # the same candidates, compared on all the known pixels: they count
    assert not np.isnan(exemplar_estimates(image, known, np.array([y]), np.array([x]), np.array([1]))).any()


def test_a_hole_whose_background_side_is_a_sliver_moves_as_the_sliver():
    """A hole (columns 20 to 29) between a near surface and a sliver of far background 2 pixels wide (columns 30
    and 31), with a nearer surface beyond it: no pixel 4 to 18 columns beyond the background side lies on the
    sliver's surface, so the sliver's own pixels give the hole's flow (2, 0), not the frame's median (-4, 0),
    the motion of the surfaces around it."""
    h, w = 16, 60
    inv_depth = np.full((h, w), 0.5, np.float32)
    inv_depth[:, :20] = 1.0
    inv_depth[:, 30:32] = 0.1
    holes = np.zeros((h, w), bool)
    holes[4:12, 20:30] = True
    inv_depth[holes] = 0.0
    rows, cols = np.nonzero(holes)
    samples = _flow_samples(rows, cols, np.full(rows.size, 30), inv_depth, holes)
    assert samples.ok.all()
    flow = np.zeros((h, w, 2), np.float32)
    flow[...] = (-4.0, 0.0)
    flow[:, 30:32] = (2.0, 0.0)
    assert np.array_equal(_complete(flow, SimpleNamespace(flow_from=samples)), np.tile([2.0, 0.0], (rows.size, 1)))


def slanted_bars(h: int, w: int, period: float = 16.0) -> np.ndarray:
    """sRGB (h, w, 3) in [0, 1]: bars at 45 degrees, light and dark, as a lattice's (a smooth profile)."""
    y, x = np.mgrid[0:h, 0:w]
    bars = 0.5 + 0.35 * np.sin(2 * np.pi * (x + y) / period)
    return np.stack([bars, 0.9 * bars, 0.7 * bars], axis=-1).astype(np.float32)


def test_a_strip_at_the_frame_edge_continues_slanted_structure_not_the_row():
    """A far plane of slanted bars with a strip at the frame's right edge that no point reached (content the
    source camera never saw): the fill continues the bars along their slant, which continuing each row's last
    covered pixel along the row (and Telea's fill) cannot."""
    from stereoforge.io.images import srgb_to_linear

    srgb = slanted_bars(H, W)
    dropout = np.zeros((H, W), bool)
    dropout[:, W - 10:] = True
    frame = plain_eye(srgb_to_linear(srgb), np.full((H, W), FAR, np.float32), dropout)
    truth = np.rint(srgb * 255.0)
    filled = fill_all([frame])[0]
    along_row = np.repeat(truth[:, W - 11:W - 10], W, axis=1)  # each row's last covered pixel, continued
    telea = fill_all([frame], "telea")[0]
    scored = dropout.copy()
    scored[:8] = scored[-8:] = False  # where the slant leads out of the frame, nothing is known
    err, err_row, err_telea = (error(x, truth, scored).mean() for x in (filled, along_row, telea))
    print(f"edge strip of slanted bars: mean error {err:.1f}, along the row {err_row:.1f}, telea {err_telea:.1f}")
    assert err < 0.6 * min(err_row, err_telea)
    assert np.array_equal(filled[~dropout], to_uint8_srgb(frame.rgb)[~dropout])


def test_structure_sides_follow_the_slant_and_stay_in_the_depth_band():
    """Each strip pixel is continued from where the isophote through it meets the covered pixels; where that
    side lies on a nearer surface, from its own row's side."""
    srgb = slanted_bars(H, W)
    grey = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY)
    holes = np.zeros((H, W), bool)
    holes[:, W - 10:] = True
    inv_depth = np.where(holes, 0.0, 1.0 / FAR).astype(np.float32)
    rows, cols = np.nonzero(holes[20:70]) + np.array([[20], [0]])
    side = np.full(rows.size, W - 11)
    nearest = nearest_covered_along_rows(holes)
    traced, sides = structure_sides(grey, inv_depth, holes, nearest, rows, cols, side)
    # Bars at 45 degrees (x + y constant): the pixel d columns into the strip continues row y + d.
    assert np.array_equal(traced, rows + (cols - side)) and np.all(sides == side)
    inv_depth[45:, W - 11] = 1.0 / NEAR  # from row 45 down, the side is a nearer surface
    traced, sides = structure_sides(grey, inv_depth, holes, nearest, rows, cols, side)
    own = inv_depth[rows, side]
    assert np.all(np.abs(inv_depth[traced, sides] - own) <= 0.15 * own)
    crossing = (rows < 45) & (rows + cols - side >= 45)
    assert crossing.any() and np.array_equal(traced[crossing], rows[crossing])
    assert np.array_equal(traced[~crossing], (rows + cols - side)[~crossing])

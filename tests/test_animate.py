"""Animation in standard/relative/avd modes, its input and output files, and checkpoint entries."""

from __future__ import annotations

import copy
import logging
from functools import cache

import numpy as np
import pytest
import torch

from data_prep.video import list_frames, read_frame, read_video
from methods.engine import checkpoints
from methods.engine.animate import (
    AnimationError,
    animate_file,
    animate_frames,
    open_driving,
    read_source,
    write_animation,
)
from methods.models.avd import build_avd_network
from methods.motion.relative import convex_hull_area, movement_scale
from methods.registry import build_model, list_methods
from tests.conftest import REPO, TINY_FOMM

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def method_config(method: str) -> dict:
    from methods.engine.config import load_method_config

    path = REPO / f"methods/configs/{method}/synthetic.yaml"
    if not path.is_file():
        pytest.skip(f"{method} has no synthetic.yaml config")
    return load_method_config(path, overrides=TINY_FOMM if method == "fomm" else None)


@pytest.fixture(scope="module")
def fomm_checkpoint(tmp_path_factory) -> tuple:
    """A tiny random FOMM checkpoint with an avd_network entry, and one without."""
    config = copy.deepcopy(method_config("fomm"))
    torch.manual_seed(0)
    model = build_model(config, with_losses=False).eval()
    folder = tmp_path_factory.mktemp("ckpt")
    plain = folder / "checkpoint.pt"
    checkpoints.save(plain, {**checkpoints.model_state(model), "animbench": {"config": config}})
    with_avd = folder / "checkpoint_avd.pt"
    avd = build_avd_network(model, {"id_bottle_size": 8, "pose_bottle_size": 8})
    checkpoints.save(with_avd, {**checkpoints.read(plain), "avd_network": avd.state_dict()})
    return plain, with_avd


@pytest.fixture(scope="module")
def driving_video(tiny_dataset):
    """A test video of the synthetic dataset (a folder of PNG frames) and its frame count."""
    video = sorted((tiny_dataset / "test").iterdir())[0]
    return video, len(list_frames(video))


def source_image(tiny_dataset, tmp_path):
    """The first frame of a training video (another identity than the test video), as a PNG."""
    video = sorted((tiny_dataset / "train").iterdir())[0]
    path = tmp_path / "source.png"
    path.write_bytes(list_frames(video)[0].read_bytes())
    return path


@pytest.mark.parametrize(("mode", "out_name"), [("standard", "out.mp4"), ("relative", "out.gif"), ("avd", "frames")])
def test_modes_write_readable_outputs(fomm_checkpoint, driving_video, tiny_dataset, tmp_path, mode, out_name):
    video, num_frames = driving_video
    out = tmp_path / out_name
    count = animate_file(fomm_checkpoint[1], source_image(tiny_dataset, tmp_path), video, out,
                         mode=mode, batch_size=3, progress=False)
    assert count == num_frames
    back = open_driving(out, (64, 64))
    frames = list(back.frames)
    assert len(frames) == num_frames
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_mp4_driving_round_trip_and_cli(fomm_checkpoint, driving_video, tiny_dataset, tmp_path, capsys):
    """An mp4 driving video (written by write_animation) drives the CLI end to end."""
    from animbench.cli import main

    video, num_frames = driving_video
    mp4 = tmp_path / "driving.mp4"
    assert write_animation(mp4, read_video(video), fps=10) == num_frames
    decoded = open_driving(mp4, (64, 64))
    assert decoded.fps == pytest.approx(10)
    frames = np.stack(list(decoded.frames))
    assert frames.shape == (num_frames, 64, 64, 3)
    # H.264 is lossy: close to the PNG frames on average, not equal.
    assert np.abs(frames.astype(float) - read_video(video)).mean() < 8
    out = tmp_path / "anim.mp4"
    argv = ["animate", "--checkpoint", str(fomm_checkpoint[0]), "--source", str(source_image(tiny_dataset, tmp_path)),
            "--driving", str(mp4), "--mode", "relative", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    assert f"{num_frames} frames written" in capsys.readouterr().out
    assert len(list(open_driving(out, (64, 64)).frames)) == num_frames


def test_batch_size_does_not_change_the_result(fomm_checkpoint, driving_video, tiny_dataset, tmp_path):
    model, _ = checkpoints.load_model(fomm_checkpoint[1])
    video, _ = driving_video
    source = read_source(source_image(tiny_dataset, tmp_path), (64, 64))
    driving = list(read_video(video))
    for mode in ("standard", "relative", "avd"):
        one = np.stack(list(animate_frames(model, source, driving, mode=mode, batch_size=1)))
        many = np.stack(list(animate_frames(model, source, driving, mode=mode, batch_size=4)))
        # uint8 truncation can turn float noise into one level, never more.
        assert np.abs(one.astype(int) - many).max() <= 1, mode


@pytest.mark.parametrize("method", list_methods())
def test_relative_with_unmoving_driving_reproduces_the_source_motion(method):
    """Driving frames equal to the initial driving frame: relative motion is the source's own."""
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(method_config(method)), with_losses=False).eval()
    height, width, _ = method_config(method)["dataset_params"]["frame_shape"]
    generator = torch.Generator().manual_seed(0)
    source, driving = (torch.rand(1, 3, height, width, generator=generator) for _ in range(2))
    with torch.no_grad():
        motion_source, motion_driving = model.encode(source), model.encode(driving)
        try:
            for adapt in (False, True):
                relative = model.relative_motion(motion_source, motion_driving, motion_driving, adapt_movement_scale=adapt)
                for key in ("value", "jacobian", "shift", "affine", "fg_kp"):
                    if key in motion_source:
                        torch.testing.assert_close(relative[key], motion_source[key], rtol=1e-4, atol=1e-4)
        except NotImplementedError:
            pytest.xfail(f"{method} does not implement relative_motion yet")


def test_relative_animation_of_an_unmoving_video_renders_the_source_pose(fomm_checkpoint, tiny_dataset, tmp_path):
    model, _ = checkpoints.load_model(fomm_checkpoint[0])
    source = read_source(source_image(tiny_dataset, tmp_path), (64, 64))
    still = read_frame(list_frames(sorted((tiny_dataset / "test").iterdir())[0])[0])
    frames = np.stack(list(animate_frames(model, source, [still] * 3, mode="relative", batch_size=2)))
    with torch.no_grad():
        source_t = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255
        motion = model.encode(source_t)
        expected = model.generate(source_t, motion, motion)["prediction"]
    expected = (255 * expected[0].permute(1, 2, 0).clamp(0, 1)).to(torch.uint8).numpy()
    for frame in frames:
        assert np.abs(frame.astype(int) - expected).max() <= 1


def test_convex_hull_area_and_movement_scale():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [0.5, 1.5]])
    assert convex_hull_area(square) == pytest.approx(4.0)
    assert convex_hull_area(np.array([[0, 0], [3, 0], [0, 4], [1, 1]])) == pytest.approx(6.0)
    assert convex_hull_area(np.array([[0, 0], [1, 1], [2, 2]])) == 0.0  # collinear
    points = np.random.default_rng(0).normal(size=(40, 2))
    scipy_spatial = pytest.importorskip("scipy.spatial")
    assert convex_hull_area(points) == pytest.approx(scipy_spatial.ConvexHull(points).volume, rel=1e-9)
    initial = torch.from_numpy(points).float()[None]
    scale = movement_scale(2 * initial, initial)  # areas 4x apart: displacements scale by 2
    torch.testing.assert_close(scale, torch.full((1, 1, 1), 2.0))


def test_source_is_centre_cropped_then_resized(tmp_path):
    from PIL import Image

    image = np.zeros((60, 100, 3), np.uint8)
    image[:, :20] = (255, 0, 0)  # left and right margins fall outside the centre square
    image[:, 80:] = (255, 0, 0)
    image[:, 20:80] = (0, 0, 200)
    Image.fromarray(image).save(tmp_path / "wide.png")
    fitted = read_source(tmp_path / "wide.png", (64, 64))
    assert fitted.shape == (64, 64, 3)
    assert fitted[..., 0].max() == 0 and fitted[..., 2].min() >= 199


@pytest.mark.parametrize("kind", ["empty_file", "garbage", "missing", "empty_folder"])
def test_unreadable_or_empty_driving_video_is_a_one_line_error(kind, fomm_checkpoint, tiny_dataset, tmp_path, capsys):
    from animbench.cli import main

    driving = tmp_path / ("frames" if kind == "empty_folder" else "driving.mp4")
    if kind == "empty_file":
        driving.write_bytes(b"")
    elif kind == "garbage":
        driving.write_bytes(b"not a video" * 100)
    elif kind == "empty_folder":
        driving.mkdir()
    with pytest.raises(AnimationError, match=str(driving)):
        open_driving(driving, (64, 64))
    argv = ["animate", "--checkpoint", str(fomm_checkpoint[0]), "--source", str(source_image(tiny_dataset, tmp_path)),
            "--driving", str(driving), "--out", str(tmp_path / "out.mp4"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("animbench animate: error: driving video") and "\n" not in err
    assert not (tmp_path / "out.mp4").exists()


def test_avd_mode_without_avd_network_names_the_fix(fomm_checkpoint, driving_video, tiny_dataset, tmp_path):
    with pytest.raises(AnimationError, match="no avd_network entry.*animbench train-avd"):
        animate_file(fomm_checkpoint[0], source_image(tiny_dataset, tmp_path), driving_video[0],
                     tmp_path / "out.gif", mode="avd", progress=False)


def test_released_layout_checkpoint_names_the_ignored_entries(fomm_checkpoint, tmp_path, caplog):
    """A reference-layout file (no animbench entry, a discriminator, optimizers) loads with the
    method config, and the entries it does not use are named in one warning."""
    payload = checkpoints.read(fomm_checkpoint[1])
    config = payload.pop("animbench")["config"]
    payload.update({"discriminator": {"down_blocks.0.conv.weight": torch.zeros(1)},
                    "optimizer_generator": {"state": {}}, "epoch": 99})
    path = tmp_path / "vox-cpk.pth.tar"
    checkpoints.save(path, payload)
    with caplog.at_level(logging.INFO, logger="methods.engine.checkpoints"):
        model, _ = checkpoints.load_model(path, config)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "discriminator" in warnings[0].message and "optimizer_generator" in warnings[0].message
    assert "avd_network" not in warnings[0].message and model.avd_network is not None

    caplog.clear()
    del payload["discriminator"]
    checkpoints.save(path, payload)
    with caplog.at_level(logging.INFO, logger="methods.engine.checkpoints"):
        checkpoints.load_model(path, config)
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # only bookkeeping: quiet


def test_truncated_or_foreign_entries_name_the_keys(fomm_checkpoint, tmp_path):
    payload = checkpoints.read(fomm_checkpoint[1])
    config = payload["animbench"]["config"]
    model = build_model(config, with_losses=False)
    truncated = {**payload, "kp_detector": dict(payload["kp_detector"])}
    dropped = sorted(truncated["kp_detector"])[0]
    del truncated["kp_detector"][dropped]
    with pytest.raises(checkpoints.CheckpointError, match=f"kp_detector.*1 missing keys: {dropped}"):
        checkpoints.load_model_state(model, truncated)
    foreign = {**payload, "generator": {**payload["generator"], "inpainting.weight": torch.zeros(1)}}
    with pytest.raises(checkpoints.CheckpointError, match="1 unexpected keys: inpainting.weight"):
        checkpoints.load_model_state(model, foreign)
    bad_avd = {**payload, "avd_network": {"id_encoder.0.weight": torch.zeros(3, 3)}}
    with pytest.raises(checkpoints.CheckpointError, match="avd_network does not load"):
        checkpoints.load_model_state(model, bad_avd)
    with pytest.raises(checkpoints.CheckpointError, match="not a state_dict"):
        checkpoints.load_model_state(model, {**payload, "generator": [1, 2]})


@pytest.mark.parametrize("method", list_methods())
def test_every_method_animates_in_every_mode(method):
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(method_config(method)), with_losses=False).eval()
    height, width, _ = method_config(method)["dataset_params"]["frame_shape"]
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    driving = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3)]
    try:
        model.avd_network = build_avd_network(model, {"id_bottle_size": 8, "pose_bottle_size": 8}).eval()
        for mode in ("standard", "relative", "avd"):
            frames = list(animate_frames(model, source, driving, mode=mode, batch_size=2))
            assert len(frames) == 3 and all(f.shape == (height, width, 3) for f in frames), mode
    except NotImplementedError as err:
        pytest.xfail(f"{method} lacks an animation hook: {err}")

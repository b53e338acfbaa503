"""Reconstruction per the protocol: source = frame 0, every frame driven, stacked uint8 PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from data_prep.manifest import available_videos
from data_prep.video import read_stacked_png, read_video
from methods.engine import checkpoints
from methods.engine.reconstruct import reconstruct_dataset, reconstruct_video
from methods.registry import build_model


def _saved_model(config, path, seed=0):
    torch.manual_seed(seed)
    model = build_model(config).eval()
    checkpoints.save(path, {**checkpoints.model_state(model), "animbench": {"config": config}})
    return model


def test_reconstruct_video_is_independent_of_batching(tiny_fomm_config):
    model = build_model(tiny_fomm_config).eval()
    frames = torch.rand(5, 3, 64, 64)
    a = reconstruct_video(model, frames, batch_size=2)
    b = reconstruct_video(model, frames, batch_size=16)
    assert a.shape == frames.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert a.min() >= 0 and a.max() <= 1


def test_reconstruct_dataset_writes_stacked_pngs_and_resumes(tiny_dataset, tiny_fomm_config, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    model = _saved_model(tiny_fomm_config, ckpt)
    out = tmp_path / "reconstruction"
    index = pd.read_csv(reconstruct_dataset(model, ckpt, tiny_dataset, out, (64, 64), progress=False))
    videos = available_videos(tiny_dataset, "test")
    assert index["video"].tolist() == videos
    for video, frames in zip(index["video"], index["frames"], strict=True):
        truth = read_video(tiny_dataset / "test" / video)
        stacked = read_stacked_png(out / f"{video}.png", frame_width=64)
        assert stacked.shape == truth.shape and frames == len(truth)
    expected = reconstruct_video(model, torch.from_numpy(read_video(tiny_dataset / "test" / videos[0])).permute(0, 3, 1, 2).float() / 255)
    # The PNG holds truncated 255*x: a float difference of one ulp between the two paths
    # (loader vs. direct conversion) may move a value across an integer, so allow one level.
    written = read_stacked_png(out / f"{videos[0]}.png", 64).astype(np.int16)
    direct = (expected.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8).astype(np.int16)
    assert np.abs(written - direct).max() <= 1

    # A rerun with the same checkpoint keeps finished videos (resume after a crash) ...
    marker = out / f"{videos[0]}.png"
    marker.write_bytes(marker.read_bytes())
    before = marker.stat().st_mtime_ns
    reconstruct_dataset(model, ckpt, tiny_dataset, out, (64, 64), progress=False)
    assert marker.stat().st_mtime_ns == before
    # ... but a new checkpoint (other weights, so other bytes) invalidates them.
    _saved_model(tiny_fomm_config, ckpt, seed=1)
    reconstruct_dataset(model, ckpt, tiny_dataset, out, (64, 64), progress=False)
    assert marker.stat().st_mtime_ns != before


@pytest.mark.parametrize("method", ["fomm", "mraa", "tpsmm", "cpab"])
def test_the_source_encoded_once_gives_what_one_frame_per_call_gives(method):
    """Our reconstruction (batched, source features computed once per video) equals the
    reference's structure: the source's keypoints once, then one driving frame per call, the
    generator re-encoding the source every time."""
    from methods.engine.config import load_method_config

    torch.manual_seed(0)
    model = build_model(load_method_config(f"methods/configs/{method}/synthetic.yaml"), with_losses=False).eval()
    assert model.encode_source(torch.rand(1, 3, 64, 64)) is not None  # every method caches something
    frames = torch.rand(6, 3, 64, 64)
    ours = reconstruct_video(model, frames, batch_size=4)
    with torch.no_grad():
        motion_source = model.encode(frames[:1])
        loop = torch.cat([
            model.generate(frames[:1], motion_source, model.encode(frames[t : t + 1]))["prediction"].clamp(0, 1)
            for t in range(len(frames))
        ])
    torch.testing.assert_close(ours, loop, atol=2e-4, rtol=0)


def test_the_fast_nearest_upsampling_is_interpolate_value_for_value_and_gradient_for_gradient():
    import torch.nn.functional as F

    from methods.blocks import upsample_nearest_2x

    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 3, requires_grad=True)
    grad = torch.randn(2, 5, 14, 6)
    ours, theirs = upsample_nearest_2x(x), F.interpolate(x, scale_factor=2.0, mode="nearest")
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(theirs, x, grad)[0])
    last = x.detach().contiguous(memory_format=torch.channels_last)
    assert upsample_nearest_2x(last).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("method", ["fomm", "mraa", "tpsmm", "cpab"])
def test_channels_last_reconstruction_equals_the_contiguous_one(method):
    """The CPU's layout (measured faster, docs/speed.md) changes convolution kernels, not values."""
    from methods.engine.config import load_method_config

    torch.manual_seed(0)
    model = build_model(load_method_config(f"methods/configs/{method}/synthetic.yaml"), with_losses=False).eval()
    frames = torch.rand(5, 3, 64, 64)
    contiguous = reconstruct_video(model, frames, batch_size=4)
    model.to(memory_format=torch.channels_last)
    last = reconstruct_video(model, frames.contiguous(memory_format=torch.channels_last), batch_size=4)
    torch.testing.assert_close(last, contiguous, atol=2e-4, rtol=0)


def test_reconstruct_dataset_runs_in_the_devices_memory_layout(tiny_dataset, tiny_fomm_config, tmp_path):
    from methods.engine.reconstruct import memory_format

    assert memory_format("cpu") == torch.channels_last and memory_format("cuda") == torch.contiguous_format
    ckpt = tmp_path / "checkpoint.pt"
    model = _saved_model(tiny_fomm_config, ckpt)
    reconstruct_dataset(model, ckpt, tiny_dataset, tmp_path / "out", (64, 64), progress=False)
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_frames_per_call_bounds_the_driving_pixels_of_a_call():
    from methods.engine.reconstruct import frames_per_call

    assert frames_per_call((64, 64), "cpu") == 16 and frames_per_call((256, 256), "cpu") == 1
    assert frames_per_call((384, 384), "cpu") == 1 and frames_per_call((128, 128), "cpu") == 4
    assert frames_per_call((256, 256), "cuda") == 16

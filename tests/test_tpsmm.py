"""TPSMM: closed-form TPS, networks, schedules, ablation switches, checkpoint layout, training."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from methods.dense_motion.transform_based import DenseMotionNetwork, dropout_softmax
from methods.engine import checkpoints
from methods.engine.config import apply_overrides, load_method_config
from methods.losses.background import background_loss
from methods.losses.warp import warp_loss
from methods.models.tpsmm import GRAD_CLIP_MAX_NORM, TPSMM, dropout_probability
from methods.motion.tps import fit_tps, random_tps
from methods.registry import build_model, list_methods

CONFIG_DIR = Path(__file__).resolve().parents[1] / "methods" / "configs" / "tpsmm"
STATE_DICT_FACTS = Path(__file__).resolve().parent / "data" / "tpsmm_vox256_state_dict.json"
ABLATIONS = ["tps_only", "dropout", "multi_mask", "bg_loss", "warp_loss"]

#: Shrinks any TPSMM config to a network that runs on 32x32 inputs in well under a second.
TINY = {
    "model_params.common_params.num_tps": 2,
    "model_params.generator_params.block_expansion": 4,
    "model_params.generator_params.max_features": 16,
    "model_params.dense_motion_params.block_expansion": 4,
    "model_params.dense_motion_params.max_features": 16,
    "model_params.dense_motion_params.num_blocks": 2,
    "model_params.kp_detector_params": {"width": 4},
    "model_params.bg_predictor_params": {"width": 4},
    "train_params.scales": [1, 0.5],
    "train_params.perceptual_loss": "pixel_pyramid",
}


def tiny_config(name: str = "synthetic") -> dict:
    return load_method_config(CONFIG_DIR / f"{name}.yaml", overrides=TINY)


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)


def _model(name: str = "synthetic", epoch: int = 0, seed: int = 0) -> TPSMM:
    torch.manual_seed(seed)
    model = build_model(tiny_config(name))
    model.set_epoch(epoch)
    model.rng = torch.Generator().manual_seed(seed)
    return model


# ----------------------------------------------------------------------------- TPS


def test_tps_exact_at_control_points_batched() -> None:
    gen = torch.Generator().manual_seed(0)
    control = torch.rand(3, 4, 5, 2, generator=gen, dtype=torch.float64) * 2 - 1
    targets = torch.rand(3, 4, 5, 2, generator=gen, dtype=torch.float64) * 2 - 1
    tps = fit_tps(control, targets)
    assert tps.affine.shape == (3, 4, 2, 3) and tps.weights.shape == (3, 4, 5, 2)
    assert torch.allclose(tps.warp_points(control), targets, atol=1e-9)
    # the reference's Tikhonov term (0.01 I) smooths the fit but stays close to the targets
    smooth = fit_tps(control, targets, regularization=0.01).warp_points(control)
    assert (smooth - targets).abs().max() < 0.1


def test_tps_reproduces_affine_maps_everywhere() -> None:
    gen = torch.Generator().manual_seed(1)
    control = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * 2 - 1
    affine = torch.tensor([[1.1, 0.2, 0.1], [-0.1, 0.9, -0.2]], dtype=torch.float64)
    tps = fit_tps(control, control @ affine[:, :2].T + affine[:, 2])
    assert tps.weights.abs().max() < 1e-8
    points = torch.rand(2, 7, 2, generator=gen, dtype=torch.float64) * 2 - 1
    assert torch.allclose(tps.warp_points(points), points @ affine[:, :2].T + affine[:, 2], atol=1e-9)


def test_tps_grid_matches_warp_points_and_is_differentiable() -> None:
    gen = torch.Generator().manual_seed(2)
    control = (torch.rand(1, 5, 2, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()
    targets = (torch.rand(1, 5, 2, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()
    tps = fit_tps(control, targets)
    grid = tps.grid((3, 4))
    assert grid.shape == (1, 3, 4, 2)
    corner = torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]], dtype=torch.float64)
    assert torch.allclose(grid[0, [0, -1], [0, -1]], tps.warp_points(corner)[0])
    assert torch.autograd.gradcheck(
        lambda c, t: fit_tps(c, t).warp_points(corner), (control, targets)
    )


def test_random_tps_with_zero_sigmas_is_identity() -> None:
    tps = random_tps(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    points = torch.rand(2, 6, 2) * 2 - 1
    assert torch.allclose(tps.warp_points(points), points, atol=1e-6)
    a = random_tps(2, 0.05, 0.005, 5, generator=torch.Generator().manual_seed(4))
    b = random_tps(2, 0.05, 0.005, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.affine, b.affine) and torch.equal(a.weights, b.weights)
    assert not torch.allclose(a.warp_points(points), points, atol=1e-3)


# ----------------------------------------------------------------------------- dense motion


def test_dropout_softmax_drops_foreground_only_and_normalises() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 6, 3, 3, generator=gen)
    out = dropout_softmax(logits, 0.4, torch.Generator().manual_seed(1))
    # the reference's 1e-6 in the partition is relative to the kept mass, which can be small
    assert torch.allclose(out.sum(1), torch.ones(400, 3, 3), atol=1e-3)
    assert (out[:, 0] > 0).all()  # the background is never dropped
    dropped = (out[:, 1:].amax(dim=(2, 3)) == 0).float().mean().item()
    assert 0.3 < dropped < 0.5  # each foreground transform is dropped with probability p
    assert torch.allclose(dropout_softmax(logits, 0.0), torch.softmax(logits, 1), atol=1e-5)


def test_dense_motion_shapes_and_identity_for_equal_keypoints() -> None:
    net = DenseMotionNetwork(4, 2, 16, num_tps=2, num_channels=3, scale_factor=0.25)
    g = torch.Generator().manual_seed(0)
    kp = {"fg_kp": torch.rand(2, 10, 2, generator=g) * 1.6 - 0.8}
    source = torch.rand(2, 3, 32, 32, generator=g)
    out = net(source, kp, kp)
    assert out["deformation"].shape == (2, 8, 8, 2)
    assert out["contribution_maps"].shape == (2, 3, 8, 8)
    assert out["deformed_source"].shape == (2, 3, 3, 8, 8)
    assert [m.shape[-1] for m in out["occlusion_map"]] == [4, 8, 16, 32]
    # The flow is a softmax (convex) combination of the transforms' grids: when every
    # transform is the identity, so is the flow, whatever the weights. (With equal keypoints
    # the TPS itself is only near the identity: the reference's 0.01 regulariser bends it, by
    # up to ~0.3 for clustered random keypoints, so that is not asserted.)
    from methods.blocks import make_coordinate_grid

    identity = make_coordinate_grid((8, 8)).expand(2, 2, 8, 8, 2)
    still = net(source, kp, kp, foreground_grids=identity)
    assert (still["deformation"] - make_coordinate_grid((8, 8))).abs().max() < 1e-5
    single = DenseMotionNetwork(4, 2, 16, num_tps=2, num_channels=3, scale_factor=0.25, multi_mask=False)
    assert len(single(torch.rand(2, 3, 32, 32), kp, kp)["occlusion_map"]) == 1


def test_dense_motion_accepts_given_transform_grids() -> None:
    """Another motion model (CPAB) can supply its own K sampling grids instead of the TPS ones."""
    from methods.blocks import make_coordinate_grid

    net = DenseMotionNetwork(4, 2, 16, num_tps=2, num_channels=3, scale_factor=0.25)
    kp = {"fg_kp": torch.rand(1, 10, 2) * 2 - 1}
    source = torch.rand(1, 3, 32, 32)
    grids = (make_coordinate_grid((8, 8)) + torch.tensor([0.25, 0.0])).expand(1, 2, 8, 8, 2)
    out = net(source, kp, kp, foreground_grids=grids)
    expected = torch.nn.functional.grid_sample(net.down(source), grids[:, 0], align_corners=True)
    for k in (1, 2):
        assert torch.allclose(out["deformed_source"][:, k], expected, atol=1e-6)
    assert out["deformation"].shape == (1, 8, 8, 2)


# ----------------------------------------------------------------------------- schedules, losses


def test_dropout_ramp_schedule_matches_reference_configs() -> None:
    taichi = load_method_config(CONFIG_DIR / "taichi.yaml")["train_params"]
    assert [dropout_probability(e, taichi) for e in (0, 5, 10, 20, 34, 35, 99)] == pytest.approx(
        [0.0, 0.35, 0.7, 0.7, 0.7, None, None]
    )
    vox = load_method_config(CONFIG_DIR / "vox.yaml")["train_params"]
    assert [dropout_probability(e, vox) for e in (0, 5, 6, 35)] == pytest.approx([0.1, 0.25, 0.28, None])
    model = _model(epoch=1)
    expected = dropout_probability(1, model.train_params)
    assert model.train().dropout_p == pytest.approx(expected) and expected > 0
    assert model.eval().dropout_p is None  # inference never drops transforms


def test_first_epoch_at_probability_zero_takes_the_dropout_path_as_the_reference(images) -> None:
    """taichi/ted (``dropout_startp: 0``): at epoch 0 the reference still runs its dropout
    softmax - one random draw per transform, 1e-6 in the partition - not ``F.softmax``."""
    model = _model("taichi", epoch=0)
    assert model.train().dropout_p == 0.0  # the dropout path, at probability 0
    model.set_epoch(35)
    assert model.dropout_p is None  # from dropout_epoch on: a plain softmax

    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(5)
    at_zero = dropout_softmax(logits, 0.0, gen)
    # the same stream position as after drawing torch.rand(B, K+1) from a fresh generator
    after = torch.Generator().manual_seed(5)
    torch.rand(2, 3, generator=after)
    assert torch.equal(gen.get_state(), after.get_state())
    exp = (logits - logits.amax(1, keepdim=True)).exp()
    assert torch.allclose(at_zero, exp / (exp.sum(1, keepdim=True) + 1e-6), rtol=0, atol=1e-7)
    assert not torch.equal(at_zero, torch.softmax(logits, 1))

    net = model.dense_motion_network
    source = images[0]
    kp = model.kp_detector(source)
    for p, draws in ((0.0, True), (None, False)):
        gen = torch.Generator().manual_seed(0)
        state = gen.get_state()
        net(source, kp_driving=kp, kp_source=kp, dropout_p=p, generator=gen)
        assert (not torch.equal(gen.get_state(), state)) is draws


def test_background_and_warp_losses() -> None:
    a = torch.tensor([[1.1, 0.1, 0.2], [0.0, 0.9, -0.1], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    assert background_loss(a, torch.linalg.inv(a)).item() == pytest.approx(0.0, abs=1e-6)
    assert background_loss(a, a).item() > 0.01
    fine, coarse = torch.rand(1, 4, 8, 8), torch.rand(1, 8, 4, 4)
    assert warp_loss([fine, coarse], [coarse, fine]).item() == 0.0
    assert warp_loss([fine, coarse], [coarse, fine + 0.5]).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="as many"):
        warp_loss([fine], [coarse, fine])


# ----------------------------------------------------------------------------- model


def test_registered_and_forward_backward(images) -> None:
    assert "tpsmm" in list_methods()
    model = _model().train()
    losses, generated = model(*images)
    assert set(losses) == {"perceptual", "equivariance_value", "warp_loss", "bg"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert generated["prediction"].shape == (2, 3, 32, 32)
    assert 0 <= generated["prediction"].min() and generated["prediction"].max() <= 1
    sum(losses.values()).backward()
    for key in model.checkpoint_keys:
        grads = [p.grad for p in getattr(model, key).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), key
    assert set(model.optimizer_groups()) == {"generator"}
    assert sum(p.numel() for p in model.optimizer_groups()["generator"]) == sum(
        p.numel() for p in model.parameters()
    )


def test_tps_is_fitted_and_applied_in_float32_under_fp16_autocast() -> None:
    # The spline weights come from an ill-conditioned inverse: in float16 (autocast's matmul)
    # they overflow and TPSMM's losses were NaN (found by the GPU check's AMP step on CPU).
    torch.manual_seed(0)
    control = torch.rand(4, 5, 2) * 2 - 1
    targets = control + 0.1 * torch.randn(4, 5, 2)
    with torch.autocast("cpu", dtype=torch.float16):
        tps = fit_tps(control.half(), targets.half(), regularization=0.01)
        grid = tps.grid((16, 16))
    assert tps.weights.dtype == torch.float32 and grid.dtype == torch.float32
    exact = fit_tps(control.half().float(), targets.half().float(), regularization=0.01).grid((16, 16))
    assert torch.equal(grid, exact)  # the same float32 computation, autocast or not


def test_deterministic_for_fixed_seed(images) -> None:
    results = []
    for _ in range(2):
        model = _model(seed=3, epoch=1).train()
        losses, generated = model(*images)
        results.append((losses, generated["prediction"]))
    for key in results[0][0]:
        assert torch.allclose(results[0][0][key], results[1][0][key], rtol=1e-6), key
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_background_starts_at_bg_start(images) -> None:
    config = apply_overrides(tiny_config(), {"train_params.bg_start": 2})
    model = build_model(config).train()
    model.set_epoch(1)
    losses, _ = model(*images)
    assert "bg" not in losses
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.bg_predictor.parameters())
    model.set_epoch(2)
    assert "bg" in model(*images)[0]
    assert model.eval().uses_background  # inference always uses a trained background predictor


def test_gradient_clipping_inf_norm() -> None:
    model = _model()
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    model.before_optimizer_step()
    for key in ("kp_detector", "dense_motion_network", "bg_predictor"):
        assert max(p.grad.abs().max() for p in getattr(model, key).parameters()) <= GRAD_CLIP_MAX_NORM * 1.0001
    # the reference clips only those three: the inpainting network keeps its gradient
    assert max(p.grad.abs().max() for p in model.inpainting_network.parameters()) == 100.0


def test_state_dict_round_trip(images) -> None:
    model = _model(seed=1).eval()
    payload = checkpoints.model_state(model)
    assert list(payload) == ["inpainting_network", "dense_motion_network", "kp_detector", "bg_predictor"]
    other = _model(seed=2).eval()
    checkpoints.load_model_state(other, copy.deepcopy(payload))
    with torch.no_grad():
        a = model.generate(images[0], model.encode(images[0]), model.encode(images[1]))["prediction"]
        b = other.generate(images[0], other.encode(images[0]), other.encode(images[1]))["prediction"]
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["vox", "mgif"])
def test_state_dict_matches_reference_vox256(name: str) -> None:
    facts = json.loads(STATE_DICT_FACTS.read_text())
    model = build_model(load_method_config(CONFIG_DIR / f"{name}.yaml"), with_losses=False)
    expected_keys = ["inpainting_network", "dense_motion_network", "kp_detector"]
    expected_keys += ["bg_predictor"] if name == "vox" else []  # MGif has no background predictor
    assert list(model.checkpoint_keys) == expected_keys
    for key in expected_keys:
        ours = {n: list(t.shape) for n, t in getattr(model, key).state_dict().items()}
        assert ours == {n: shape for n, shape in facts[key]}, key
        released = {n: torch.zeros(shape) for n, shape in facts[key]}
        getattr(model, key).load_state_dict(released, strict=True)


def test_encode_generate_relative_and_avd(images) -> None:
    model = _model().eval()
    with torch.no_grad():
        src, drv = model.encode(images[0]), model.encode(images[1])
        assert src["fg_kp"].shape == (2, 10, 2) and torch.equal(src["frame"], images[0])
        out = model.generate(images[0], src, drv)
        assert out["prediction"].shape == (2, 3, 32, 32)
        same = model.relative_motion(src, drv, drv)
        assert torch.allclose(same["fg_kp"], src["fg_kp"]) and "frame" not in same
        moved = {"fg_kp": drv["fg_kp"] + 0.1}
        rel = model.relative_motion(src, moved, drv, adapt_movement_scale=False)
        assert torch.allclose(rel["fg_kp"], src["fg_kp"] + 0.1, atol=1e-6)
        # scale adaptation: a source twice as large moves twice as far
        big = {"fg_kp": drv["fg_kp"] * 2}
        scaled = model.relative_motion(big, moved, drv, adapt_movement_scale=True)
        assert torch.allclose(scaled["fg_kp"], big["fg_kp"] + 0.2, atol=1e-5)
        params = model.avd_encode(src)
        assert params.shape == (2, 20)
        back = model.avd_decode(params, like=src)
        assert torch.equal(back["fg_kp"], src["fg_kp"]) and "frame" not in back
        assert model.generate(images[0], src, back)["prediction"].shape == (2, 3, 32, 32)


# ----------------------------------------------------------------------------- configs, ablations


@pytest.mark.parametrize("name", ["vox", "taichi", "ted", "mgif", "synthetic"])
def test_configs_validate(name: str) -> None:
    config = load_method_config(CONFIG_DIR / f"{name}.yaml")
    assert config["method"] == "tpsmm" and config["model_params"]["common_params"]["align_corners"]
    assert config["model_params"]["common_params"]["bg"] is (name != "mgif")
    if name == "ted":
        assert config["dataset_params"]["frame_shape"] == [384, 384, 3]


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_switches_off_what_it_says(ablation: str, images) -> None:
    step = ABLATIONS.index(ablation)  # Table 4 is cumulative
    config = tiny_config(f"ablations/taichi_{ablation}")
    full = load_method_config(CONFIG_DIR / "taichi.yaml")
    base = load_method_config(CONFIG_DIR / f"ablations/taichi_{ablation}.yaml")
    # nothing but the four switches differs from the full TaiChi config
    for section in ("dataset_params",):
        assert base[section] == full[section]
    assert base["model_params"]["generator_params"] == full["model_params"]["generator_params"]
    model = build_model(config).train()
    model.set_epoch(1)
    losses, generated = model(*images)
    assert (model.dropout_p is not None) is (step >= 1)
    assert (len(generated["occlusion_map"]) == 4) is (step >= 2)
    assert ("bg" in losses) is (step >= 3)
    assert ("warp_loss" in losses) is (step >= 4)
    assert {"perceptual", "equivariance_value"} <= set(losses)
    sum(losses.values()).backward()


def test_train_step_through_shared_trainer(tiny_dataset: Path, tmp_path: Path) -> None:
    from methods.engine.train import TrainOptions, train

    config = apply_overrides(
        tiny_config(),
        {
            "train_params.num_epochs": 2,
            "train_params.num_repeats": 2,
            "train_params.batch_size": 4,
            "train_params.epoch_milestones": [1],
            "train_params.dropout_epoch": 1,
        },
    )
    path = train(config, TrainOptions(dataset_root=tiny_dataset, out_dir=tmp_path / "run", progress=False))
    payload = checkpoints.read(path)
    assert {"inpainting_network", "dense_motion_network", "kp_detector", "bg_predictor", "optimizer_generator"} <= set(payload)
    model, _ = checkpoints.load_model(path)
    assert isinstance(model, TPSMM)
    frames = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model.generate(frames[:1].expand(2, -1, -1, -1), model.encode(frames[:1].expand(2, -1, -1, -1)), model.encode(frames))
    assert torch.isfinite(out["prediction"]).all()

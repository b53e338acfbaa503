"""FOMM networks, motion, transforms, losses, registry and configs (fast, tiny tensors)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_prep.weights import MissingWeightsError
from methods.blocks import AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid
from methods.dense_motion.keypoint_based import DenseMotionNetwork
from methods.detectors.keypoint import KPDetector
from methods.engine.config import MethodConfigError, load_method_config, validate_method_config
from methods.generators.occlusion_aware import OcclusionAwareGenerator
from methods.losses.equivariance import equivariance_jacobian_loss, equivariance_value_loss
from methods.losses.perceptual import PyramidPerceptualLoss
from methods.losses.random_tps import RandomTPS
from methods.models.fomm import FOMM
from methods.motion.affine import sparse_motions, warp_with_motions
from methods.registry import build_model, list_methods, register_method

CONFIG_DIR = Path(__file__).resolve().parents[1] / "methods" / "configs" / "fomm"
STATE_DICT_FACTS = Path(__file__).resolve().parent / "data" / "fomm_vox256_state_dict.json"


def tiny_config() -> dict:
    config = load_method_config(CONFIG_DIR / "synthetic.yaml")
    config = copy.deepcopy(config)
    mp = config["model_params"]
    mp["common_params"]["num_kp"] = 3
    mp["kp_detector_params"].update(block_expansion=4, max_features=16, num_blocks=2)
    mp["generator_params"].update(block_expansion=4, max_features=16, num_bottleneck_blocks=1)
    mp["generator_params"]["dense_motion_params"].update(
        block_expansion=4, max_features=16, num_blocks=2
    )
    config["train_params"]["scales"] = [1, 0.5]
    return config


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)


# ----------------------------------------------------------------------------- blocks


def test_coordinate_grid_is_x_first_and_spans_minus_one_to_one() -> None:
    grid = make_coordinate_grid((3, 5))
    assert grid.shape == (3, 5, 2)
    assert torch.allclose(grid[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(grid[0, -1], torch.tensor([1.0, -1.0]))  # x varies along width
    assert torch.allclose(grid[-1, 0], torch.tensor([-1.0, 1.0]))


def test_kp2gaussian_peaks_at_keypoint() -> None:
    kp = torch.tensor([[[1.0, -1.0], [0.0, 0.0]]])
    heat = kp2gaussian(kp, (9, 9), 0.01)
    assert heat.shape == (1, 2, 9, 9)
    assert heat[0, 0, 0, -1] == pytest.approx(1.0) and heat[0, 1, 4, 4] == pytest.approx(1.0)


def test_anti_alias_kernel_is_buffer_named_weight() -> None:
    down = AntiAliasInterpolation2d(3, 0.25)
    assert list(down.state_dict()) == ["weight"] and down.weight.shape == (3, 1, 13, 13)
    assert torch.allclose(down.weight.sum(dim=(2, 3)), torch.ones(3, 1))
    out = down(torch.ones(1, 3, 32, 32))
    assert out.shape == (1, 3, 8, 8)
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.ones(1, 3, 4, 4))  # blur keeps constants


def test_hourglass_shapes_and_backward() -> None:
    net = Hourglass(block_expansion=4, in_features=5, num_blocks=3, max_features=8)
    x = torch.rand(2, 5, 16, 16, requires_grad=True)
    out = net(x)
    assert out.shape == (2, net.out_filters, 16, 16) and net.out_filters == 9
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())


# ----------------------------------------------------------------------------- networks


def test_kp_detector_range_and_identity_jacobian(images) -> None:
    det = KPDetector(
        4,
        num_kp=5,
        num_channels=3,
        max_features=16,
        num_blocks=2,
        temperature=0.1,
        estimate_jacobian=True,
        scale_factor=0.5,
    )
    out = det(images[0])
    assert out["value"].shape == (2, 5, 2) and out["jacobian"].shape == (2, 5, 2, 2)
    assert out["value"].abs().max() <= 1.0
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(2, 5, 2, 2), atol=1e-6)
    assert "down.weight" in det.state_dict()


def test_sparse_motions_send_driving_keypoint_to_source_keypoint() -> None:
    kp_s = {
        "value": torch.tensor([[[0.5, -0.5]]]),
        "jacobian": torch.tensor([[[[1.2, 0.1], [0.0, 0.9]]]]),
    }
    kp_d = {"value": torch.tensor([[[-0.5, 0.5]]]), "jacobian": torch.eye(2).view(1, 1, 2, 2)}
    motions = sparse_motions(kp_s, kp_d, (5, 5))
    assert motions.shape == (1, 2, 5, 5, 2)
    assert torch.allclose(motions[0, 0], make_coordinate_grid((5, 5)))  # background identity
    # pixel (row 3, col 1) is at (-0.5, 0.5), the driving keypoint
    assert torch.allclose(motions[0, 1, 3, 1], kp_s["value"][0, 0])
    # one pixel step right in the driving frame moves by J_s J_d^-1 (0.5, 0)
    step = motions[0, 1, 3, 2] - motions[0, 1, 3, 1]
    assert torch.allclose(step, torch.tensor([0.6, 0.0]), atol=1e-6)
    warped = warp_with_motions(torch.rand(1, 3, 5, 5), motions, align_corners=True)
    assert warped.shape == (1, 2, 3, 5, 5)


def test_dense_motion_and_generator_shapes(images) -> None:
    kp_s = {"value": torch.rand(2, 3, 2) * 2 - 1, "jacobian": torch.eye(2).repeat(2, 3, 1, 1)}
    kp_d = {"value": torch.rand(2, 3, 2) * 2 - 1, "jacobian": torch.eye(2).repeat(2, 3, 1, 1)}
    dense = DenseMotionNetwork(
        4,
        num_blocks=2,
        max_features=16,
        num_kp=3,
        num_channels=3,
        estimate_occlusion_map=True,
        scale_factor=0.5,
    )
    out = dense(images[0], kp_driving=kp_d, kp_source=kp_s)
    assert out["deformation"].shape == (2, 16, 16, 2) and out["mask"].shape == (2, 4, 16, 16)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert out["sparse_deformed"].shape == (2, 4, 3, 16, 16) and out["occlusion_map"].shape == (
        2,
        1,
        16,
        16,
    )

    gen = OcclusionAwareGenerator(
        3,
        3,
        4,
        16,
        2,
        1,
        estimate_occlusion_map=True,
        dense_motion_params={
            "block_expansion": 4,
            "max_features": 16,
            "num_blocks": 2,
            "scale_factor": 0.5,
        },
    )
    res = gen(images[0], kp_driving=kp_d, kp_source=kp_s)
    assert res["prediction"].shape == (2, 3, 32, 32) and res["deformed"].shape == (2, 3, 32, 32)
    assert {
        "prediction",
        "deformation",
        "occlusion_map",
        "deformed",
        "mask",
        "sparse_deformed",
    } <= set(res)
    assert 0 <= res["prediction"].min() and res["prediction"].max() <= 1


def test_identical_keypoints_give_identity_warp(images) -> None:
    gen = OcclusionAwareGenerator(
        3,
        3,
        4,
        16,
        1,
        0,
        dense_motion_params={"block_expansion": 4, "max_features": 16, "num_blocks": 2},
    )
    kp = {"value": torch.rand(2, 3, 2) * 2 - 1, "jacobian": torch.eye(2).repeat(2, 3, 1, 1)}
    res = gen(images[0], kp_driving=kp, kp_source=kp)
    assert torch.allclose(res["deformed"], images[0], atol=1e-5)


# ----------------------------------------------------------------------------- model


def test_fomm_forward_losses_and_gradients(images) -> None:
    model = build_model(tiny_config())
    assert isinstance(model, FOMM) and model.checkpoint_keys == ("generator", "kp_detector")
    losses, generated = model(*images)
    assert set(losses) == {"perceptual", "equivariance_value", "equivariance_jacobian"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert generated["prediction"].shape == (2, 3, 32, 32)
    assert generated["kp_driving"].shape == (2, 3, 2)
    sum(losses.values()).backward()
    groups = model.optimizer_groups()
    assert set(groups) == {"generator", "kp_detector"}
    for name, params in groups.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
    motion = model.encode(images[0])
    assert motion["value"].shape == (2, 3, 2) and motion["jacobian"].shape == (2, 3, 2, 2)
    assert model.generate(images[0], motion, motion)["prediction"].shape == (2, 3, 32, 32)


def test_fomm_explicit_rng_reproducible(images) -> None:
    model = build_model(tiny_config()).eval()
    values = []
    for _ in range(2):
        model.rng = torch.Generator().manual_seed(3)
        with torch.no_grad():
            values.append(model(*images)[0]["equivariance_value"])
    assert torch.equal(values[0], values[1])


def test_state_dict_matches_reference_vox256() -> None:
    facts = json.loads(STATE_DICT_FACTS.read_text())
    model = build_model(load_method_config(CONFIG_DIR / "vox.yaml"), with_losses=False)
    for key in ("generator", "kp_detector"):
        ours = {name: list(t.shape) for name, t in getattr(model, key).state_dict().items()}
        assert ours == {name: shape for name, shape in facts[key]}, key
        state = {k: v.clone() for k, v in getattr(model, key).state_dict().items()}
        getattr(model, key).load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------- transforms


def test_tps_with_zero_sigmas_is_identity() -> None:
    tps = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    coords = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(tps.warp_coordinates(coords), coords)
    frame = torch.rand(2, 3, 16, 16)
    assert torch.allclose(tps.transform_frame(frame), frame, atol=1e-5)
    assert torch.allclose(tps.jacobian(coords), torch.eye(2).expand(2, 7, 2, 2), atol=1e-5)


def test_tps_jacobian_matches_finite_differences() -> None:
    tps = RandomTPS(
        1, 0.1, 0.05, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    point = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64)
    jac = tps.jacobian(point)[0, 0]
    eps = 1e-6
    for j in range(2):
        d = torch.zeros_like(point)
        d[..., j] = eps
        col = (tps.warp_coordinates(point + d) - tps.warp_coordinates(point - d))[0, 0] / (2 * eps)
        assert torch.allclose(jac[:, j], col, atol=1e-5)


def test_warp_coordinates_consistent_with_transform_frame() -> None:
    size = 64
    center = torch.tensor([0.1, -0.15])
    grid = make_coordinate_grid((size, size))
    blob = torch.exp(-((grid - center) ** 2).sum(-1) / (2 * 0.08**2))
    frame = blob.expand(1, 3, size, size).contiguous()
    tps = RandomTPS(
        1,
        sigma_affine=0.1,
        sigma_tps=0.005,
        points_tps=5,
        generator=torch.Generator().manual_seed(5),
    )
    warped = tps.transform_frame(frame)[0, 0]
    centroid = (warped[..., None] * grid).sum((0, 1)) / warped.sum()
    assert (centroid - center).abs().max() > 0.02  # the warp really moved the blob
    # output pixel z shows input pixel T(z), so T(centroid of the output) is the input centre
    mapped = tps.warp_coordinates(centroid.view(1, 1, 2))[0, 0]
    assert torch.allclose(mapped, center, atol=0.01)


def test_tps_explicit_generator_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a = RandomTPS(2, 0.05, 0.005, 5, generator=torch.Generator().manual_seed(1))
    b = RandomTPS(2, 0.05, 0.005, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(1), expected)
    assert torch.equal(a.theta, b.theta) and torch.equal(a.control_params, b.control_params)


# ----------------------------------------------------------------------------- losses


def _hand_downscale_half(img: np.ndarray) -> np.ndarray:
    """Gaussian blur (sigma 0.5, 5 taps, zero padding) then every second pixel."""
    taps = np.array([math.exp(-(t**2) / (2 * 0.5**2)) for t in range(-2, 3)])
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    h, w = img.shape
    padded = np.zeros((h + 4, w + 4))
    padded[2:-2, 2:-2] = img
    out = np.zeros((h // 2, w // 2))
    for i in range(h // 2):
        for j in range(w // 2):
            out[i, j] = (padded[2 * i : 2 * i + 5, 2 * j : 2 * j + 5] * kernel).sum()
    return out


def test_pixel_pyramid_equals_hand_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(1, 1, 4, 4, generator=gen), torch.rand(1, 1, 4, 4, generator=gen)
    loss = PyramidPerceptualLoss("pixel_pyramid", scales=[1, 0.5], weights=[1, 2], num_channels=1)
    p, t = pred[0, 0].double().numpy(), target[0, 0].double().numpy()
    expected = (
        3 * np.abs(p - t).mean()
        + 3 * np.abs(_hand_downscale_half(p) - _hand_downscale_half(t)).mean()
    )
    assert loss(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_vgg19_missing_weights_raises(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="vgg19.pth"):
        PyramidPerceptualLoss("vgg19", [1], [10] * 5, weights_dir=tmp_path)
    config = tiny_config()
    config["train_params"]["perceptual_loss"] = "vgg19"
    with pytest.raises(MissingWeightsError, match="vgg19.pth"):
        build_model(config, weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown perceptual_loss"):
        PyramidPerceptualLoss("lpips", [1], [1])


def test_equivariance_losses_vanish_for_consistent_inputs() -> None:
    kp = torch.rand(2, 3, 2)
    jac = torch.eye(2).repeat(2, 3, 1, 1) + 0.1 * torch.rand(2, 3, 2, 2)
    assert equivariance_value_loss(kp, kp) == 0
    assert equivariance_jacobian_loss(jac, jac).item() == pytest.approx(0.0, abs=1e-6)
    assert equivariance_value_loss(kp, kp + 0.5).item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- registry, configs


def test_registry_lists_and_rejects_unknown() -> None:
    assert "fomm" in list_methods()
    with pytest.raises(KeyError, match="unknown method 'nope'.*fomm"):
        build_model({"method": "nope"})
    with pytest.raises(KeyError, match="no 'method' key"):
        build_model({})
    with pytest.raises(ValueError, match="already registered"):
        register_method("fomm")(lambda config: None)


@pytest.mark.parametrize("name", ["vox", "taichi", "synthetic"])
def test_configs_validate(name: str) -> None:
    config = load_method_config(CONFIG_DIR / f"{name}.yaml")
    assert config["method"] == "fomm"
    assert config["model_params"]["common_params"]["align_corners"] is True


def test_config_wrong_key_names_file_and_path(tmp_path: Path) -> None:
    config = load_method_config(CONFIG_DIR / "synthetic.yaml")
    config["model_params"]["generator_params"]["dense_motion_params"]["num_block"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(MethodConfigError) as info:
        load_method_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "model_params.generator_params.dense_motion_params" in message and "num_block" in message
    config = load_method_config(CONFIG_DIR / "synthetic.yaml")
    config["train_params"]["perceptual_loss"] = "vgg"
    with pytest.raises(MethodConfigError, match="train_params.perceptual_loss"):
        validate_method_config(config)

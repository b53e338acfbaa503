"""MRAA: PCA regions, region motions, background, networks, model, configs and a training run."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

import methods.models.mraa  # noqa: F401  (registers "mraa" even before the registry lists it)
from methods.background.conv_affine import BGMotionPredictor
from methods.blocks import make_coordinate_grid
from methods.detectors.region import RegionPredictor
from methods.engine import checkpoints
from methods.engine.config import MethodConfigError, load_method_config, validate_method_config
from methods.engine.train import TrainOptions, train
from methods.losses.equivariance import equivariance_affine_loss
from methods.models.mraa import MRAA
from methods.motion.pca import (
    covariance_to_affine,
    heatmap_covariance,
    heatmap_mean,
    heatmap_to_regions,
    region_gaussian,
    region_motions,
)
from methods.registry import build_model

CONFIG_DIR = Path(__file__).resolve().parents[1] / "methods" / "configs" / "mraa"
STATE_DICT_FACTS = Path(__file__).resolve().parent / "data" / "mraa_vox256_state_dict.json"
NETWORKS = ("generator", "bg_predictor", "region_predictor")

#: Dotted overrides shrinking the MRAA demo config to a very small network and a few steps.
TINY_MRAA = {
    "train_params.num_epochs": 2,
    "train_params.num_repeats": 2,
    "train_params.batch_size": 4,
    "train_params.epoch_milestones": [1],
    "train_params.scales": [1, 0.5],
    "model_params.num_regions": 3,
    "model_params.bg_predictor_params.block_expansion": 4,
    "model_params.bg_predictor_params.max_features": 16,
    "model_params.bg_predictor_params.num_blocks": 2,
    "model_params.region_predictor_params.block_expansion": 4,
    "model_params.region_predictor_params.max_features": 16,
    "model_params.region_predictor_params.num_blocks": 2,
    "model_params.generator_params.block_expansion": 4,
    "model_params.generator_params.max_features": 16,
    "model_params.generator_params.num_bottleneck_blocks": 1,
    "model_params.generator_params.pixelwise_flow_predictor_params.block_expansion": 4,
    "model_params.generator_params.pixelwise_flow_predictor_params.max_features": 16,
    "model_params.generator_params.pixelwise_flow_predictor_params.num_blocks": 2,
}


def tiny_config(**extra) -> dict:
    return copy.deepcopy(load_method_config(CONFIG_DIR / "synthetic.yaml", overrides={**TINY_MRAA, **extra}))


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)


def random_regions(b: int, k: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    affine = 0.2 * torch.eye(2) + 0.05 * torch.randn(b, k, 2, 2, generator=gen)
    return {
        "shift": torch.rand(b, k, 2, generator=gen) * 1.6 - 0.8,
        "affine": affine,
        "covar": affine @ affine.transpose(-1, -2),
    }


# ----------------------------------------------------------------------------- PCA regions


def test_pca_affine_of_two_point_heatmap_by_hand() -> None:
    # half the mass at (x, y) = (-0.5, 0) and half at (0.5, 0) on a 5x5 grid (-1, -0.5, ..., 1)
    heat = torch.zeros(1, 1, 5, 5)
    heat[0, 0, 2, 1] = heat[0, 0, 2, 3] = 0.5  # row 2 is y = 0; columns 1, 3 are x = -0.5, 0.5
    mean = heatmap_mean(heat)
    covar = heatmap_covariance(heat, mean)
    assert torch.allclose(mean, torch.zeros(1, 1, 2), atol=1e-7)
    # E[x^2] = 0.25, no spread in y: covariance diag(0.25, 0), so the affine is diag(+-0.5, 0)
    assert torch.allclose(covar, torch.tensor([[[[0.25, 0.0], [0.0, 0.0]]]]), atol=1e-7)
    affine = covariance_to_affine(covar)
    assert torch.allclose(affine.abs(), torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]]), atol=1e-6)


def test_pca_affine_of_rotated_gaussian_heatmap() -> None:
    # an anisotropic gaussian with standard deviations 0.2 and 0.08 along axes rotated by 30 deg
    angle = math.radians(30)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    sigma = rot @ torch.diag(torch.tensor([0.2**2, 0.08**2], dtype=torch.float64)) @ rot.T
    mu = torch.tensor([0.1, -0.2], dtype=torch.float64)
    grid = make_coordinate_grid((201, 201), torch.float64)
    diff = grid - mu
    density = torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", diff, torch.inverse(sigma), diff))
    heat = (density / density.sum()).view(1, 1, 201, 201)
    regions = heatmap_to_regions(heat)
    assert torch.allclose(regions["shift"][0, 0], mu, atol=1e-6)
    assert torch.allclose(regions["covar"][0, 0], sigma, atol=1e-5)
    affine = regions["affine"][0, 0]
    # columns: the principal axes, scaled by the standard deviations, major axis first
    assert torch.allclose(affine @ affine.T, sigma, atol=1e-5)
    assert torch.allclose(affine[:, 0].abs(), 0.2 * rot[:, 0].abs(), atol=1e-4)
    assert torch.allclose(affine[:, 1].abs(), 0.08 * rot[:, 1].abs(), atol=1e-4)
    # the covariance heatmap of that region has its 1-sigma contour at mu + A e_i
    for i in range(2):
        # a 1x1 grid is the single point 0: centring the region at -A e_i evaluates it at A e_i
        value = region_gaussian(-affine[:, i].view(1, 1, 2), regions["covar"], (1, 1))
        assert value.item() == pytest.approx(math.exp(-0.5), rel=1e-6), i


def test_region_gaussian_isotropic_matches_covariance_form() -> None:
    shift = torch.tensor([[[0.2, -0.3]]])
    iso = region_gaussian(shift, 0.01, (9, 9))
    full = region_gaussian(shift, 0.01 * torch.eye(2).view(1, 1, 2, 2), (9, 9))
    assert iso.shape == (1, 1, 9, 9)
    assert torch.allclose(iso, full, atol=1e-6)


def test_region_motions_map_driving_region_onto_source_region() -> None:
    gen = torch.Generator().manual_seed(1)
    src, drv = random_regions(1, 2, gen), random_regions(1, 2, gen)
    bg = torch.tensor([[[1.1, 0.1, 0.05], [0.0, 0.9, -0.1], [0.0, 0.0, 1.0]]])
    motions = region_motions(src, drv, (5, 5), bg_params=bg)
    assert motions.shape == (1, 3, 5, 5, 2)
    grid = make_coordinate_grid((5, 5))
    expected_bg = grid @ bg[0, :2, :2].T + bg[0, :2, 2]
    assert torch.allclose(motions[0, 0], expected_bg, atol=1e-6)
    # the affine map of region k sends driving point mu_d + A_d v to mu_s + A_s v
    per_region = region_motions(src, drv, (5, 5))[:, 1:]
    z = grid[1, 3]
    for k in range(2):
        v = torch.linalg.solve(drv["affine"][0, k], z - drv["shift"][0, k])
        assert torch.allclose(per_region[0, k, 1, 3], src["shift"][0, k] + src["affine"][0, k] @ v, atol=1e-5)


def test_revert_axis_swap_undoes_svd_sign_flip() -> None:
    gen = torch.Generator().manual_seed(2)
    regions = random_regions(1, 2, gen)
    flipped = dict(regions, affine=-regions["affine"])  # same covariance, both axes' signs flipped
    plain = region_motions(flipped, regions, (4, 4), revert_axis_swap=False)
    fixed = region_motions(flipped, regions, (4, 4), revert_axis_swap=True)
    identity = make_coordinate_grid((4, 4))
    assert torch.allclose(fixed[0, 1:], identity.expand(2, 4, 4, 2), atol=1e-5)
    assert not torch.allclose(plain[0, 1:], identity.expand(2, 4, 4, 2), atol=1e-2)
    driving = regions["affine"]
    assert equivariance_affine_loss(driving, -driving, revert_axis_swap=True).item() == pytest.approx(0, abs=1e-6)
    assert equivariance_affine_loss(driving, -driving, revert_axis_swap=False).item() == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- networks


def test_region_predictor_outputs(images) -> None:
    net = RegionPredictor(4, num_regions=5, num_channels=3, max_features=16, num_blocks=2,
                          temperature=0.1, estimate_affine=True, scale_factor=0.5, pca_based=True, pad=0)
    out = net(images[0])
    assert out["heatmap"].shape == (2, 5, 10, 10)  # 16x16 after the 0.5 downscale, 7x7 conv, pad 0
    assert torch.allclose(out["heatmap"].sum((2, 3)), torch.ones(2, 5), atol=1e-5)
    assert out["shift"].shape == (2, 5, 2) and out["shift"].abs().max() <= 1
    assert torch.allclose(out["affine"] @ out["affine"].transpose(-1, -2), out["covar"], atol=1e-6)
    assert "jacobian.weight" not in net.state_dict() and "down.weight" in net.state_dict()
    regression = RegionPredictor(4, 5, 3, 16, 2, 0.1, estimate_affine=True, pca_based=False)
    out = regression(images[0])
    assert torch.allclose(out["affine"], torch.eye(2).expand(2, 5, 2, 2), atol=1e-6)  # identity init


def test_bg_predictor_starts_at_identity_and_zero_has_no_parameters(images) -> None:
    for bg_type in ("shift", "affine", "perspective"):
        net = BGMotionPredictor(4, 3, 16, 2, bg_type=bg_type)
        assert torch.allclose(net(*images), torch.eye(3).expand(2, 3, 3)), bg_type
    net = BGMotionPredictor(4, 3, 16, 2, bg_type="affine")
    with torch.no_grad():
        net.fc.bias.add_(0.1)
    out = net(*images)
    assert torch.allclose(out[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(2, 3))
    assert torch.allclose(out[:, :2], (torch.eye(3)[:2] + 0.1).expand(2, 2, 3))
    zero = BGMotionPredictor(4, 3, 16, 2, bg_type="zero")
    assert zero.state_dict() == {} and torch.equal(zero(*images), torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="unknown bg_type"):
        BGMotionPredictor(4, 3, 16, 2, bg_type="homography")


def test_identical_regions_give_identity_warp(images) -> None:
    # with the grid convention of align_corners=True (and the flow at full resolution, so no
    # resize of the flow) an identity flow reproduces the source
    overrides = {
        "model_params.align_corners": True,
        "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor": 1,
    }
    model = build_model(tiny_config(**overrides), with_losses=False).eval()
    motion = {k: v for k, v in model.encode(images[0]).items() if k != "frame"}
    out = model.generate(images[0], motion, motion)
    assert torch.allclose(out["deformed"], images[0], atol=1e-5)
    assert out["optical_flow"].shape == (2, 32, 32, 2) and out["mask"].shape == (2, 4, 32, 32)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 32, 32), atol=1e-5)


# ----------------------------------------------------------------------------- model


def test_mraa_forward_backward_and_one_optimizer(images) -> None:
    model = build_model(tiny_config())
    assert isinstance(model, MRAA) and model.checkpoint_keys == NETWORKS
    assert model.align_corners is False
    losses, generated = model(*images)
    assert set(losses) == {"perceptual", "equivariance_shift", "equivariance_affine"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert generated["prediction"].shape == (2, 3, 32, 32)
    assert 0 <= generated["prediction"].min() and generated["prediction"].max() <= 1
    assert generated["occlusion_map"].shape == (2, 1, 16, 16) and generated["bg_params"].shape == (2, 3, 3)
    sum(losses.values()).backward()
    groups = model.optimizer_groups()
    assert list(groups) == ["reconstruction"]
    assert len(groups["reconstruction"]) == len(list(model.parameters()))
    for name in NETWORKS:
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_mraa_deterministic_for_fixed_seed(images) -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(tiny_config())
        model.rng = torch.Generator().manual_seed(3)
        losses, _ = model(*images)
        results.append(torch.stack([losses[k] for k in sorted(losses)]))
    assert torch.allclose(results[0], results[1], rtol=1e-6, atol=0)


def test_mraa_state_dict_round_trip(images, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(), with_losses=False).eval()
    path = tmp_path / "cpk.pt"
    checkpoints.save(path, {**checkpoints.model_state(model), "animbench": {"config": tiny_config()}})
    loaded, payload = checkpoints.load_model(path)
    assert set(NETWORKS) <= set(payload)
    with torch.no_grad():
        a = model.generate(images[0], model.encode(images[0]), model.encode(images[1]))["prediction"]
        b = loaded.generate(images[0], loaded.encode(images[0]), loaded.encode(images[1]))["prediction"]
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["vox", "mgif", "ted"])
def test_reference_key_names_and_shapes_load_strictly(name: str) -> None:
    facts = json.loads(STATE_DICT_FACTS.read_text())
    model = build_model(load_method_config(CONFIG_DIR / f"{name}.yaml"), with_losses=False)
    if name == "vox":
        for key in NETWORKS:
            ours = {k: list(t.shape) for k, t in getattr(model, key).state_dict().items()}
            assert ours == {k: shape for k, shape in facts[key]}, key
    # a released-layout payload (random values of the reference shapes) loads with strict=True
    payload = {
        key: {k: torch.rand(t.shape) if t.is_floating_point() else t.clone()
              for k, t in getattr(model, key).state_dict().items()}
        for key in NETWORKS
    }
    payload["optimizer_reconstruction"] = {}
    checkpoints.load_model_state(model, payload)
    if name == "mgif":
        assert model.bg_predictor.state_dict() == {}  # bg_type zero: no background network
    if name == "ted":
        assert model.region_predictor.regions.out_channels == 20


def test_truncated_payload_names_missing_network() -> None:
    model = build_model(tiny_config(), with_losses=False)
    payload = checkpoints.model_state(model)
    del payload["bg_predictor"]
    with pytest.raises(checkpoints.CheckpointError, match="bg_predictor"):
        checkpoints.load_model_state(model, payload)
    payload = checkpoints.model_state(model)
    payload["region_predictor"] = {k: v for k, v in payload["region_predictor"].items() if "regions" not in k}
    with pytest.raises(checkpoints.CheckpointError, match="region_predictor"):
        checkpoints.load_model_state(model, payload)


def test_relative_motion_and_avd_round_trip() -> None:
    model = build_model(tiny_config(), with_losses=False)
    gen = torch.Generator().manual_seed(4)
    src, drv, init = (random_regions(2, 3, gen) for _ in range(3))
    drv["frame"] = torch.rand(2, 3, 8, 8)
    same = model.relative_motion(src, init, init)
    assert torch.allclose(same["shift"], src["shift"]) and torch.allclose(same["affine"], src["affine"], atol=1e-6)
    moved = model.relative_motion(src, drv, init)
    assert "frame" not in moved  # animation keeps the background still, as the reference
    assert torch.allclose(moved["shift"], src["shift"] + drv["shift"] - init["shift"], atol=1e-6)
    assert torch.allclose(moved["covar"], drv["covar"])  # reference: heatmaps keep the driving covariance
    # adapt_movement_scale: source regions twice as spread out -> displacements doubled
    wide = dict(src, shift=2 * init["shift"])
    scaled = model.relative_motion(wide, drv, init, adapt_movement_scale=True)
    assert torch.allclose(scaled["shift"], wide["shift"] + 2 * (drv["shift"] - init["shift"]), atol=1e-5)

    params = model.avd_encode(drv)
    assert params.shape == (2, 18)
    back = model.avd_decode(params, like=drv)
    assert torch.allclose(back["shift"], drv["shift"]) and torch.allclose(back["affine"], drv["affine"])
    assert torch.allclose(back["covar"], drv["affine"] @ drv["affine"].transpose(-1, -2), atol=1e-6)
    assert "frame" not in back
    aligned = model.avd_align_identity(dict(src, affine=-drv["affine"]), drv)
    assert torch.allclose(aligned["affine"], drv["affine"])


# ----------------------------------------------------------------------------- configs, training


@pytest.mark.parametrize("name", ["vox", "taichi", "ted", "mgif", "synthetic"])
def test_configs_validate(name: str) -> None:
    config = load_method_config(CONFIG_DIR / f"{name}.yaml")
    mp = config["model_params"]
    assert config["method"] == "mraa" and mp["align_corners"] is False
    assert mp["num_regions"] == (20 if name == "ted" else 10)
    assert mp["bg_predictor_params"]["bg_type"] == ("zero" if name == "mgif" else "affine")
    assert config["dataset_params"]["frame_shape"][0] == {"ted": 384, "synthetic": 64}.get(name, 256)


def test_config_rejects_unknown_key() -> None:
    config = load_method_config(CONFIG_DIR / "synthetic.yaml")
    config["model_params"]["region_predictor_params"]["num_kp"] = 3
    with pytest.raises(MethodConfigError, match="region_predictor_params"):
        validate_method_config(config)


def test_train_step_through_shared_trainer(tiny_dataset, tmp_path) -> None:
    config = tiny_config()
    path = train(config, TrainOptions(tiny_dataset, tmp_path / "run", seed=0, progress=False))
    payload = checkpoints.read(path)
    assert set(NETWORKS) | {"optimizer_reconstruction", "epoch"} <= set(payload)
    model, _ = checkpoints.load_model(path)
    assert isinstance(model, MRAA)

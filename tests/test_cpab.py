"""CPAB animation method: configs, N+2 transforms, the fit and gradient switches, losses, AVD,
animation, checkpoint layout. Every config (ablations included) is shrunk to tiny networks."""

from __future__ import annotations

import copy
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods.engine import checkpoints
from methods.engine.animate import animate_frames
from methods.engine.config import apply_overrides, load_method_config
from methods.models.avd import avd_input_size, build_avd_network
from methods.models.cpab import CPABModel, CPABMotion
from methods.motion.cpab import Tessellation
from methods.registry import build_model, list_methods

CONFIG_DIR = Path(__file__).resolve().parents[1] / "methods" / "configs" / "cpab"
CONFIGS = sorted(
    str(p.relative_to(CONFIG_DIR).with_suffix(""))
    for p in CONFIG_DIR.rglob("*.yaml")
    if p.name != "schema.yaml"
)
SIZE = 32

#: Shrinks any CPAB config to networks that run on 32x32 inputs in well under a second. SAM and
#: DINO shrink to small real architectures (random weights, built with pretrained_losses=False).
TINY = {
    "model_params.common_params.num_cpab": 2,
    "model_params.generator_params.block_expansion": 4,
    "model_params.generator_params.max_features": 16,
    "model_params.dense_motion_params.block_expansion": 4,
    "model_params.dense_motion_params.max_features": 16,
    "model_params.dense_motion_params.num_blocks": 2,
    "model_params.kp_detector_params.width": 4,
    "model_params.bg_predictor_params.width": 4,
    "model_params.cpab_params.fit_iterations": 4,
    "dataset_params.frame_shape": [SIZE, SIZE, 3],
    "train_params.scales": [1, 0.5],
    "train_params.perceptual_loss": "pixel_pyramid",
    "train_params.keypoint_semantic_params.image_size": 64,
    "train_params.keypoint_semantic_params.encoder_embed_dim": 32,
    "train_params.keypoint_semantic_params.encoder_depth": 2,
    "train_params.keypoint_semantic_params.encoder_num_heads": 2,
    "train_params.keypoint_semantic_params.encoder_global_attn_indexes": [1],
    "train_params.keypoint_semantic_params.window_size": 2,
    "train_params.structure_params.embed_dim": 32,
    "train_params.structure_params.depth": 2,
    "train_params.structure_params.num_heads": 2,
    "train_params.structure_params.image_size": 32,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(name: str = "synthetic", **overrides) -> dict:
    return load_method_config(CONFIG_DIR / f"{name}.yaml", overrides={**TINY, **overrides})


def needs_losses(config: dict) -> bool:
    weights = config["train_params"]["loss_weights"]
    return weights["keypoint_semantic"] != 0 or weights["structure"] != 0


def loss_modules_importable() -> str | None:
    """None when the SAM/DINO loss modules import, else the reason they do not."""
    try:
        importlib.import_module("methods.losses.keypoint_semantic")
        importlib.import_module("methods.losses.structure")
    except ImportError as err:
        return f"SAM/DINO loss modules not importable yet: {err}"
    return None


def build(config: dict, seed: int = 0, epoch: int = 0) -> CPABModel:
    if needs_losses(config) and (reason := loss_modules_importable()):
        pytest.skip(reason)
    torch.manual_seed(seed)
    model = build_model(copy.deepcopy(config), pretrained_losses=False)
    model.set_epoch(epoch)
    model.rng = torch.Generator().manual_seed(seed)
    return model


def images(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(batch, 3, SIZE, SIZE, generator=gen) for _ in range(2))


def displaced_keypoints(sets: int, points: int, amplitude: float, seed: int = 0):
    """Driving keypoints and source keypoints moved by a smooth displacement of ``amplitude``."""
    gen = torch.Generator().manual_seed(seed)
    kd = torch.rand(sets, points, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.7
    shift = torch.rand(sets, 1, 2, generator=gen, dtype=torch.float64) * 2 - 1
    ks = kd + amplitude * (shift + 0.5 * torch.sin(2 * kd.flip(-1)))
    return kd, ks


# ----------------------------------------------------------------------------- configs


def test_registered_and_every_config_validates_with_its_choices_documented() -> None:
    assert "cpab" in list_methods()
    assert len(CONFIGS) == 14  # demo + 4 datasets, 6 taichi and 3 demo ablations
    for name in CONFIGS:
        path = CONFIG_DIR / f"{name}.yaml"
        config = load_method_config(path)
        assert config["method"] == "cpab"
        header = path.read_text().split("method: cpab")[0]
        assert "release" in header and "paper" in header, name  # says what reproduces what
    taichi = load_method_config(CONFIG_DIR / "taichi.yaml")
    weights = taichi["train_params"]["loss_weights"]
    assert (weights["keypoint_semantic"], weights["structure"]) == (1, 0.1)  # paper's lambdas
    train = taichi["train_params"]
    assert (train["lr_generator"], train["num_epochs"], train["batch_size"]) == (1e-4, 100, 8)
    assert taichi["model_params"]["cpab_params"]["fit_iterations"] == 200
    release = load_method_config(CONFIG_DIR / "ablations/taichi_release.yaml")["model_params"][
        "cpab_params"
    ]
    assert (release["fit"], release["keypoint_gradient"], release["integration"]) == (
        "adam",
        False,
        "numeric",
    )
    demo = load_method_config(CONFIG_DIR / "synthetic.yaml")["train_params"]["loss_weights"]
    assert demo["keypoint_semantic"] == 0 and demo["structure"] == 0  # no SAM/DINO weights here
    # the Table-2 rows differ from the full model only in what they switch
    full = load_method_config(CONFIG_DIR / "ablations/taichi_full.yaml")
    assert full == taichi
    ks = load_method_config(CONFIG_DIR / "ablations/taichi_ks.yaml")
    assert ks["train_params"]["loss_weights"]["structure"] == 0
    assert apply_overrides(ks, {"train_params.loss_weights.structure": 0.1}) == taichi


def test_schema_rejects_bad_cpab_params() -> None:
    from methods.engine.config import MethodConfigError

    with pytest.raises(MethodConfigError, match="cpab_params.*fit"):
        tiny_config(**{"model_params.cpab_params.fit": "lbfgs"})
    with pytest.raises(MethodConfigError, match="cpab_params"):
        tiny_config(**{"model_params.cpab_params.local_cell": [4, 4]})
    with pytest.raises(ValueError, match="keypoint_gradient: true needs fit: fast"):
        build(
            tiny_config(
                **{
                    "model_params.cpab_params.fit": "adam",
                    "model_params.cpab_params.keypoint_gradient": True,
                }
            )
        )


# ----------------------------------------------------------------------------- every config


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_backward_deterministic_and_state_dict_round_trip(name: str) -> None:
    config = tiny_config(name)
    source, driving = images()
    results = []
    epoch = config["train_params"]["bg_start"]  # every network in use (vox: bg from epoch 10)
    for _ in range(2):
        model = build(config, seed=3, epoch=epoch).train()
        losses, generated = model(source, driving)
        results.append((losses, generated["prediction"]))
    losses, prediction = results[-1]
    expected = {"perceptual", "equivariance_value", "warp_loss"}
    expected |= {"bg"} if config["model_params"]["common_params"]["bg"] else set()
    weights = config["train_params"]["loss_weights"]
    expected |= {k for k in ("keypoint_semantic", "structure") if weights[k] != 0}
    assert set(losses) == expected
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert prediction.shape == (2, 3, SIZE, SIZE)
    for key in losses:  # same seed, same numbers
        torch.testing.assert_close(results[0][0][key], losses[key], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], prediction, rtol=1e-5, atol=1e-6)

    sum(losses.values()).backward()
    for key in model.checkpoint_keys:
        grads = [p.grad for p in getattr(model, key).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), key
    frozen = [m for m in (model.keypoint_semantic, model.structure) if m is not None]
    assert all(p.grad is None for m in frozen for p in m.parameters())  # SAM/DINO stay frozen

    state = checkpoints.model_state(model)
    assert set(state) == set(model.checkpoint_keys)
    other = build(config, seed=4).eval()
    checkpoints.load_model_state(other, state)
    model.eval()
    with torch.no_grad():
        a = model.generate(source, model.encode(source), model.encode(driving))["prediction"]
        b = other.generate(source, other.encode(source), other.encode(driving))["prediction"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_layout_is_the_release_one() -> None:
    """N + 2 weight maps and an hourglass input of C (N + 2) + 5 N + 1 channels, as the release."""
    config = tiny_config("taichi", **{"model_params.common_params.num_cpab": 10})
    model = build(config)
    assert model.checkpoint_keys == (
        "inpainting_network",
        "dense_motion_network",
        "kp_detector",
        "bg_predictor",
    )
    dense = model.dense_motion_network.state_dict()
    assert dense["maps.weight"].shape[0] == 12
    first_conv = next(
        m for m in model.dense_motion_network.hourglass.modules() if isinstance(m, torch.nn.Conv2d)
    )
    assert first_conv.in_channels == 3 * 12 + 5 * 10 + 1
    assert model.kp_detector(torch.rand(2, 3, SIZE, SIZE))["fg_kp"].shape == (2, 50, 2)
    no_global = build(
        tiny_config("ablations/taichi_local", **{"model_params.common_params.num_cpab": 10})
    )
    assert no_global.dense_motion_network.state_dict()["maps.weight"].shape[0] == 11
    mgif = build(tiny_config("mgif"))
    assert mgif.checkpoint_keys == ("inpainting_network", "dense_motion_network", "kp_detector")


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("name", "expected"), [("synthetic", 2 + 2), ("ablations/synthetic_local", 2 + 1)]
)
def test_transforms_reaching_dense_motion(name: str, expected: int) -> None:
    model = build(tiny_config(name)).train()
    seen = {}

    def hook(_module, _args, kwargs, out):
        seen["grids"], seen["contribution"] = kwargs["foreground_grids"], out["contribution_maps"]

    model.dense_motion_network.register_forward_hook(hook, with_kwargs=True)
    _, generated = model(*images())
    h = SIZE // 4
    assert seen["grids"].shape == (2, expected - 1, h, h, 2)  # + the background grid
    assert seen["contribution"].shape == (2, expected, h, h)
    assert generated["deformed_source"].shape[1] == expected


def test_grids_move_driving_keypoints_onto_source_keypoints() -> None:
    """Grid k sampled at driving keypoint j of group k gives source keypoint j (both fits), and
    the global grid does so for all keypoints: the closed form evaluated on the dense grid."""
    kd, ks = displaced_keypoints(2, 10, 0.08, seed=1)
    kd, ks = kd.float().view(1, 20, 2), ks.float().view(1, 20, 2)
    size = (33, 33)
    for fit in ("fast", "adam"):
        params = tiny_config()["model_params"]["cpab_params"] | {"fit": fit, "fit_iterations": 100}
        motion = CPABMotion(4, params)
        grids = motion.grids(size, kd, ks, torch.zeros(1, 3, 1, 1))
        assert grids.shape == (1, 5, 33, 33, 2)
        groups = [kd.view(4, 5, 2)[k] for k in range(4)] + [kd[0]]
        targets = [ks.view(4, 5, 2)[k] for k in range(4)] + [ks[0]]
        for k, (points, target) in enumerate(zip(groups, targets, strict=True)):
            grid = grids[0, k].permute(2, 0, 1)[None]  # (1, 2, H, W) to sample from
            moved = F.grid_sample(grid, points.view(1, 1, -1, 2), align_corners=True)[0, :, 0].T
            displacement = (target - points).norm(dim=-1).max()
            # bilinear reading of a 33x33 grid and the fit's residual; the motion is 0.08-0.2
            assert (moved - target).norm(dim=-1).max() < 0.25 * displacement, (fit, k)


def test_fast_and_adam_fits_both_reach_the_keypoints() -> None:
    kd, ks = displaced_keypoints(6, 5, 0.1)
    params = tiny_config()["model_params"]["cpab_params"]
    residual = {}
    for fit in ("fast", "adam"):
        motion = CPABMotion(1, params | {"fit": fit, "fit_iterations": 100})
        theta = motion.fit(motion.local, kd, ks, global_=False)
        assert theta.shape == (6, 58)
        moved = motion.local.transform(kd, theta)
        residual[fit] = (moved - ks).norm(dim=-1).max().item()
        assert residual[fit] < 0.3 * (ks - kd).norm(dim=-1).max().item(), fit
    squares = CPABMotion(1, params | {"tessellation": "squares"})
    assert squares.local.tess == Tessellation(4, 4, kind="squares") and squares.global_.tess.nx == 6


def test_adam_fit_runs_under_no_grad_inference() -> None:
    model = build(tiny_config("ablations/synthetic_release")).eval()
    source, driving = images()
    with torch.no_grad():
        out = model.generate(source, model.encode(source), model.encode(driving))
    assert torch.isfinite(out["prediction"]).all()


@pytest.mark.parametrize("fit", ["fast", "adam"])
def test_keypoint_gradient_switch(fit: str) -> None:
    """Gradients of a loss that only depends on the CPAB grids reach the keypoint head exactly
    when keypoint_gradient is true (fast fit); detached (the release) they cannot."""
    source, driving = images()
    for flag in (True, False):
        if flag and fit == "adam":
            continue  # refused at build (test_schema_rejects_bad_cpab_params)
        config = tiny_config(
            **{
                "model_params.cpab_params.fit": fit,
                "model_params.cpab_params.keypoint_gradient": flag,
            }
        )
        model = build(config).train()
        kp_s, kp_d = model.kp_detector(source)["fg_kp"], model.kp_detector(driving)["fg_kp"]
        grids = model.motion.grids((8, 8), kp_d, kp_s, source)
        if not flag:
            assert not grids.requires_grad
            continue
        target = torch.linspace(-1, 1, grids.numel()).view_as(grids)
        (grids - target).pow(2).sum().backward()
        grads = [p.grad for p in model.kp_detector.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0


def test_dropout_never_drops_the_background() -> None:
    config = tiny_config(
        **{
            "train_params.dropout_startp": 0.9,
            "train_params.dropout_maxp": 0.95,
            "train_params.dropout_epoch": 5,
        }
    )
    model = build(config, epoch=0).train()
    assert model.dropout_p == pytest.approx(0.9)
    dropped = 0
    for seed in range(4):
        model.rng = torch.Generator().manual_seed(seed)
        _, generated = model(*images(seed=seed))
        contribution = generated["contribution_maps"]
        assert (contribution[:, 0] > 0).all()
        dropped += int((contribution[:, 1:].amax(dim=(2, 3)) == 0).sum())
    assert dropped > 0  # foreground transforms (locals and global) are dropped
    model.eval()
    assert model.dropout_p is None


# ----------------------------------------------------------------------------- losses


def test_zero_weight_losses_are_never_imported(monkeypatch) -> None:
    """The demo builds without the SAM/DINO modules (or their weights) even being importable."""
    monkeypatch.setitem(sys.modules, "methods.losses.keypoint_semantic", None)
    monkeypatch.setitem(sys.modules, "methods.losses.structure", None)
    model = build_model(tiny_config())
    assert model.keypoint_semantic is None and model.structure is None
    with pytest.raises(ImportError):
        build_model(tiny_config("ablations/taichi_ks"), pretrained_losses=False)


@pytest.mark.parametrize(
    ("name", "weights_file"),
    [("ablations/taichi_ks", "sam_vit_b"), ("ablations/taichi_struc", "dino_vitb8")],
)
def test_missing_loss_weights_name_the_file(name: str, weights_file: str, tmp_path: Path) -> None:
    if reason := loss_modules_importable():
        pytest.skip(reason)
    from data_prep.weights import MissingWeightsError

    config = load_method_config(
        CONFIG_DIR / f"{name}.yaml",
        overrides={
            k: v
            for k, v in TINY.items()
            if not k.startswith(
                ("train_params.keypoint_semantic_params", "train_params.structure_params")
            )
        },
    )
    with pytest.raises(
        MissingWeightsError, match=rf"missing weights file .*animbench weights fetch {weights_file}"
    ):
        build_model(config, weights_dir=tmp_path)


def test_sam_and_dino_losses_are_weighted_and_train_only_the_model() -> None:
    config = tiny_config(
        "taichi",
        **{
            "train_params.loss_weights.keypoint_semantic": 2.0,
            "train_params.loss_weights.structure": 0.5,
        },
    )
    model = build(config).train()
    source, driving = images()
    losses, generated = model(source, driving)
    ks = model.keypoint_semantic(source, driving, generated["kp_source"], generated["kp_driving"])
    struc = model.structure(generated["prediction"], driving)
    torch.testing.assert_close(losses["keypoint_semantic"], 2.0 * ks, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["structure"], 0.5 * struc, rtol=1e-4, atol=1e-6)
    assert 0 <= ks.item() <= 2 * 2.0 + 1e-6 and struc.item() >= 0
    model.zero_grad()
    losses["keypoint_semantic"].backward()  # SAM loss: gradient through the keypoints only
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.kp_detector.parameters()
    )
    assert all(p.grad is None for p in model.keypoint_semantic.parameters())
    assert set(checkpoints.model_state(model)) == set(model.checkpoint_keys)  # no SAM/DINO weights


# ----------------------------------------------------------------------------- animation, AVD


def test_relative_motion_and_movement_scale() -> None:
    model = build(tiny_config()).eval()
    gen = torch.Generator().manual_seed(0)
    initial = torch.rand(2, 10, 2, generator=gen) - 0.5
    delta = 0.05 * torch.randn(2, 10, 2, generator=gen)
    source = {"fg_kp": 1.5 * initial + 0.1}  # hull area x 2.25: movement scale 1.5
    moved = model.relative_motion(source, {"fg_kp": initial + delta}, {"fg_kp": initial})
    torch.testing.assert_close(moved["fg_kp"], source["fg_kp"] + delta)
    scaled = model.relative_motion(
        source, {"fg_kp": initial + delta}, {"fg_kp": initial}, adapt_movement_scale=True
    )
    torch.testing.assert_close(scaled["fg_kp"], source["fg_kp"] + 1.5 * delta, rtol=1e-4, atol=1e-5)
    assert "frame" not in scaled  # no background motion in relative animation, as TPSMM


def test_avd_round_trip_and_animation_in_every_mode() -> None:
    model = build(tiny_config()).eval()
    source_frames, _ = images(seed=2)
    with torch.no_grad():
        motion = model.encode(source_frames)
    params = model.avd_encode(motion)
    assert params.shape == (2, 2 * 5 * 2) and avd_input_size(model) == params.shape[1]
    decoded = model.avd_decode(params, like=motion)
    torch.testing.assert_close(decoded["fg_kp"], motion["fg_kp"], rtol=0, atol=0)
    assert "frame" not in decoded

    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    driving = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    model.avd_network = build_avd_network(
        model, {"id_bottle_size": 8, "pose_bottle_size": 8}
    ).eval()
    for mode in ("standard", "relative", "avd"):
        frames = list(animate_frames(model, source, driving, mode=mode, batch_size=2))
        assert len(frames) == 3 and all(
            f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames
        ), mode
    # relative animation of an unmoving video keeps the source's keypoints, hence the source pose
    with torch.no_grad():
        still = model.relative_motion(motion, motion, motion, adapt_movement_scale=True)
    torch.testing.assert_close(still["fg_kp"], motion["fg_kp"], rtol=1e-5, atol=1e-5)
    assert math.isfinite(float(params.sum()))

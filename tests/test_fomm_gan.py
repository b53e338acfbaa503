"""FOMM's GAN: the discriminator's layout, the adversarial losses, the two-phase training step."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

from methods.discriminators.multiscale import MultiScaleDiscriminator, scale_key
from methods.engine import checkpoints, distributed
from methods.engine.config import load_method_config
from methods.engine.train import STATE_NAME, RunControl, TrainOptions, _method_task, _Trainer, train
from methods.losses.adversarial import (
    discriminator_gan_loss,
    feature_matching_loss,
    generator_gan_loss,
)
from methods.registry import build_model
from tests.conftest import REPO, TINY_FOMM

pytestmark = pytest.mark.usefixtures("one_thread")

#: TINY_FOMM with the GAN on: a small spectral-norm discriminator that sees the keypoints.
TINY_GAN = {
    **TINY_FOMM,
    "model_params.discriminator_params": {
        "scales": [1, 0.5], "block_expansion": 4, "max_features": 16, "num_blocks": 3, "sn": True, "use_kp": True,
    },
    "train_params.lr_discriminator": 2.0e-4,
    "train_params.loss_weights.generator_gan": 1,
    "train_params.loss_weights.discriminator_gan": 1,
    "train_params.loss_weights.feature_matching": [10, 10, 10],
    "train_params.perceptual_loss": "pixel_pyramid",
}


def gan_config(**overrides) -> dict:
    return load_method_config(REPO / "methods/configs/fomm/synthetic.yaml", overrides={**TINY_GAN, **overrides})


def test_discriminators_of_the_gan_configs_have_the_released_layouts():
    layouts = json.loads((REPO / "tests/data/fomm_discriminator_state_dict.json").read_text())
    for config, reference in (("vox-adv", "vox-adv-256"), ("taichi-adv", "taichi-adv-256"), ("mgif", "mgif-256")):
        model = build_model(load_method_config(REPO / f"methods/configs/fomm/{config}.yaml"), with_losses=False)
        assert "discriminator" in model.checkpoint_keys and model.discriminator_groups == ("discriminator",)
        ours = [[k, list(v.shape)] for k, v in model.discriminator.state_dict().items()]
        assert ours == layouts[reference], config
    plain = build_model(load_method_config(REPO / "methods/configs/fomm/vox.yaml"), with_losses=False)
    assert plain.discriminator is None and plain.checkpoint_keys == ("generator", "kp_detector")
    assert plain.discriminator_groups == ()


def test_discriminator_shapes_scales_and_keypoint_input():
    disc = MultiScaleDiscriminator(scales=[1, 0.5], block_expansion=4, max_features=16, num_blocks=3, use_kp=True, num_kp=5)
    assert list(disc.discs) == [scale_key(1), scale_key(0.5)] == ["1", "0-5"]
    image = torch.rand(2, 3, 64, 64)
    kp = torch.rand(2, 5, 2) * 2 - 1
    outputs = disc(disc.pyramid()(image), kp)
    (features, prediction), (features_half, prediction_half) = outputs
    # 4x4 valid convs, 2x2 pooling after all blocks but the last: 64 -> 61 -> 30 -> 27 -> 13 -> 10
    assert [f.shape[1:] for f in features] == [(8, 30, 30), (16, 13, 13), (16, 10, 10)]
    assert prediction.shape == (2, 1, 10, 10)
    assert features_half[0].shape[-1] == 14  # 32 -> 29 -> 14
    with pytest.raises(ValueError, match="needs the driving keypoints"):
        disc(disc.pyramid()(image))
    moved = disc(disc.pyramid()(image), kp.flip(1) * 0.5)
    assert not torch.equal(moved[0][1], prediction)  # the keypoint heatmaps are an input


def test_adversarial_losses_on_hand_made_scores():
    ones, zeros = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    a = [torch.full((1, 2, 3, 3), 1.0), torch.full((1, 2, 2, 2), 2.0)]
    b = [torch.full((1, 2, 3, 3), 0.5), torch.full((1, 2, 2, 2), 2.5)]
    real, fake = [(a, ones)], [(b, zeros)]
    assert generator_gan_loss(fake, 2.0).item() == pytest.approx(2.0)  # 2 * mean((1 - 0)^2)
    assert generator_gan_loss(real, 2.0).item() == pytest.approx(0.0)
    assert discriminator_gan_loss(real, fake, 3.0).item() == pytest.approx(0.0)  # D perfect
    assert discriminator_gan_loss(fake, real, 1.0).item() == pytest.approx(2.0)  # D inverted
    # 10 * 0.5 + 4 * 0.5, the zero-weight block skipped
    assert feature_matching_loss(real, fake, [10, 4]).item() == pytest.approx(7.0)
    assert feature_matching_loss(real, fake, [0, 4]).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="1 weights for 2 discriminator blocks"):
        feature_matching_loss(real, fake, [1])


def test_a_gan_config_without_a_discriminator_is_a_clear_error():
    config = gan_config()
    del config["model_params"]["discriminator_params"]
    with pytest.raises(ValueError, match="generator_gan is not 0 but model_params has no discriminator_params"):
        build_model(config)


def test_training_step_is_the_references_two_phases(tiny_dataset, tmp_path):
    """One trainer step equals: generator loss -> step generator and keypoint Adams -> clear the
    discriminator's gradients -> discriminator loss on the detached prediction -> step its Adam."""
    config = gan_config()
    ctx = distributed.context_from_env()
    device = torch.device("cpu")
    task = _method_task(config, TrainOptions(tiny_dataset, tmp_path / "run", progress=False), ctx, device)
    trainer = _Trainer(task, RunControl(progress=False), ctx, device)
    model = trainer.model
    reference = copy.deepcopy(model)
    optimizers = {
        name: torch.optim.Adam(params, lr=config["train_params"][f"lr_{name}"], betas=(0.5, 0.999))
        for name, params in reference.optimizer_groups().items()
    }
    gen = torch.Generator().manual_seed(0)
    batch = {"source": torch.rand(4, 3, 64, 64, generator=gen), "driving": torch.rand(4, 3, 64, 64, generator=gen)}

    torch.manual_seed(5)  # the equivariance warps draw from the global stream (model.rng is None)
    logged = trainer._train_step(batch)

    torch.manual_seed(5)
    losses, generated = reference(batch["source"], batch["driving"])
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in reference.discriminator.parameters())
    for name in ("generator", "kp_detector"):
        optimizers[name].step()
        optimizers[name].zero_grad()
    optimizers["discriminator"].zero_grad()  # what the generator's loss left there is dropped
    losses_d, _ = reference(batch["source"], batch["driving"], phase="discriminator", generated=generated)
    sum(losses_d.values()).backward()
    optimizers["discriminator"].step()

    assert set(logged) == {*losses, *losses_d, "total"} >= {"gen_gan", "feature_matching", "disc_gan"}
    assert logged["disc_gan"] == pytest.approx(losses_d["disc_gan"].item(), rel=1e-5)
    assert logged["total"] == pytest.approx(sum(v.item() for v in losses.values()), rel=1e-5)
    for key in ("generator", "kp_detector", "discriminator"):
        ours, theirs = getattr(model, key).state_dict(), getattr(reference, key).state_dict()
        for name, value in ours.items():
            torch.testing.assert_close(value, theirs[name], rtol=0, atol=1e-6, msg=f"{key}.{name}")


def test_gan_training_saves_the_discriminator_and_resumes_exactly(tiny_dataset, tmp_path):
    config = gan_config()
    whole = train(config, TrainOptions(tiny_dataset, tmp_path / "whole", progress=False))
    payload = checkpoints.read(whole)
    assert {"discriminator", "optimizer_discriminator"} <= set(payload)
    log = pd.read_csv(whole.parent / "train_log.csv")
    assert {"loss_gen_gan", "loss_feature_matching", "loss_disc_gan", "lr_discriminator"} <= set(log.columns)

    broken = TrainOptions(tiny_dataset, tmp_path / "broken", progress=False)
    stopped = TrainOptions(**{**broken.__dict__, "stop_after_steps": 1})
    assert train(config, stopped) == broken.out_dir / STATE_NAME
    resumed = checkpoints.read(train(config, broken))
    for key in ("generator", "kp_detector", "discriminator"):
        for name, value in payload[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=1e-6, msg=f"{key}.{name}")

    # the checkpoint loads strictly into a model of the same config, discriminator included
    model, _ = checkpoints.load_model(whole)
    assert model.discriminator is not None

"""First Order Motion Model (Siarohin et al., NeurIPS 2019) as an :class:`AnimationModel`.

Adversarial training as the reference's: when ``loss_weights.generator_gan`` is not 0 (the
``mgif``, ``vox-adv`` and ``taichi-adv`` configs) a multi-scale patch discriminator
(``model_params.discriminator_params``) is part of the model and of its checkpoints
(``discriminator``), the generator's loss gains the least-squares GAN term and discriminator
feature matching, and after every generator step the trainer steps the discriminator on its own
loss (``forward(..., phase="discriminator")``). Otherwise (weight 0, the vox/taichi/ted configs,
as the reference's) there is no discriminator and checkpoints hold ``generator`` and
``kp_detector`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR
from methods.base import AnimationModel, Motion
from methods.detectors.keypoint import KPDetector
from methods.discriminators.multiscale import MultiScaleDiscriminator
from methods.generators.occlusion_aware import OcclusionAwareGenerator
from methods.losses.adversarial import (
    discriminator_gan_loss,
    feature_matching_loss,
    generator_gan_loss,
)
from methods.losses.equivariance import equivariance_terms
from methods.losses.perceptual import PyramidPerceptualLoss
from methods.motion.relative import movement_scale, relative_linear, relative_points
from methods.registry import register_method


@register_method("fomm")
class FOMM(AnimationModel):
    """Keypoint detector + occlusion-aware generator, built from a reference-shaped config.

    ``model_params.common_params.align_corners`` is used for every ``grid_sample`` (sparse
    motions, generator warps, equivariance transform). The released checkpoints were trained on
    torch 1.0, whose ``grid_sample`` behaved as ``align_corners=True``; the reference code passes
    no flag, so on modern torch it runs with ``False`` and warps slightly differently.

    ``with_losses=False`` skips building the loss modules (no VGG file needed), for inference.
    The equivariance warps draw from ``self.rng`` (a ``torch.Generator``) when it is set,
    otherwise from the global torch RNG.
    """

    checkpoint_keys = ("generator", "kp_detector")
    sync_batchnorm = True  # the reference converts every batch norm to SyncBatchNorm

    def __init__(
        self,
        config: dict[str, Any],
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        with_losses: bool = True,
    ) -> None:
        super().__init__(config)
        model_params = config["model_params"]
        common = dict(model_params["common_params"])
        align_corners = bool(common.pop("align_corners", True))
        self.align_corners = align_corners
        self.estimate_jacobian = bool(common.get("estimate_jacobian", False))
        self.kp_detector = KPDetector(**model_params["kp_detector_params"], **common)
        self.generator = OcclusionAwareGenerator(
            **model_params["generator_params"], **common, align_corners=align_corners
        )
        self.rng: torch.Generator | None = None

        train_params = config.get("train_params", {})
        self.transform_params = dict(train_params.get("transform_params", {}))
        self.loss_weights = dict(train_params.get("loss_weights", {}))
        self.perceptual: PyramidPerceptualLoss | None = None
        if with_losses and sum(self.loss_weights.get("perceptual", [])) != 0:
            self.perceptual = PyramidPerceptualLoss(
                train_params.get("perceptual_loss", "vgg19"),
                train_params["scales"],
                self.loss_weights["perceptual"],
                num_channels=common.get("num_channels", 3),
                weights_dir=weights_dir,
            )
        # Built with or without losses: an adv release's discriminator then loads strictly.
        self.discriminator: MultiScaleDiscriminator | None = None
        if float(self.loss_weights.get("generator_gan", 0)) != 0:
            if "discriminator_params" not in model_params:
                raise ValueError(
                    "train_params.loss_weights.generator_gan is not 0 but model_params has no "
                    "discriminator_params (the GAN needs its discriminator)"
                )
            num_channels = common.get("num_channels", 3)
            self.discriminator = MultiScaleDiscriminator(
                **model_params["discriminator_params"], num_channels=num_channels, num_kp=common["num_kp"]
            )
            self.gan_pyramid = self.discriminator.pyramid(num_channels)
            self.checkpoint_keys = (*type(self).checkpoint_keys, "discriminator")
            self.discriminator_groups = ("discriminator",)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "generator": list(self.generator.parameters()),
            "kp_detector": list(self.kp_detector.parameters()),
        }
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def encode(self, image: torch.Tensor) -> Motion:
        return self.kp_detector(image)

    def generate(
        self,
        source: torch.Tensor,
        motion_source: Motion,
        motion_driving: Motion,
        source_features: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        return self.generator(
            source, kp_driving=motion_driving, kp_source=motion_source, encoded=source_features
        )

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        return self.generator.encode(source)

    def relative_motion(
        self,
        motion_source: Motion,
        motion_driving: Motion,
        motion_driving_initial: Motion,
        adapt_movement_scale: bool = False,
    ) -> Motion:
        # The reference's normalize_kp with use_relative_movement and use_relative_jacobian on.
        scale = (
            movement_scale(motion_source["value"], motion_driving_initial["value"])
            if adapt_movement_scale
            else 1.0
        )
        out = dict(motion_driving)
        out["value"] = relative_points(
            motion_source["value"], motion_driving["value"], motion_driving_initial["value"], scale
        )
        if "jacobian" in motion_driving:
            out["jacobian"] = relative_linear(
                motion_source["jacobian"], motion_driving["jacobian"], motion_driving_initial["jacobian"]
            )
        return out

    def avd_encode(self, motion: Motion) -> torch.Tensor:
        # Per keypoint [x, y, J00, J01, J10, J11] (MRAA's shift/affine layout), or [x, y].
        parts = [motion["value"]]
        if "jacobian" in motion:
            parts.append(motion["jacobian"].flatten(2))
        return torch.cat(parts, dim=-1).flatten(1)

    def avd_decode(self, params: torch.Tensor, like: Motion) -> Motion:
        per_kp = 6 if "jacobian" in like else 2
        params = params.view(params.shape[0], -1, per_kp)
        out = dict(like)
        out["value"] = params[..., :2]
        if per_kp == 6:
            out["jacobian"] = params[..., 2:].unflatten(-1, (2, 2))
        return out

    def forward(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        phase: str = "generator",
        generated: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if phase == "discriminator":
            return self._discriminator_losses(driving, generated), {}
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        generated = self.generate(source, kp_source, kp_driving)
        for name, kp in (("kp_source", kp_source), ("kp_driving", kp_driving)):
            generated[name] = kp["value"]
            if "jacobian" in kp:
                generated[f"{name}_jacobian"] = kp["jacobian"]

        losses: dict[str, torch.Tensor] = {}
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(generated["prediction"], driving)
        if self.discriminator is not None:
            judged, judged_real = self._judge(generated["prediction"], driving, kp_driving["value"])
            losses["gen_gan"] = generator_gan_loss(judged, float(self.loss_weights["generator_gan"]))
            matching = [float(w) for w in self.loss_weights.get("feature_matching", [])]
            if sum(matching) != 0:
                losses["feature_matching"] = feature_matching_loss(judged_real, judged, matching)

        w_value = float(self.loss_weights.get("equivariance_value", 0))
        w_jac = (
            float(self.loss_weights.get("equivariance_jacobian", 0))
            if self.estimate_jacobian
            else 0.0
        )
        if w_value != 0 or w_jac != 0:
            value_loss, jac_loss, transformed_frame, transformed_kp = equivariance_terms(
                self.kp_detector,
                driving,
                kp_driving,
                self.transform_params,
                points_key="value",
                matrix_key="jacobian" if w_jac != 0 else None,
                generator=self.rng,
                align_corners=self.align_corners,
            )
            generated["transformed_frame"] = transformed_frame
            generated["transformed_kp"] = transformed_kp["value"]
            if w_value != 0:
                losses["equivariance_value"] = w_value * value_loss
            if w_jac != 0:
                losses["equivariance_jacobian"] = w_jac * jac_loss
        return losses, generated

    def _judge(self, prediction: torch.Tensor, driving: torch.Tensor, kp_driving: torch.Tensor):
        """The discriminator on the generated frame, then on the real one (the reference's order:
        spectral norm's power iteration advances at every call in training mode), both seeing
        the detached driving keypoints."""
        kp = kp_driving.detach()
        return self.discriminator(self.gan_pyramid(prediction), kp), self.discriminator(self.gan_pyramid(driving), kp)

    def _discriminator_losses(self, driving: torch.Tensor, generated: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """The discriminator's loss on the generator phase's outputs (prediction detached)."""
        if self.discriminator is None or generated is None:
            raise ValueError("the discriminator phase needs a GAN config and the generator phase's outputs")
        judged, judged_real = self._judge(generated["prediction"].detach(), driving, generated["kp_driving"])
        return {"disc_gan": discriminator_gan_loss(judged_real, judged, float(self.loss_weights["discriminator_gan"]))}

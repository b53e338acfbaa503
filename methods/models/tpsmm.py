"""Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022) as an :class:`AnimationModel`.

One training step (:meth:`TPSMM.forward`):

1. a ResNet-18 regresses K x 5 keypoints on source and driving (``kp_detector``);
2. from epoch ``bg_start`` on, a ResNet-18 on the stacked frames predicts the background affine
   (``bg_predictor``);
3. the dense-motion network fits K TPS transforms (driving keypoints -> source keypoints, closed
   form), warps the source by each and by the background transform, and predicts their per-pixel
   softmax weights - with TPS dropout before ``dropout_epoch`` - and the occlusion masks;
4. the inpainting network warps and masks the source's features and renders the driving frame;
5. losses: multi-scale perceptual, equivariance (keypoints of a randomly TPS-warped driving
   frame), warp (warped source features vs driving features), background (forward and backward
   affines compose to the identity).

The Table-4 ablations switch parts off through reference config keys: ``dropout_epoch: 0`` (no
TPS dropout), ``common_params.multi_mask: false`` (one occlusion mask), ``loss_weights.bg: 0``,
``loss_weights.warp_loss: 0``.

Checkpoints hold ``inpainting_network``, ``dense_motion_network``, ``kp_detector`` and, with
``bg: true``, ``bg_predictor``, as the reference's; its ``avd_network`` belongs to the AVD step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR
from methods.background.resnet_affine import ResNetAffine
from methods.base import AnimationModel, Motion
from methods.dense_motion.transform_based import DenseMotionNetwork
from methods.detectors.resnet_keypoints import ResNetKeypoints
from methods.generators.inpainting import InpaintingNetwork
from methods.losses.background import background_active, background_loss
from methods.losses.equivariance import equivariance_value_loss
from methods.losses.perceptual import PyramidPerceptualLoss
from methods.losses.warp import warp_loss
from methods.motion.relative import movement_scale
from methods.motion.tps import random_tps
from methods.registry import register_method

#: The reference clips gradients of these networks to infinity-norm 10 before every step.
GRAD_CLIP_MAX_NORM = 10.0
GRAD_CLIP_NORM_TYPE = math.inf


def dropout_probability(epoch: int, train_params: dict[str, Any]) -> float | None:
    """TPS dropout probability at ``epoch`` (0-based): rises linearly from ``dropout_startp`` by
    ``dropout_maxp / dropout_inc_epoch`` per epoch, capped at ``dropout_maxp``; ``None`` (no
    dropout: a plain softmax) from ``dropout_epoch`` on, and everywhere when ``dropout_epoch``
    is 0 or absent.

    Before ``dropout_epoch`` the dropout path is taken even at probability 0 (``dropout_startp:
    0``, the taichi and ted configs' first epoch), as the reference does: it still draws one
    random number per transform and adds 1e-6 to the partition, so the random stream and the
    weights differ from a softmax."""
    if epoch >= int(train_params.get("dropout_epoch", 0)):
        return None
    maxp = float(train_params["dropout_maxp"])
    ramp = epoch / float(train_params["dropout_inc_epoch"]) * maxp + float(train_params["dropout_startp"])
    return min(ramp, maxp)


@register_method("tpsmm")
class TPSMM(AnimationModel):
    """Keypoints, TPS dense motion, inpainting generator, optional background predictor.

    ``model_params.common_params.align_corners`` (TPSMM: true, as its reference passes) is used by
    every ``grid_sample`` and flow resize. ``with_losses=False`` skips the loss modules (no VGG
    file needed). Random draws (equivariance warps, TPS dropout) use ``self.rng`` when set,
    otherwise the global torch RNG.

    Motion descriptors are ``{"fg_kp": (B, K*5, 2)}``; with a background predictor ``encode``
    also keeps the frame under ``"frame"`` so that :meth:`generate` can predict the background
    affine between source and driving frame, as the reference's reconstruction does. Motions
    without ``"frame"`` (relative, AVD) use no background motion, as the reference's animation.
    """

    #: ``common_params`` key holding the number of keypoint groups of 5 (CPAB's release: num_cpab).
    groups_key = "num_tps"

    def __init__(
        self,
        config: dict[str, Any],
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        with_losses: bool = True,
        num_transforms: int | None = None,
    ) -> None:
        """``num_transforms``: foreground transforms the dense-motion network combines (default
        one per keypoint group; CPAB passes its N local + 1 global)."""
        super().__init__(config)
        model_params = config["model_params"]
        common = dict(model_params["common_params"])
        self.align_corners = bool(common.get("align_corners", True))
        num_tps, num_channels = int(common[self.groups_key]), int(common["num_channels"])
        multi_mask, use_bg = bool(common.get("multi_mask", True)), bool(common.get("bg", False))
        generator_params = model_params["generator_params"]

        self.inpainting_network = InpaintingNetwork(
            num_channels, **generator_params, multi_mask=multi_mask, align_corners=self.align_corners
        )
        self.dense_motion_network = DenseMotionNetwork(
            **model_params["dense_motion_params"],
            num_tps=num_tps,
            num_channels=num_channels,
            bg=use_bg,
            multi_mask=multi_mask,
            num_occlusion_masks=int(generator_params["num_down_blocks"]) + 1,
            align_corners=self.align_corners,
            num_transforms=num_transforms,
        )
        kp_width = int(model_params.get("kp_detector_params", {}).get("width", 64))
        bg_width = int(model_params.get("bg_predictor_params", {}).get("width", 64))
        self.kp_detector = ResNetKeypoints(num_tps, num_channels, width=kp_width)
        self.bg_predictor: ResNetAffine | None = (
            ResNetAffine(num_channels, width=bg_width) if use_bg else None
        )
        keys = ("inpainting_network", "dense_motion_network", "kp_detector")
        self.checkpoint_keys = keys + (("bg_predictor",) if use_bg else ())

        self.train_params = dict(config.get("train_params", {}))
        self.loss_weights = dict(self.train_params.get("loss_weights", {}))
        self.transform_params = dict(self.train_params.get("transform_params", {}))
        self.bg_start = int(self.train_params.get("bg_start", 0))
        self.rng: torch.Generator | None = None
        #: Current training epoch (set by the trainer); ``None`` outside training.
        self.epoch: int | None = None
        self.perceptual: PyramidPerceptualLoss | None = None
        if with_losses and sum(self.loss_weights.get("perceptual", [])) != 0:
            self.perceptual = PyramidPerceptualLoss(
                self.train_params.get("perceptual_loss", "vgg19"),
                self.train_params["scales"],
                self.loss_weights["perceptual"],
                num_channels=num_channels,
                weights_dir=weights_dir,
            )

    # ------------------------------------------------------------------ schedules and hooks

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def dropout_p(self) -> float | None:
        """TPS dropout probability now: the epoch's ramp value while training before
        ``dropout_epoch``, else ``None`` (no dropout)."""
        if not self.training or self.epoch is None:
            return None
        return dropout_probability(self.epoch, self.train_params)

    @property
    def uses_background(self) -> bool:
        """Background motion is predicted (always at inference, from ``bg_start`` in training)."""
        if self.bg_predictor is None:
            return False
        return self.epoch is None or not self.training or background_active(self.epoch, self.bg_start)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        # The reference steps one Adam for kp_detector + dense motion + inpainting and a second,
        # same lr and betas, for bg_predictor. Adam is per-parameter, so one optimizer over all
        # is the same update; parameters without a gradient (bg_predictor before bg_start) are
        # skipped by Adam as the reference skips that optimizer.
        return {"generator": [p for key in self.checkpoint_keys for p in getattr(self, key).parameters()]}

    def before_optimizer_step(self) -> None:
        nets = [self.kp_detector, self.dense_motion_network]
        if self.uses_background:
            nets.append(self.bg_predictor)
        for net in nets:
            nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP_MAX_NORM, norm_type=GRAD_CLIP_NORM_TYPE)

    # ------------------------------------------------------------------ motion and generation

    def encode(self, image: torch.Tensor) -> Motion:
        motion = dict(self.kp_detector(image))
        if self.bg_predictor is not None:
            motion["frame"] = image
        return motion

    def _dense_motion(
        self, source: torch.Tensor, motion_source: Motion, motion_driving: Motion, bg_param: torch.Tensor | None
    ) -> dict:
        return self.dense_motion_network(
            source,
            kp_driving=motion_driving,
            kp_source=motion_source,
            bg_param=bg_param,
            dropout_p=self.dropout_p,
            generator=self.rng,
        )

    def generate(
        self,
        source: torch.Tensor,
        motion_source: Motion,
        motion_driving: Motion,
        source_features: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        bg_param = None
        if self.uses_background and "frame" in motion_driving:
            bg_param = self.bg_predictor(source, motion_driving["frame"])
        dense = self._dense_motion(source, motion_source, motion_driving, bg_param)
        return self.inpainting_network(source, dense, warp_features=False, encoded=source_features)

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        return self.inpainting_network.encode(source)

    def forward(
        self, source: torch.Tensor, driving: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        bg_param = self.bg_predictor(source, driving) if self.uses_background else None
        w = self.loss_weights
        w_warp, w_bg, w_eq = (float(w.get(k, 0)) for k in ("warp_loss", "bg", "equivariance_value"))

        dense = self._dense_motion(source, kp_source, kp_driving, bg_param)
        generated = self.inpainting_network(source, dense, warp_features=w_warp != 0)
        generated["kp_source"], generated["kp_driving"] = kp_source["fg_kp"], kp_driving["fg_kp"]

        losses: dict[str, torch.Tensor] = {}
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(generated["prediction"], driving)

        if w_eq != 0:
            warp = random_tps(
                driving.shape[0], **self.transform_params, generator=self.rng,
                device=driving.device, dtype=driving.dtype,
            )
            grid = warp.grid(driving.shape[2:])
            transformed = F.grid_sample(
                driving, grid, padding_mode="reflection", align_corners=self.align_corners
            )
            transformed_kp = self.kp_detector(transformed)["fg_kp"]
            generated["transformed_frame"], generated["transformed_kp"] = transformed, transformed_kp
            losses["equivariance_value"] = w_eq * equivariance_value_loss(
                kp_driving["fg_kp"], warp.warp_points(transformed_kp)
            )

        if w_warp != 0:
            targets = self.inpainting_network.encode_driving(driving, generated["occlusion_map"])
            losses["warp_loss"] = w_warp * warp_loss(targets, generated["warped_encoder_maps"])

        if bg_param is not None and w_bg != 0:
            backward = self.bg_predictor(driving, source)
            losses["bg"] = w_bg * background_loss(bg_param, backward)
        return losses, generated

    # ------------------------------------------------------------------ animation and AVD

    def relative_motion(
        self,
        motion_source: Motion,
        motion_driving: Motion,
        motion_driving_initial: Motion,
        adapt_movement_scale: bool = False,
    ) -> Motion:
        """Source keypoints moved by the driving keypoints' displacement since the first frame.

        The reference's demo always adapts the scale (square root of the ratio of the keypoint
        convex-hull areas of source and initial driving frame); here it is per sample and
        optional. The result carries no ``"frame"``: no background motion, as in the reference.
        """
        displacement = motion_driving["fg_kp"] - motion_driving_initial["fg_kp"]
        if adapt_movement_scale:
            displacement = displacement * movement_scale(motion_source["fg_kp"], motion_driving_initial["fg_kp"])
        return {"fg_kp": motion_source["fg_kp"] + displacement}

    def avd_encode(self, motion: Motion) -> torch.Tensor:
        return motion["fg_kp"].flatten(1)

    def avd_decode(self, params: torch.Tensor, like: Motion) -> Motion:
        out = {k: v for k, v in like.items() if k not in ("fg_kp", "frame")}
        out["fg_kp"] = params.view(params.shape[0], -1, 2)
        return out

"""Motion Representations for Articulated Animation (Siarohin et al., CVPR 2021) as an
:class:`AnimationModel`.

One training step: PCA regions of source and driving (``detectors/region.py``,
``motion/pca.py``), the background motion between them (``background/conv_affine.py``), the
generator with its pixel-wise flow predictor (``generators/skip_connections.py``,
``dense_motion/region_based.py``), then the perceptual pyramid loss and the two equivariance
losses (region shifts and affines under a random TPS warp of the driving frame). One optimizer
(``reconstruction``) trains all three networks, as in the reference.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR
from methods.background.conv_affine import BGMotionPredictor
from methods.base import AnimationModel, Motion
from methods.detectors.region import RegionPredictor
from methods.generators.skip_connections import Generator
from methods.losses.equivariance import equivariance_affine_loss, equivariance_terms
from methods.losses.perceptual import PyramidPerceptualLoss
from methods.motion.relative import movement_scale
from methods.registry import register_method

#: Key under which :meth:`MRAA.encode` keeps the frame itself, for the background predictor.
FRAME_KEY = "frame"


@register_method("mraa")
class MRAA(AnimationModel):
    """Region predictor + background predictor + skip-connection generator.

    ``model_params.align_corners`` (default ``false``: the released checkpoints were trained on
    torch 1.4, whose ``grid_sample`` default was already ``align_corners=False``) is used for every
    ``grid_sample`` (sparse motions, generator warps, equivariance transform).

    Motion dicts (from :meth:`encode`) hold ``shift``, ``affine``, ``covar``, ``heatmap`` and the
    encoded ``frame``. :meth:`generate` predicts the background motion from ``source`` and the
    driving motion's ``frame`` when it has one, as the reference does in training and
    reconstruction; without it the background stays still, as in the reference's animation (so
    :meth:`relative_motion` and :meth:`avd_decode` return motions without ``frame``).

    ``with_losses=False`` skips building the loss modules (no VGG file needed), for inference.
    The equivariance warps draw from ``self.rng`` when it is set, else the global torch RNG.
    """

    checkpoint_keys = ("generator", "bg_predictor", "region_predictor")
    # The reference syncs batch norm only when its config sets use_sync_bn, and none of its
    # configs does (vox256.yaml: False; taichi256.yaml: no key).
    sync_batchnorm = False

    def __init__(
        self,
        config: dict[str, Any],
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        with_losses: bool = True,
    ) -> None:
        super().__init__(config)
        mp = config["model_params"]
        num_regions, num_channels = mp["num_regions"], mp["num_channels"]
        self.align_corners = bool(mp.get("align_corners", False))
        self.revert_axis_swap = bool(mp.get("revert_axis_swap", True))
        self.generator = Generator(
            num_channels=num_channels,
            num_regions=num_regions,
            revert_axis_swap=self.revert_axis_swap,
            align_corners=self.align_corners,
            **mp["generator_params"],
        )
        self.region_predictor = RegionPredictor(
            num_regions=num_regions,
            num_channels=num_channels,
            estimate_affine=bool(mp.get("estimate_affine", False)),
            **mp["region_predictor_params"],
        )
        self.bg_predictor = BGMotionPredictor(num_channels=num_channels, **mp["bg_predictor_params"])
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
                num_channels=num_channels,
                weights_dir=weights_dir,
            )

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        # one Adam over all three networks, saved as optimizer_reconstruction like the reference
        return {
            "reconstruction": [
                *self.generator.parameters(),
                *self.region_predictor.parameters(),
                *self.bg_predictor.parameters(),
            ]
        }

    def encode(self, image: torch.Tensor) -> Motion:
        regions = self.region_predictor(image)
        regions[FRAME_KEY] = image
        return regions

    def generate(
        self,
        source: torch.Tensor,
        motion_source: Motion,
        motion_driving: Motion,
        source_features: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        bg_params = None
        if FRAME_KEY in motion_driving:
            bg_params = self.bg_predictor(source, motion_driving[FRAME_KEY])
        return self.generator(
            source, motion_driving, motion_source, bg_params=bg_params, encoded=source_features
        )

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        return self.generator.encode(source)

    def forward(
        self, source: torch.Tensor, driving: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        regions_source = self.region_predictor(source)
        regions_driving = self.region_predictor(driving)
        bg_params = self.bg_predictor(source, driving)
        generated = self.generator(source, regions_driving, regions_source, bg_params=bg_params)
        generated["bg_params"] = bg_params
        for name, regions in (("source", regions_source), ("driving", regions_driving)):
            for key in ("shift", "affine"):
                if key in regions:
                    generated[f"{name}_{key}"] = regions[key]

        losses: dict[str, torch.Tensor] = {}
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(generated["prediction"], driving)

        w_shift = float(self.loss_weights.get("equivariance_shift", 0))
        w_affine = float(self.loss_weights.get("equivariance_affine", 0))
        if w_affine != 0 and "affine" not in regions_driving:
            raise ValueError("equivariance_affine needs region affines: set estimate_affine or pca_based")
        if w_shift != 0 or w_affine != 0:
            shift_loss, affine_loss, transformed_frame, transformed = equivariance_terms(
                self.region_predictor,
                driving,
                regions_driving,
                self.transform_params,
                points_key="shift",
                matrix_key="affine" if w_affine != 0 else None,
                matrix_loss=partial(equivariance_affine_loss, revert_axis_swap=self.revert_axis_swap),
                generator=self.rng,
                align_corners=self.align_corners,
            )
            generated["transformed_frame"] = transformed_frame
            generated["transformed_shift"] = transformed["shift"]
            if w_shift != 0:
                losses["equivariance_shift"] = w_shift * shift_loss
            if w_affine != 0:
                losses["equivariance_affine"] = w_affine * affine_loss
        return losses, generated

    def relative_motion(
        self,
        motion_source: Motion,
        motion_driving: Motion,
        motion_driving_initial: Motion,
        adapt_movement_scale: bool = False,
    ) -> Motion:
        """MRAA's relative animation: ``shift = mu_s + scale (mu_d - mu_d0)`` and
        ``affine = A_d A_d0^{-1} A_s``. As in the reference, the other entries (``covar`` and so
        the region heatmaps) stay the driving frame's, and there is no ``frame`` (the background
        does not move). ``scale`` is sqrt(hull area of the source shifts / that of the initial
        driving shifts) per sample with ``adapt_movement_scale`` (the reference default), else 1.
        """
        out = {k: v for k, v in motion_driving.items() if k != FRAME_KEY}
        shift_diff = motion_driving["shift"] - motion_driving_initial["shift"]
        if adapt_movement_scale:
            shift_diff = shift_diff * movement_scale(motion_source["shift"], motion_driving_initial["shift"])
        out["shift"] = motion_source["shift"] + shift_diff
        if "affine" in motion_driving:
            out["affine"] = (
                motion_driving["affine"]
                @ torch.inverse(motion_driving_initial["affine"])
                @ motion_source["affine"]
            )
        return out

    def avd_align_identity(self, identity: Motion, pose: Motion) -> Motion:
        """The identity (source) regions with each affine's sign matched to the pose's: the
        reference AVD multiplies ``A_id`` by the sign of ``(A_id A_pose^{-1})[0, 0]`` when
        ``revert_axis_swap`` is on (PCA axes are defined up to sign)."""
        if not self.revert_axis_swap:
            return identity
        relative = identity["affine"] @ torch.inverse(pose["affine"])
        return {**identity, "affine": identity["affine"] * torch.sign(relative[..., 0:1, 0:1])}

    def avd_encode(self, motion: Motion) -> torch.Tensor:
        """(B, 6K): per region its shift (2) then its affine row-major (4), as the reference AVD."""
        shift, affine = motion["shift"], motion["affine"]
        return torch.cat([shift, affine.flatten(-2)], dim=-1).flatten(1)

    def avd_decode(self, params: torch.Tensor, like: Motion) -> Motion:
        """Inverse of :meth:`avd_encode`; ``covar = A A^T`` (as the reference AVD returns it)."""
        k = like["shift"].shape[1]
        emb = params.view(params.shape[0], k, 6)
        out = {key: v for key, v in like.items() if key != FRAME_KEY}
        out["shift"] = emb[..., :2]
        out["affine"] = emb[..., 2:].reshape(params.shape[0], k, 2, 2)
        out["covar"] = out["affine"] @ out["affine"].transpose(-1, -2)
        return out

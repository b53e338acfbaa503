"""The interface every animation method implements.

The trainer, the reconstruction routine and the animation routine only talk to this interface,
so one copy of each serves FOMM, MRAA, TPSMM and CPAB.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Motion = dict[str, torch.Tensor]


class AnimationModel(nn.Module):
    """A motion model plus generator, built from a method config by ``methods.registry``.

    Sub-classes register their sub-networks as attributes whose names are the keys of the
    reference checkpoints (FOMM: ``generator``, ``kp_detector``), and list them in
    ``checkpoint_keys`` so that released checkpoints load with ``strict=True``.
    """

    #: Sub-network attribute names, in the order the reference checkpoints store them.
    checkpoint_keys: tuple[str, ...] = ()
    #: Whether the method's reference implementation synchronises batch norm across GPUs (the
    #: default of ``train_params.sync_batchnorm``).
    sync_batchnorm: bool = False
    #: Optimizer groups stepped on a discriminator's loss rather than the generator's (FOMM's
    #: GAN): after the generator's step the trainer calls ``forward(source, driving,
    #: phase="discriminator", generated=<the generator phase's outputs>)`` and steps these.
    discriminator_groups: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer; the trainer builds one Adam per entry.

        The key ``name`` reads its learning rate from ``train_params[f"lr_{name}"]`` and the
        optimizer is saved as ``optimizer_{name}``, as in the reference checkpoints.
        """
        raise NotImplementedError

    def encode(self, image: torch.Tensor) -> Motion:
        """Motion descriptor (keypoints, regions, ...) of a batch of images (B, 3, H, W) in [0, 1]."""
        raise NotImplementedError

    def generate(
        self,
        source: torch.Tensor,
        motion_source: Motion,
        motion_driving: Motion,
        source_features: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render ``source`` moved as described by ``motion_driving``; the dict holds ``prediction``.

        ``source_features``: :meth:`encode_source` of ``source`` (batch 1, or ``source``'s batch),
        computed once when one source image is rendered for many driving frames."""
        raise NotImplementedError

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor] | None:
        """The generator's features of ``source`` that do not depend on the driving frame, or
        None when the architecture has none to cache (then :meth:`generate` computes all)."""
        return None

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One training step's forward pass: (weighted scalar losses by name, generated outputs)."""
        raise NotImplementedError

    def relative_motion(
        self,
        motion_source: Motion,
        motion_driving: Motion,
        motion_driving_initial: Motion,
        adapt_movement_scale: bool = False,
    ) -> Motion:
        """Animation's ``relative`` mode: the driving video's motion since its first frame,
        applied to the source's own motion descriptor (FOMM Sec. 3.5; MRAA/TPSMM likewise).
        ``adapt_movement_scale`` rescales displacements by the ratio of the source's and the
        initial driving frame's keypoint-hull areas, as the references do."""
        raise NotImplementedError

    def avd_encode(self, motion: Motion) -> torch.Tensor:
        """The motion parameters the AVD network sees, flattened per sample: (B, D).

        MRAA: region shifts and affines; TPSMM/CPAB: the foreground keypoints."""
        raise NotImplementedError

    def avd_decode(self, params: torch.Tensor, like: Motion) -> Motion:
        """Inverse of :meth:`avd_encode`; ``like`` supplies any entries AVD does not predict."""
        raise NotImplementedError

    def before_optimizer_step(self) -> None:
        """Hook run after ``backward`` and before the optimizers step (e.g. gradient clipping)."""

    def set_epoch(self, epoch: int) -> None:
        """Hook for schedules that depend on the epoch (e.g. TPS dropout)."""


def expand_features(features: list[torch.Tensor] | None, n: int) -> list[torch.Tensor] | None:
    """:meth:`AnimationModel.encode_source` of one source image as a batch of ``n`` (a view)."""
    return None if features is None else [f.expand(n, *f.shape[1:]) for f in features]

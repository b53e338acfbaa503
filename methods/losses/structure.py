"""Structure-alignment loss of the CPAB method (Wang et al., AAAI 2024), with a frozen DINO ViT.

The generated and the driving frame each go through a self-supervised DINO ViT (ViT-B/8 in the
paper and the authors' release). From the last block's attention we take the *keys* of every
token (all heads concatenated), and compare the two frames through the cosine self-similarity
matrices of those keys: a (T, T) matrix per image that describes the image's layout and is
largely blind to appearance, so the generator is pushed to match the driving frame's structure
without copying its identity.

``distance`` is a config value: ``"frobenius"`` (the paper: Frobenius norm of the difference of
the two matrices, averaged over the batch) or ``"mse"`` (the authors' release: mean squared
difference over all entries of a sample). ``reduction`` says how the samples of a batch
combine: ``"mean"`` (the paper's form) or ``"sum"`` (the release sums its per-sample losses over
the batch, so its effective weight grows with the batch). The driving branch runs under
``torch.no_grad()``; the ViT is
frozen and stays in eval mode whatever its parent does. Choices and facts: docs/cpab_losses.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve
from methods.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DinoModel:
    # timm's architecture, built with pretrained=False: the weights come from our registry
    timm_name: str
    weights: str  # name in data_prep.weights.REGISTRY of the official DINO checkpoint


DINO_MODELS: dict[str, DinoModel] = {
    "dino_vitb8": DinoModel("vit_base_patch8_224", "dino_vitb8"),
    "dino_vits8": DinoModel("vit_small_patch8_224", "dino_vits8"),
}
DISTANCES = ("frobenius", "mse")
REDUCTIONS = ("mean", "sum")
# Options a config may set, with their defaults (the paper's/release's values).
STRUCTURE_DEFAULTS: dict[str, Any] = {
    "image_size": 224,  # the release resizes frames to 224 before DINO
    "include_cls": True,  # the key of the CLS token is part of the self-similarity (as in Splice/the release)
    "reduction": "mean",  # over the batch; the release sums (reduction: sum)
}
# Architecture overrides for tests and small demos; only with pretrained=False, since the
# official checkpoints fix the architecture.
ARCH_OVERRIDES = ("embed_dim", "depth", "num_heads", "patch_size")


def _official_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key names of an official DINO checkpoint in timm's VisionTransformer.

    The backbone files (``dino_vit*_pretrain.pth``) already use timm's names (``cls_token``,
    ``pos_embed``, ``patch_embed.proj``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
    mlp.fc2}``, ``norm``); the full training checkpoints wrap them in ``teacher``/``module.``/
    ``backbone.`` and carry a projection head, which we strip so either file loads strictly.
    """
    if "teacher" in state and isinstance(state["teacher"], dict):
        state = state["teacher"]
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        if key.startswith("head."):
            continue
        out[key] = value
    return out


class StructureLoss(nn.Module):
    """DINO key self-similarity loss between a generated and a driving frame (images in [0, 1])."""

    def __init__(
        self,
        model: str = "dino_vitb8",
        distance: str = "mse",
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        pretrained: bool = True,
        **params: Any,
    ) -> None:
        super().__init__()
        if model not in DINO_MODELS:
            raise ValueError(
                f"unknown structure-loss model {model!r}; choose one of {', '.join(DINO_MODELS)}"
            )
        if distance not in DISTANCES:
            raise ValueError(
                f"unknown structure-loss distance {distance!r}; choose one of {', '.join(DISTANCES)}"
            )
        unknown = set(params) - set(STRUCTURE_DEFAULTS) - set(ARCH_OVERRIDES)
        if unknown:
            raise ValueError(
                f"unknown structure-loss options {sorted(unknown)}; known: "
                f"{sorted(STRUCTURE_DEFAULTS) + list(ARCH_OVERRIDES)}"
            )
        arch = {k: params[k] for k in ARCH_OVERRIDES if k in params}
        if pretrained and arch:
            raise ValueError(
                f"architecture overrides {sorted(arch)} need pretrained=False: the official "
                f"{model} checkpoint fixes the architecture"
            )
        options = {
            **STRUCTURE_DEFAULTS,
            **{k: v for k, v in params.items() if k in STRUCTURE_DEFAULTS},
        }
        if pretrained and int(options["image_size"]) != STRUCTURE_DEFAULTS["image_size"]:
            # The checkpoint's position embeddings are for 224 x 224; a strict load needs that size.
            raise ValueError(
                f"a pretrained {model} takes {STRUCTURE_DEFAULTS['image_size']} x "
                f"{STRUCTURE_DEFAULTS['image_size']} inputs; image_size={options['image_size']} needs pretrained=False"
            )
        self.model_name = model
        self.distance = distance
        self.image_size = int(options["image_size"])
        self.include_cls = bool(options["include_cls"])
        if options["reduction"] not in REDUCTIONS:
            raise ValueError(
                f"unknown structure-loss reduction {options['reduction']!r}; choose one of {', '.join(REDUCTIONS)}"
            )
        self.reduction = options["reduction"]

        spec = DINO_MODELS[model]
        path = resolve(spec.weights, weights_dir) if pretrained else None  # fails before building
        # num_classes=0: DINO backbones have no classifier; img_size sets the position grid.
        self.vit = timm.create_model(
            spec.timm_name, pretrained=False, num_classes=0, img_size=self.image_size, **arch
        )
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.vit.load_state_dict(_official_to_timm(state), strict=True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.vit.requires_grad_(False)
        self.vit.eval()

    def train(self, mode: bool = True) -> StructureLoss:
        # The ViT is a fixed feature extractor: never let a parent's .train() switch it.
        super().train(mode)
        self.vit.eval()
        return self

    def keys(self, images: torch.Tensor) -> torch.Tensor:
        """(B, T, C) keys of the last block's attention, heads concatenated (T tokens incl. CLS)."""
        x = F.interpolate(
            images,
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        x = (x - self.mean) / self.std
        captured: list[torch.Tensor] = []
        attn = self.vit.blocks[-1].attn
        # The qkv projection's output is (B, T, 3 * C), ordered q|k|v and, inside each, by head.
        handle = attn.qkv.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.vit.forward_features(x)
        finally:
            handle.remove()
        qkv = captured[0]
        b, t, _ = qkv.shape
        k = qkv.reshape(b, t, 3, attn.num_heads, -1)[:, :, 1]
        # k_norm is the identity in DINO's ViTs; applied anyway so other timm ViTs give their keys
        k = attn.k_norm(k.transpose(1, 2)).transpose(1, 2)
        keys = k.reshape(b, t, -1)
        return keys if self.include_cls else keys[:, self.vit.num_prefix_tokens :]

    def self_similarity(self, images: torch.Tensor) -> torch.Tensor:
        """(B, T, T) cosine similarity between the keys of every pair of tokens."""
        k = F.normalize(self.keys(images), dim=-1)
        return k @ k.transpose(1, 2)

    def forward(self, generated: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        sim_generated = self.self_similarity(generated)
        with torch.no_grad():
            sim_driving = self.self_similarity(driving)
        diff = sim_generated - sim_driving
        if self.distance == "mse":
            per_sample = diff.pow(2).mean(dim=(1, 2))
        else:
            # Frobenius norm per sample; the clamp keeps the gradient finite (zero) when the two
            # matrices coincide, where d||x||/dx is 0/0.
            squared = diff.pow(2).sum(dim=(1, 2))
            per_sample = squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt()
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()

"""SAM-guided keypoint-semantic loss of the CPAB method (Wang et al., AAAI 2024).

The authors never released this loss; it is built here from the paper's description with the
official ``segment_anything`` modules. Corresponding keypoints of the source and the driving
frame should sit on the same semantic part of the object, so each keypoint gets a semantic
embedding from a frozen Segment Anything model and the loss pulls the two embeddings together:

1. the SAM image encoder embeds both frames (resized so the longest side is ``image_size``,
   normalised with SAM's pixel mean/std, zero-padded to a square, exactly as SAM expects);
2. the prompt encoder embeds every keypoint as one positive point prompt (in SAM's input-pixel
   coordinates), one prompt per keypoint, padded with SAM's "not a point" token as
   ``SamPredictor`` does for point-only prompts;
3. the mask decoder's two-way transformer runs on the output tokens plus the prompt; the
   decoder's output tokens (``token`` option, default all four mask tokens) are the keypoint's
   embedding;
4. loss = mean over batch and keypoints of ``1 - cos(e_source, e_driving)`` (range [0, 2]).

SAM is frozen and stays in eval mode. The image encoder runs without gradients: the frames are
data, not outputs of the network, so the loss trains the keypoint detector only, through the
prompt coordinates. Every choice the paper leaves open is listed in docs/cpab_losses.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve


@dataclass(frozen=True)
class SamVariant:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    weights: str  # name in data_prep.weights.REGISTRY


# The image-encoder sizes of segment_anything's build_sam_vit_{b,l,h}.
SAM_VARIANTS: dict[str, SamVariant] = {
    "vit_b": SamVariant(768, 12, 12, (2, 5, 8, 11), "sam_vit_b"),
    "vit_l": SamVariant(1024, 24, 16, (5, 11, 17, 23), "sam_vit_l"),
    "vit_h": SamVariant(1280, 32, 16, (7, 15, 23, 31), "sam_vit_h"),
}
# Fixed by every released SAM checkpoint (segment_anything's _build_sam).
SAM_PROMPT_DIM = 256
SAM_PATCH_SIZE = 16
SAM_WINDOW_SIZE = 14
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)  # on 0..255 pixels
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_IMAGE_SIZE = 1024

# Output tokens of the mask decoder's transformer, in the order SAM concatenates them:
# [iou, mask_0 (single-mask output), mask_1..mask_3 (multimask outputs), point, padding point].
TOKENS: dict[str, slice] = {
    "mask_tokens": slice(1, 5),  # all four mask tokens, concatenated (default)
    "single_mask": slice(1, 2),  # the token behind multimask_output=False
    "multimask": slice(2, 5),  # the three tokens behind multimask_output=True
    "iou": slice(0, 1),  # the mask-quality token
    "point": slice(5, 6),  # the prompt's own token after the two-way transformer
}
# Options a config may set, with their defaults.
KEYPOINT_SEMANTIC_DEFAULTS: dict[str, Any] = {
    "image_size": SAM_IMAGE_SIZE,  # longest side of SAM's input; the checkpoints need 1024
    "token": "mask_tokens",
    # Keypoint convention: True = -1/1 are the centres of the first/last pixel (this project's
    # make_coordinate_grid and the TPSMM/CPAB detectors); False = the outer pixel edges.
    "align_corners": True,
}
# Architecture overrides for tests and small demos; only with pretrained=False.
ARCH_OVERRIDES = (
    "encoder_embed_dim",
    "encoder_depth",
    "encoder_num_heads",
    "encoder_global_attn_indexes",
    "window_size",
)


def build_sam(
    variant: SamVariant,
    image_size: int = SAM_IMAGE_SIZE,
    window_size: int = SAM_WINDOW_SIZE,
    **overrides: Any,
) -> Sam:
    """segment_anything's SAM with ``variant``'s encoder (the real modules, any size)."""
    embed_dim = int(overrides.get("encoder_embed_dim", variant.embed_dim))
    depth = int(overrides.get("encoder_depth", variant.depth))
    num_heads = int(overrides.get("encoder_num_heads", variant.num_heads))
    global_idx = tuple(
        int(i) for i in overrides.get("encoder_global_attn_indexes", variant.global_attn_indexes)
    )
    grid = image_size // SAM_PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=SAM_PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_idx,
            window_size=window_size,
            out_chans=SAM_PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=SAM_PROMPT_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=SAM_PROMPT_DIM, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=SAM_PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )


class KeypointSemanticLoss(nn.Module):
    """Mean (1 - cosine) between SAM embeddings of corresponding source and driving keypoints.

    Images are (B, 3, H, W) in [0, 1]; keypoints (B, M, 2) in [-1, 1], x first.
    """

    def __init__(
        self,
        variant: str = "vit_b",
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        pretrained: bool = True,
        **params: Any,
    ) -> None:
        super().__init__()
        if variant not in SAM_VARIANTS:
            raise ValueError(
                f"unknown SAM variant {variant!r}; choose one of {', '.join(SAM_VARIANTS)}"
            )
        unknown = set(params) - set(KEYPOINT_SEMANTIC_DEFAULTS) - set(ARCH_OVERRIDES)
        if unknown:
            raise ValueError(
                f"unknown keypoint-semantic options {sorted(unknown)}; known: "
                f"{sorted(KEYPOINT_SEMANTIC_DEFAULTS) + list(ARCH_OVERRIDES)}"
            )
        options = {
            **KEYPOINT_SEMANTIC_DEFAULTS,
            **{k: v for k, v in params.items() if k in KEYPOINT_SEMANTIC_DEFAULTS},
        }
        arch = {k: params[k] for k in ARCH_OVERRIDES if k in params}
        if options["token"] not in TOKENS:
            raise ValueError(
                f"unknown SAM token {options['token']!r}; choose one of {', '.join(TOKENS)}"
            )
        if pretrained and (arch or int(options["image_size"]) != SAM_IMAGE_SIZE):
            raise ValueError(
                "a pretrained SAM fixes its architecture and input size (1024); architecture "
                f"overrides {sorted(arch)} and image_size={options['image_size']} need pretrained=False"
            )
        self.variant = variant
        self.image_size = int(options["image_size"])
        self.token = str(options["token"])
        self.align_corners = bool(options["align_corners"])

        spec = SAM_VARIANTS[variant]
        path = resolve(spec.weights, weights_dir) if pretrained else None  # fails before building
        self.sam = build_sam(spec, image_size=self.image_size, **arch)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.sam.load_state_dict(state, strict=True)
        self.sam.requires_grad_(False)
        self.sam.eval()

    def train(self, mode: bool = True) -> KeypointSemanticLoss:
        # SAM is a fixed feature extractor: a parent's .train() must not switch it.
        super().train(mode)
        self.sam.eval()
        return self

    @property
    def embedding_dim(self) -> int:
        token = TOKENS[self.token]
        return (token.stop - token.start) * SAM_PROMPT_DIM

    def _input_shape(self, h: int, w: int) -> tuple[int, int]:
        # SAM's ResizeLongestSide.get_preprocess_shape: longest side to image_size, rounded.
        scale = self.image_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 256, S/16, S/16) SAM image embeddings; no gradient (the frames are data)."""
        h, w = images.shape[-2:]
        new_h, new_w = self._input_shape(h, w)
        with torch.no_grad():
            x = F.interpolate(
                images * 255.0,
                size=(new_h, new_w),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            x = (x - self.sam.pixel_mean) / self.sam.pixel_std
            x = F.pad(x, (0, self.image_size - new_w, 0, self.image_size - new_h))
            return self.sam.image_encoder(x)

    def prompt_coordinates(
        self, keypoints: torch.Tensor, image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Keypoints in [-1, 1] -> SAM's input-pixel coordinates (pixel index, x first).

        SAM adds 0.5 to a point ("centre of pixel"), so its coordinate of the continuous position
        u (0 = left edge of the image) is u - 0.5, measured on the resized image.
        """
        h, w = image_hw
        new_h, new_w = self._input_shape(h, w)
        size = keypoints.new_tensor([w, h])
        ratio = keypoints.new_tensor([new_w / w, new_h / h])
        if self.align_corners:
            u = (keypoints + 1.0) / 2.0 * (size - 1.0) + 0.5
        else:
            u = (keypoints + 1.0) / 2.0 * size
        return u * ratio - 0.5

    def keypoint_embeddings(
        self, image_embeddings: torch.Tensor, keypoints: torch.Tensor, image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """(B, M, C) embedding of every keypoint: each one a positive point prompt of its image."""
        b, m, _ = keypoints.shape
        coords = self.prompt_coordinates(keypoints, image_hw).reshape(b * m, 1, 2)
        labels = torch.ones(b * m, 1, dtype=torch.int64, device=keypoints.device)  # 1 = foreground
        # pad=True (no box): SAM appends its "not a point" token, as SamPredictor does.
        sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        decoder = self.sam.mask_decoder
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b * m, -1, -1), sparse], dim=1)
        # One copy of the image embedding per prompt (what MaskDecoder.predict_masks does for one
        # image), then only the two-way transformer: the mask upscaling is not needed for tokens.
        src = image_embeddings.repeat_interleave(m, dim=0) + dense
        pos = self.sam.prompt_encoder.get_dense_pe().expand(b * m, -1, -1, -1)
        hs, _ = decoder.transformer(src, pos, tokens)
        return hs[:, TOKENS[self.token]].reshape(b, m, -1)

    def forward(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        kp_source: torch.Tensor,
        kp_driving: torch.Tensor,
    ) -> torch.Tensor:
        if kp_source.shape != kp_driving.shape:
            raise ValueError(
                f"keypoint shapes differ: {tuple(kp_source.shape)} vs {tuple(kp_driving.shape)}"
            )
        b = source.shape[0]
        hw = (source.shape[-2], source.shape[-1])
        # Both frames in one encoder pass and one decoder pass.
        embeddings = self.image_embeddings(torch.cat([source, driving], dim=0))
        kp = torch.cat([kp_source, kp_driving], dim=0)
        e = self.keypoint_embeddings(embeddings, kp, hw)
        cos = F.cosine_similarity(e[:b], e[b:], dim=-1)
        return (1.0 - cos).mean()

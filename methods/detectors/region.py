"""MRAA region predictor: hourglass -> per-region softmax heatmap -> PCA (or regressed) affine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import AntiAliasInterpolation2d, FewOutputConv2d, Hourglass
from methods.motion.pca import Regions, heatmap_to_regions


class RegionPredictor(nn.Module):
    """Predicts K regions of an image (B, C, H, W) in [0, 1].

    Output dict: ``heatmap`` (B, K, h, w), ``shift`` (B, K, 2) and, with ``estimate_affine``,
    ``affine`` and ``covar`` (B, K, 2, 2). ``pca_based=True`` is MRAA: affine from the SVD of the
    heatmap covariance (:mod:`methods.motion.pca`). ``pca_based=False`` with ``estimate_affine``
    is the FOMM-like regression baseline of the paper's ablation: a 4-channel map averaged under
    each heatmap, and ``covar = A A^T``.
    """

    def __init__(
        self,
        block_expansion: int,
        num_regions: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_affine: bool = False,
        scale_factor: float = 1,
        pca_based: bool = False,
        fast_svd: bool = False,
        pad: int = 3,
    ) -> None:
        super().__init__()
        self.num_regions = num_regions
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.pca_based = pca_based
        self.fast_svd = fast_svd
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.regions = nn.Conv2d(self.predictor.out_filters, num_regions, kernel_size=(7, 7), padding=pad)
        if estimate_affine and not pca_based:
            # one affine map shared by all regions, starting at the identity
            self.jacobian = FewOutputConv2d(self.predictor.out_filters, 4, kernel_size=(7, 7), padding=pad)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
        else:
            self.jacobian = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> Regions:
        if self.scale_factor != 1:
            image = self.down(image)
        features = self.predictor(image)
        logits = self.regions(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape(b, k, h * w) / self.temperature, dim=2).reshape(b, k, h, w)
        # the covariance is only needed by the PCA branch; the regression branch derives its own
        regions = heatmap_to_regions(heatmap, pca_based=self.pca_based and self.jacobian is None,
                                     fast_svd=self.fast_svd)
        regions["heatmap"] = heatmap
        if self.jacobian is not None:
            maps = self.jacobian(features).reshape(b, 1, 4, h * w)
            affine = (heatmap.reshape(b, k, 1, h * w) * maps).sum(-1).reshape(b, k, 2, 2)
            regions["affine"] = affine
            regions["covar"] = affine @ affine.transpose(-1, -2)
        return regions

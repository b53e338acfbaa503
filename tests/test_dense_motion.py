"""methods.dense_motion.region_based: MRAA's pixel-wise flow predictor combines K region motions
and the background motion through a softmax mask into one backward-warp flow."""

from __future__ import annotations

import pytest
import torch

from methods.blocks import make_coordinate_grid
from methods.dense_motion.region_based import PixelwiseFlowPredictor
from methods.motion.pca import region_motions

pytestmark = pytest.mark.usefixtures("one_thread")

K, B, C, H, W = 3, 2, 3, 32, 32


def _net(**kwargs) -> PixelwiseFlowPredictor:
    torch.manual_seed(0)
    params = dict(block_expansion=4, num_blocks=2, max_features=16, num_regions=K, num_channels=C)
    return PixelwiseFlowPredictor(**{**params, **kwargs})


def _regions(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shift = torch.rand(B, K, 2, generator=g) * 1.2 - 0.6
    a = torch.eye(2) * 0.2 + 0.05 * torch.randn(B, K, 2, 2, generator=g)
    return {"shift": shift, "affine": a, "covar": a @ a.transpose(-1, -2)}


@pytest.fixture
def source() -> torch.Tensor:
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(1))


def test_outputs_shapes_and_a_softmax_mask(source):
    net = _net(estimate_occlusion_map=True)
    out = net(source, _regions(1), _regions(2))
    assert set(out) == {"optical_flow", "mask", "sparse_deformed", "occlusion_map"}
    assert out["optical_flow"].shape == (B, H, W, 2)
    assert out["mask"].shape == (B, K + 1, H, W)
    assert out["sparse_deformed"].shape == (B, K + 1, C, H, W)
    assert out["occlusion_map"].shape == (B, 1, H, W)
    assert torch.allclose(out["mask"].sum(1), torch.ones(B, H, W), atol=1e-5)
    assert (out["mask"] >= 0).all() and ((0 < out["occlusion_map"]) & (out["occlusion_map"] < 1)).all()
    assert "occlusion_map" not in _net()(source, _regions(1), _regions(2))


def test_flow_is_the_mask_weighted_sum_of_the_sparse_motions(source):
    net = _net()
    driving, src = _regions(1), _regions(2)
    bg = torch.eye(3).expand(B, 3, 3).clone()
    bg[:, 0, 2] = 0.1
    out = net(source, driving, src, bg_params=bg)
    motions = region_motions(src, driving, (H, W), bg)
    expected = (out["mask"][..., None] * motions).sum(1)
    assert torch.allclose(out["optical_flow"], expected, atol=1e-5)


def test_identical_regions_and_no_background_motion_give_the_identity(source):
    net = _net(align_corners=True)
    regions = _regions(1)
    out = net(source, regions, regions)
    identity = make_coordinate_grid((H, W)).expand(B, H, W, 2)
    assert torch.allclose(out["optical_flow"], identity, atol=1e-5)
    # Every sparse motion is then the identity warp: each deformed copy is the source.
    for m in range(K + 1):
        assert torch.allclose(out["sparse_deformed"][:, m], source, atol=1e-5)


def test_heatmap_representation_is_driving_minus_source_with_a_zero_background():
    net = _net()
    driving, src = _regions(1), _regions(2)
    heat = net.heatmap_representation((H, W), driving, src)
    assert heat.shape == (B, K + 1, 1, H, W)
    assert torch.equal(heat[:, 0], torch.zeros(B, 1, H, W))
    assert torch.equal(net.heatmap_representation((H, W), driving, driving), torch.zeros_like(heat))
    # Driving heatmaps peak (at 1) where the driving regions are; source ones enter negatively.
    assert heat.max() <= 1 and heat.min() >= -1 and heat.max() > 0.5 and heat.min() < -0.5
    # region_var sets the width of isotropic heatmaps; use_covar_heatmap uses each region's own.
    wide = _net(region_var=0.1).heatmap_representation((H, W), driving, src)
    assert not torch.allclose(wide, heat)
    covar = _net(use_covar_heatmap=True).heatmap_representation((H, W), driving, src)
    assert not torch.allclose(covar, heat) and not torch.allclose(covar, wide)


def test_scale_factor_runs_at_a_lower_resolution(source):
    net = _net(scale_factor=0.5, estimate_occlusion_map=True)
    out = net(source, _regions(1), _regions(2))
    assert out["optical_flow"].shape == (B, H // 2, W // 2, 2)
    assert out["mask"].shape == (B, K + 1, H // 2, W // 2)
    assert out["sparse_deformed"].shape == (B, K + 1, C, H // 2, W // 2)
    assert out["occlusion_map"].shape == (B, 1, H // 2, W // 2)


def test_use_deformed_source_decides_what_the_hourglass_sees(source):
    with_source, heat_only = _net(), _net(use_deformed_source=False)
    first = lambda net: net.hourglass.encoder.down_blocks[0].conv.in_channels  # noqa: E731
    assert first(with_source) == (K + 1) * (1 + C) and first(heat_only) == K + 1
    out = heat_only(source, _regions(1), _regions(2))
    # The mask no longer depends on the pixels, only on the regions.
    other = heat_only(torch.rand_like(source), _regions(1), _regions(2))
    assert torch.allclose(out["mask"], other["mask"], atol=1e-6)
    assert not torch.allclose(out["sparse_deformed"], other["sparse_deformed"])


def test_gradients_flow_to_the_regions_and_the_network(source):
    net = _net(estimate_occlusion_map=True)
    driving, src = _regions(1), _regions(2)
    driving["shift"].requires_grad_(True)
    out = net(source, driving, src)
    (out["optical_flow"].sum() + out["occlusion_map"].sum()).backward()
    assert driving["shift"].grad.abs().sum() > 0
    assert net.mask.weight.grad.abs().sum() > 0 and net.occlusion.weight.grad.abs().sum() > 0

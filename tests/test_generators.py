"""Generators that render the source under a dense motion: TPSMM's inpainting network
(methods.generators.inpainting) and MRAA's skip-connection generator
(methods.generators.skip_connections).

Occlusion masks decide what comes from the warped source (mask 1) and what the decoder paints
(mask 0); the tests drive them to those extremes, where the output is known exactly.
"""

from __future__ import annotations

import pytest
import torch

from methods.blocks import make_coordinate_grid
from methods.generators.inpainting import InpaintingNetwork
from methods.generators.skip_connections import Generator

pytestmark = pytest.mark.usefixtures("one_thread")

B, C, H, W = 2, 3, 32, 32
DOWN = 2  # down blocks: encoder levels at 32, 16 and 8 pixels


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, C, H, W, generator=g), torch.rand(B, C, H, W, generator=g)


def _identity(h: int = H, w: int = W) -> torch.Tensor:
    return make_coordinate_grid((h, w)).expand(B, h, w, 2).clone()


def _masks(value: float, multi: bool = True) -> list[torch.Tensor]:
    """Occlusion masks coarsest first (8, 16, 32 pixels), or a single one."""
    sizes = [H // 2**i for i in range(DOWN, -1, -1)] if multi else [H // 4]
    return [torch.full((B, 1, s, s), value) for s in sizes]


def _dense(masks, deformation=None) -> dict:
    return {"occlusion_map": masks, "deformation": _identity() if deformation is None else deformation,
            "contribution_maps": torch.zeros(B, 3, H, W), "deformed_source": torch.zeros(B, 3, C, H, W)}


def _inpainting(multi_mask: bool = True) -> InpaintingNetwork:
    torch.manual_seed(0)
    return InpaintingNetwork(C, block_expansion=4, max_features=16, num_down_blocks=DOWN,
                             multi_mask=multi_mask).eval()


# ------------------------------------------------------------------------------- inpainting


def test_inpainting_outputs(images):
    net = _inpainting()
    g = torch.Generator().manual_seed(3)
    masks = [torch.rand(m.shape, generator=g) for m in _masks(0)]
    dense = _dense(masks)
    out = net(images[0], dense)
    assert out["prediction"].shape == (B, C, H, W)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
    assert out["occlusion_map"] is masks and out["deformation"] is dense["deformation"]
    assert out["contribution_maps"] is dense["contribution_maps"]
    assert out["deformed_source"] is dense["deformed_source"]
    assert torch.allclose(out["deformed"], images[0], atol=1e-5)  # identity flow
    assert "warped_encoder_maps" not in net(images[0], dense, warp_features=False)


def test_inpainting_where_all_is_visible_the_prediction_is_the_warped_source(images):
    net = _inpainting()
    out = net(images[0], _dense(_masks(1.0)))
    assert torch.allclose(out["prediction"], images[0], atol=1e-5)
    # A shifted flow: the prediction is the source sampled through it.
    flow = _identity()
    flow[..., 0] += 2.0 / (W - 1)  # one pixel to the right (align_corners=True)
    out = net(images[0], _dense(_masks(1.0), flow))
    assert torch.allclose(out["prediction"][..., :-1], images[0][..., 1:], atol=1e-5)
    assert torch.allclose(out["deformed"], out["prediction"], atol=1e-6)


def test_inpainting_where_all_is_occluded_the_source_is_not_seen(images):
    net = _inpainting()
    first = net(images[0], _dense(_masks(0.0)))["prediction"]
    second = net(images[1], _dense(_masks(0.0)))["prediction"]
    assert torch.allclose(first, second, atol=1e-6)  # painted from nothing but the network
    assert not torch.allclose(first, images[0], atol=0.1)


def test_inpainting_single_mask_is_resized_to_every_level(images):
    single, multi = _inpainting(multi_mask=False), _inpainting(multi_mask=True)
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(B, 1, H // 4, W // 4, generator=g)
    out = single(images[0], _dense([mask]))
    assert out["prediction"].shape == (B, C, H, W)
    # The same as giving the multi-mask network that mask at every level.
    same = multi(images[0], _dense([mask, mask, mask]))
    assert torch.allclose(out["prediction"], same["prediction"], atol=1e-6)


def test_inpainting_warped_encoder_maps_are_detached_and_coarsest_first(images):
    net = _inpainting().train()
    out = net(images[0], _dense([m.requires_grad_() for m in _masks(0.5)]))
    maps = out["warped_encoder_maps"]
    assert [m.shape[-1] for m in maps] == [8, 16, 32]
    assert [m.shape[1] for m in maps] == [16, 8, 4]
    assert all(not m.requires_grad for m in maps)  # the warp loss trains only the flow
    assert out["prediction"].requires_grad


def test_inpainting_encode_driving_gives_masked_detached_features_finest_first(images):
    net = _inpainting()
    feats = net.encode_driving(images[1], _masks(1.0))
    assert [f.shape[-1] for f in feats] == [32, 16, 8] and all(not f.requires_grad for f in feats)
    # Each level is masked by its own resolution's mask: zero masks give zero features.
    assert all(torch.equal(f, torch.zeros_like(f)) for f in net.encode_driving(images[1], _masks(0.0)))
    # With identity flow and full masks, the warped source features are the driving's targets
    # when source and driving are the same image.
    warped = net(images[1], _dense(_masks(1.0)))["warped_encoder_maps"]
    for target, got in zip(feats, reversed(warped), strict=True):
        assert torch.allclose(target, got, atol=1e-5)


# ------------------------------------------------------------------- MRAA skip connections


def _regions(seed: int, k: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.eye(2) * 0.2 + 0.05 * torch.randn(B, k, 2, 2, generator=g)
    return {"shift": torch.rand(B, k, 2, generator=g) - 0.5, "affine": a, "covar": a @ a.mT}


def _generator(skips: bool = True, flow: bool = True, **flow_params) -> Generator:
    torch.manual_seed(0)
    params = dict(block_expansion=4, num_blocks=2, max_features=16, estimate_occlusion_map=True)
    return Generator(C, num_regions=2, block_expansion=4, max_features=16, num_down_blocks=DOWN,
                     num_bottleneck_blocks=1, skips=skips,
                     pixelwise_flow_predictor_params={**params, **flow_params} if flow else None,
                     align_corners=True).eval()


def _set_occlusion(gen: Generator, logit: float) -> None:
    with torch.no_grad():
        gen.pixelwise_flow_predictor.occlusion.weight.zero_()
        gen.pixelwise_flow_predictor.occlusion.bias.fill_(logit)


def test_skip_generator_outputs(images):
    gen = _generator()
    out = gen(images[0], _regions(1), _regions(2))
    assert {"prediction", "deformed", "optical_flow", "mask", "sparse_deformed",
            "occlusion_map"} <= set(out)
    assert out["prediction"].shape == (B, C, H, W) and out["deformed"].shape == (B, C, H, W)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
    plain = _generator(flow=False)(images[0], _regions(1), _regions(2))
    assert list(plain) == ["prediction"] and plain["prediction"].shape == (B, C, H, W)


def test_skip_generator_visible_everywhere_gives_the_warped_source(images):
    gen = _generator(skips=True)
    _set_occlusion(gen, 40.0)  # occlusion map 1: every level takes the warped encoder feature
    out = gen(images[0], _regions(1), _regions(2))
    assert torch.allclose(out["occlusion_map"], torch.ones(B, 1, H, W))
    assert torch.allclose(out["prediction"], out["deformed"], atol=1e-6)
    # Without skips the final image is the decoder's alone.
    no_skips = _generator(skips=False)
    _set_occlusion(no_skips, 40.0)
    out = no_skips(images[0], _regions(1), _regions(2))
    assert not torch.allclose(out["prediction"], out["deformed"], atol=1e-2)


@pytest.mark.parametrize("skips", [True, False])
def test_skip_generator_occluded_everywhere_never_sees_the_source(images, skips):
    gen = _generator(skips=skips)
    _set_occlusion(gen, -40.0)
    first = gen(images[0], _regions(1), _regions(2))["prediction"]
    second = gen(images[1], _regions(1), _regions(2))["prediction"]
    assert torch.allclose(first, second, atol=1e-6)


def test_skip_generator_resizes_a_low_resolution_flow_and_occlusion(images):
    gen = _generator(scale_factor=0.5)
    out = gen(images[0], _regions(1), _regions(1))
    assert out["optical_flow"].shape == (B, H // 2, W // 2, 2)
    assert out["occlusion_map"].shape == (B, 1, H // 2, W // 2)
    assert out["prediction"].shape == out["deformed"].shape == (B, C, H, W)


def test_apply_optical_blends_through_the_occlusion_map(images):
    gen = _generator()
    skip, previous = images
    assert gen.apply_optical(skip, None, None) is skip
    assert gen.apply_optical(skip, previous, None) is previous
    motion = {"optical_flow": _identity()}
    assert torch.allclose(gen.apply_optical(skip, previous, motion), skip, atol=1e-5)
    motion["occlusion_map"] = torch.full((B, 1, H // 2, W // 2), 0.25)  # resized to the feature
    blended = gen.apply_optical(skip, previous, motion)
    assert torch.allclose(blended, 0.25 * skip + 0.75 * previous, atol=1e-5)
    assert torch.allclose(gen.apply_optical(skip, None, motion), 0.25 * skip, atol=1e-5)

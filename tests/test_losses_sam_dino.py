"""CPAB's SAM keypoint-semantic loss and DINO structure loss (issue 10).

Fast tests build the real segment_anything / timm modules at random initialisation in small
sizes; one slow test builds the real-size SAM ViT-B and DINO ViT-B/8.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from torch import nn

from data_prep import weights
from data_prep.weights import MissingWeightsError, WeightsFile
from methods.losses import keypoint_semantic as ks_module
from methods.losses import structure as st_module
from methods.losses.keypoint_semantic import KeypointSemanticLoss, SamVariant
from methods.losses.structure import DinoModel, StructureLoss, _official_to_timm

TINY_SAM = dict(
    image_size=64,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=[1],
    window_size=2,
)
TINY_DINO = dict(embed_dim=32, depth=2, num_heads=2, image_size=32)


@pytest.fixture(scope="module")
def sam_loss() -> KeypointSemanticLoss:
    torch.manual_seed(0)
    return KeypointSemanticLoss(pretrained=False, **TINY_SAM)


@pytest.fixture(scope="module")
def dino_losses() -> dict[str, StructureLoss]:
    torch.manual_seed(0)
    mse = StructureLoss(distance="mse", pretrained=False, **TINY_DINO)
    fro = StructureLoss(distance="frobenius", pretrained=False, **TINY_DINO)
    fro.load_state_dict(mse.state_dict())  # the same network under both distances
    return {"mse": mse, "frobenius": fro}


def _inputs(seed: int, b: int = 2, m: int = 5, size: int = 48):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(b, 3, size, size, generator=g),
        torch.rand(b, 3, size, size, generator=g),
        torch.rand(b, m, 2, generator=g) * 1.8 - 0.9,
        torch.rand(b, m, 2, generator=g) * 1.8 - 0.9,
    )


def _register(monkeypatch, tmp_path, name: str, state: dict) -> None:
    """A registry entry whose file is ``state`` saved in tmp_path, with its real checksum."""
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = WeightsFile(
        name,
        path.name,
        f"https://example.invalid/{name}.pth",
        digest,
        "test weights",
        size=path.stat().st_size,
        checksum_source="this test",
    )
    monkeypatch.setitem(weights.REGISTRY, name, entry)


# --- SAM keypoint-semantic loss -------------------------------------------------------------


@pytest.mark.parametrize(
    "token,tokens",
    [("mask_tokens", 4), ("single_mask", 1), ("multimask", 3), ("iou", 1), ("point", 1)],
)
def test_sam_keypoint_embeddings_are_b_m_c(sam_loss, token, tokens, monkeypatch):
    monkeypatch.setattr(sam_loss, "token", token)
    source, _, kp, _ = _inputs(1, b=3, m=4)
    emb = sam_loss.keypoint_embeddings(sam_loss.image_embeddings(source), kp, (48, 48))
    assert emb.shape == (3, 4, tokens * 256) and sam_loss.embedding_dim == tokens * 256
    assert torch.isfinite(emb).all()


def test_sam_each_keypoint_is_its_own_prompt(sam_loss):
    """Moving one keypoint changes its embedding only (one prompt per keypoint)."""
    source, _, kp, _ = _inputs(2, b=1, m=3)
    emb = sam_loss.image_embeddings(source)
    moved = kp.clone()
    moved[0, 1] = -moved[0, 1]
    a = sam_loss.keypoint_embeddings(emb, kp, (48, 48))
    b = sam_loss.keypoint_embeddings(emb, moved, (48, 48))
    assert torch.allclose(a[:, [0, 2]], b[:, [0, 2]], atol=1e-5)
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-3


def test_sam_loss_is_in_0_2_and_zero_for_identical_inputs(sam_loss):
    for seed in range(3):
        source, driving, kp_s, kp_d = _inputs(seed)
        value = sam_loss(source, driving, kp_s, kp_d)
        assert value.ndim == 0 and 0.0 <= value.item() <= 2.0
        assert value.item() > 1e-6  # other frames, other keypoints: not the same embedding
        assert sam_loss(source, source.clone(), kp_s, kp_s.clone()).item() < 1e-5


def test_sam_prompt_coordinates_follow_the_keypoint_convention():
    loss = KeypointSemanticLoss(pretrained=False, **TINY_SAM)  # image_size 64
    corners = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])
    # align_corners=True: -1 and 1 are the first and last pixel centres (indices 0 and size-1).
    got = loss.prompt_coordinates(corners, (32, 64))  # H=32, W=64: resized to 32 x 64 (no scale)
    assert torch.allclose(got, torch.tensor([[[0.0, 0.0], [63.0, 31.0], [31.5, 15.5]]]))
    # A 16 x 32 frame is scaled by 2 into SAM's input: pixel centres map to 2i + 0.5.
    got = loss.prompt_coordinates(corners, (16, 32))
    assert torch.allclose(got, torch.tensor([[[0.5, 0.5], [62.5, 30.5], [31.5, 15.5]]]))
    edges = KeypointSemanticLoss(pretrained=False, align_corners=False, **TINY_SAM)
    got = edges.prompt_coordinates(corners, (32, 64))  # -1/1 = outer edges
    assert torch.allclose(got, torch.tensor([[[-0.5, -0.5], [63.5, 31.5], [31.5, 15.5]]]))


def test_sam_gradient_reaches_keypoints_only_and_sam_stays_frozen():
    torch.manual_seed(0)

    class Parent(nn.Module):
        """A stand-in keypoint head (learnable) with the SAM loss as a child module."""

        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 10)
            self.loss = KeypointSemanticLoss(pretrained=False, **TINY_SAM)

        def forward(self, source, driving, code):
            kp = torch.tanh(self.head(code)).view(-1, 5, 2)
            return self.loss(source, driving, kp[:1], kp[1:]), kp

    parent = Parent().train()
    assert not parent.loss.sam.training and parent.loss.training  # SAM stays in eval mode
    before = {k: v.clone() for k, v in parent.loss.sam.state_dict().items()}
    head_before = parent.head.weight.detach().clone()
    source, driving, _, _ = _inputs(4, b=1)
    source.requires_grad_(True)
    optimizer = torch.optim.Adam(parent.parameters(), lr=1e-2)
    value, kp = parent(source, driving, torch.randn(2, 4))
    kp.retain_grad()
    value.backward()
    assert kp.grad is not None and torch.isfinite(kp.grad).all() and kp.grad.abs().sum() > 0
    assert source.grad is None  # the image encoder runs without gradient (frames are data)
    assert all(p.grad is None and not p.requires_grad for p in parent.loss.parameters())
    optimizer.step()
    assert not torch.equal(parent.head.weight, head_before)
    after = parent.loss.sam.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sam_missing_or_corrupt_weights_name_the_file_and_fetch_command(tmp_path):
    with pytest.raises(
        MissingWeightsError, match=r"sam_vit_b_01ec64\.pth.*animbench weights fetch sam_vit_b"
    ):
        KeypointSemanticLoss(weights_dir=tmp_path)
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"truncated")
    with pytest.raises(MissingWeightsError, match=r"corrupt.*animbench weights fetch sam_vit_b"):
        KeypointSemanticLoss(weights_dir=tmp_path)
    with pytest.raises(
        MissingWeightsError, match=r"sam_vit_h_4b8939\.pth.*animbench weights fetch sam_vit_h"
    ):
        KeypointSemanticLoss("vit_h", weights_dir=tmp_path)


def test_sam_options_are_checked():
    with pytest.raises(ValueError, match="unknown SAM variant"):
        KeypointSemanticLoss("vit_x", pretrained=False)
    with pytest.raises(ValueError, match="unknown keypoint-semantic options"):
        KeypointSemanticLoss(pretrained=False, multimask=True, **TINY_SAM)
    with pytest.raises(ValueError, match="unknown SAM token"):
        KeypointSemanticLoss(pretrained=False, token="mask", **TINY_SAM)
    with pytest.raises(ValueError, match="need pretrained=False"):
        KeypointSemanticLoss(pretrained=True, encoder_depth=2)


def test_sam_pretrained_file_loads_strictly_into_the_model(tmp_path, monkeypatch):
    """The loading path: the registry's file, checksum-verified, loaded into SAM (a small encoder at 1024)."""
    tiny = SamVariant(16, 1, 1, (0,), "tiny_sam")
    monkeypatch.setitem(ks_module.SAM_VARIANTS, "vit_b", tiny)
    torch.manual_seed(3)
    reference = ks_module.build_sam(tiny)
    _register(monkeypatch, tmp_path, "tiny_sam", reference.state_dict())
    loss = KeypointSemanticLoss("vit_b", weights_dir=tmp_path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            loss.sam.state_dict().values(), reference.state_dict().values(), strict=True
        )
    )
    source, driving, kp_s, kp_d = _inputs(5, b=1, m=2, size=32)
    assert 0.0 <= loss(source, driving, kp_s, kp_d).item() <= 2.0


# --- DINO structure loss --------------------------------------------------------------------


def test_dino_self_similarity_shapes_and_unit_diagonal(dino_losses):
    loss = dino_losses["mse"]
    sim = loss.self_similarity(torch.rand(2, 3, 40, 40))
    assert sim.shape == (2, 17, 17)  # (32 / 8)^2 patches + CLS
    assert torch.allclose(torch.diagonal(sim, dim1=1, dim2=2), torch.ones(2, 17), atol=1e-5)
    no_cls = StructureLoss(pretrained=False, include_cls=False, **TINY_DINO)
    assert no_cls.self_similarity(torch.rand(1, 3, 32, 32)).shape == (1, 16, 16)


def test_dino_identical_images_give_zero_and_different_images_more(dino_losses):
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    for loss in dino_losses.values():
        assert loss(a, a.clone()).item() < 1e-6
        assert loss(a, b).item() > 1e-4


def test_dino_frobenius_and_mse_measure_the_same_difference(dino_losses):
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    tokens = 17
    fro, mse = dino_losses["frobenius"](a, b), dino_losses["mse"](a, b)
    assert torch.allclose(fro**2, mse * tokens**2, rtol=1e-4)


@pytest.mark.parametrize("distance", ["mse", "frobenius"])
def test_dino_sum_reduction_adds_the_per_sample_losses_as_the_release(dino_losses, distance):
    """The release loops over the batch and adds each sample's loss: B x the batch mean."""
    summed = StructureLoss(distance=distance, pretrained=False, reduction="sum", **TINY_DINO)
    summed.load_state_dict(dino_losses["mse"].state_dict())
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    per_sample = torch.stack([dino_losses[distance](a[i : i + 1], b[i : i + 1]) for i in range(3)])
    assert torch.allclose(summed(a, b), per_sample.sum(), rtol=1e-5)
    assert torch.allclose(dino_losses[distance](a, b), per_sample.mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown structure-loss reduction 'max'"):
        StructureLoss(pretrained=False, reduction="max", **TINY_DINO)


def test_dino_keys_are_the_k_part_of_the_last_attention(dino_losses):
    loss = StructureLoss(pretrained=False, **TINY_DINO)
    loss.load_state_dict(dino_losses["mse"].state_dict())
    images = torch.rand(1, 3, 32, 32)
    keys = loss.keys(images)
    qkv = loss.vit.blocks[-1].attn.qkv.weight
    c = qkv.shape[1]
    with torch.no_grad():
        qkv[2 * c :] += torch.randn_like(qkv[2 * c :])  # values: no effect on the keys
    assert torch.allclose(loss.keys(images), keys, atol=1e-6)
    with torch.no_grad():
        qkv[c : 2 * c] += 0.1 * torch.randn_like(qkv[c : 2 * c])  # keys
    assert (loss.keys(images) - keys).abs().max() > 1e-3


@pytest.mark.parametrize("distance", ["mse", "frobenius"])
def test_dino_gradient_reaches_generated_only_and_vit_stays_frozen(distance):
    torch.manual_seed(0)
    parent = nn.ModuleDict(
        {
            "gen": nn.Conv2d(3, 3, 3, padding=1),
            "loss": StructureLoss(distance=distance, pretrained=False, **TINY_DINO),
        }
    ).train()
    assert not parent["loss"].vit.training
    before = {k: v.clone() for k, v in parent["loss"].state_dict().items()}
    gen_before = parent["gen"].weight.detach().clone()
    optimizer = torch.optim.Adam(parent.parameters(), lr=1e-2)
    driving = torch.rand(2, 3, 32, 32, requires_grad=True)
    generated = torch.sigmoid(parent["gen"](torch.rand(2, 3, 32, 32)))
    generated.retain_grad()
    parent["loss"](generated, driving).backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert driving.grad is None  # the driving branch runs under no_grad
    assert all(p.grad is None and not p.requires_grad for p in parent["loss"].parameters())
    optimizer.step()
    assert not torch.equal(parent["gen"].weight, gen_before)
    after = parent["loss"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_dino_frobenius_gradient_is_finite_at_zero_difference(dino_losses):
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    dino_losses["frobenius"](image, image.detach().clone()).backward()
    assert torch.isfinite(image.grad).all()


def test_dino_missing_weights_name_the_file_and_fetch_command(tmp_path):
    with pytest.raises(
        MissingWeightsError,
        match=r"dino_vitbase8_pretrain\.pth.*animbench weights fetch dino_vitb8",
    ):
        StructureLoss(weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown structure-loss distance"):
        StructureLoss(distance="l1", pretrained=False)
    with pytest.raises(ValueError, match="need pretrained=False|needs pretrained=False"):
        StructureLoss(pretrained=True, depth=2)


def test_dino_official_checkpoint_loads_strictly(tmp_path, monkeypatch):
    """Backbone-only files load as they are; training checkpoints lose their wrapper and head."""
    monkeypatch.setitem(
        st_module.DINO_MODELS, "tiny", DinoModel("vit_tiny_patch16_224", "tiny_dino")
    )
    torch.manual_seed(4)
    reference = StructureLoss("tiny", pretrained=False).vit
    state = reference.state_dict()
    _register(monkeypatch, tmp_path, "tiny_dino", state)
    loss = StructureLoss("tiny", weights_dir=tmp_path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loss.vit.state_dict().values(), state.values(), strict=True)
    )
    wrapped = {
        "teacher": {
            **{f"module.backbone.{k}": v for k, v in state.items()},
            "module.head.mlp.0.weight": torch.zeros(2),
        }
    }
    assert list(_official_to_timm(wrapped)) == list(state)


# --- real sizes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_size_sam_vit_b_and_dino_vitb8_run_at_random_init():
    """The default architectures (SAM ViT-B at 1024, DINO ViT-B/8 at 224): 2.5-4 min on 2 shared CPU cores."""
    torch.manual_seed(0)
    start = time.perf_counter()
    sam = KeypointSemanticLoss(pretrained=False)
    assert sum(p.numel() for p in sam.sam.parameters()) == 93_735_472  # SAM ViT-B
    source, driving, kp_s, kp_d = _inputs(6, b=1, m=3, size=64)
    kp_s.requires_grad_(True)
    value = sam(source, driving, kp_s, kp_d)
    value.backward()
    assert 0.0 <= value.item() <= 2.0 and kp_s.grad.abs().sum() > 0
    dino = StructureLoss(pretrained=False)
    assert sum(p.numel() for p in dino.vit.parameters()) == 85_807_872  # ViT-B/8 backbone
    generated = torch.rand(1, 3, 64, 64, requires_grad=True)
    dino(generated, torch.rand(1, 3, 64, 64)).backward()
    assert dino.self_similarity(torch.rand(1, 3, 64, 64)).shape == (1, 785, 785)
    assert generated.grad.abs().sum() > 0
    print(f"real-size SAM ViT-B + DINO ViT-B/8 build and step: {time.perf_counter() - start:.1f} s")

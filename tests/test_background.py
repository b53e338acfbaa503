"""Background motion predictors: TPSMM's ResNet affine (methods.background.resnet_affine) and
MRAA's convolutional one (methods.background.conv_affine). Both give (B, 3, 3) homogeneous
matrices that start at the identity, i.e. an untrained predictor says "the background did not
move"."""

from __future__ import annotations

import pytest
import torch

from methods.background.conv_affine import BG_TYPES, BGMotionPredictor
from methods.background.resnet_affine import ResNetAffine
from methods.detectors.resnet_keypoints import ResNet18

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=gen), torch.rand(3, 3, 32, 32, generator=gen)


# ------------------------------------------------------------------------- ResNet affine


def test_resnet_affine_starts_at_the_identity_whatever_the_frames(images):
    torch.manual_seed(0)
    net = ResNetAffine(width=4)
    for mode in (net.train, net.eval):
        mode()
        out = net(*images)
        assert out.shape == (3, 3, 3)
        assert torch.equal(out, torch.eye(3).expand(3, 3, 3))


def test_resnet_affine_is_a_resnet18_on_six_channels_under_the_release_key(images):
    net = ResNetAffine(num_channels=3, width=4)
    assert isinstance(net.bg_encoder, ResNet18)
    assert net.bg_encoder.conv1.in_channels == 6  # source and driving stacked channel-wise
    assert net.bg_encoder.fc.out_features == 6  # the six affine parameters
    assert all(k.startswith("bg_encoder.") for k in net.state_dict())
    assert {"bg_encoder.conv1.weight", "bg_encoder.fc.bias", "bg_encoder.layer4.1.bn2.weight"} <= set(
        net.state_dict()
    )
    grey = ResNetAffine(num_channels=1, width=4)
    assert grey.bg_encoder.conv1.in_channels == 2
    assert grey(images[0][:, :1], images[1][:, :1]).shape == (3, 3, 3)


def test_resnet_affine_reads_its_parameters_row_major_with_a_fixed_bottom_row(images):
    net = ResNetAffine(width=4).eval()
    with torch.no_grad():
        net.bg_encoder.fc.bias.copy_(torch.tensor([1.1, 0.2, 0.3, -0.4, 0.9, -0.5]))
    out = net(*images)
    expected = torch.tensor([[1.1, 0.2, 0.3], [-0.4, 0.9, -0.5], [0.0, 0.0, 1.0]])
    assert torch.allclose(out, expected.expand(3, 3, 3))
    # Once the last layer has weights the frames matter, and the bottom row stays [0, 0, 1].
    torch.manual_seed(1)
    with torch.no_grad():
        net.bg_encoder.fc.weight.normal_()
    out = net(*images)
    assert not torch.allclose(out[0], out[1])
    assert torch.equal(out[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(3, 3))
    swapped = net(images[1], images[0])  # the order of the frames matters (a direction)
    assert not torch.allclose(out, swapped)


def test_resnet_affine_trains_from_the_identity(images):
    net = ResNetAffine(width=4)
    out = net(*images)
    target = torch.eye(3).expand(3, 3, 3) + 0.1
    ((out - target) ** 2).sum().backward()
    grad = net.bg_encoder.fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert out.dtype == images[0].dtype


def test_resnet_affine_translation_moves_a_sampled_image(images):
    """The matrix is applied to the identity grid that samples the source (a backward warp):
    a translation by +2/W in x makes output pixel x read source pixel x + 1 (align_corners=False)."""
    import torch.nn.functional as F

    net = ResNetAffine(width=4).eval()
    width = images[0].shape[-1]
    with torch.no_grad():
        net.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0.0, 2.0 / width, 0.0, 1.0, 0.0]))
    affine = net(*images)
    grid = F.affine_grid(affine[:, :2], list(images[0].shape), align_corners=False)
    moved = F.grid_sample(images[0], grid, align_corners=False)
    assert torch.allclose(moved[..., :-1], images[0][..., 1:], atol=1e-5)


# -------------------------------------------------------------------- MRAA conv affine


@pytest.mark.parametrize("bg_type, outputs", [("shift", 2), ("affine", 6), ("perspective", 8)])
def test_conv_predictor_head_predicts_its_type_parameters_from_the_identity(images, bg_type, outputs):
    net = BGMotionPredictor(4, 3, 16, 2, bg_type=bg_type)
    assert net.fc.out_features == outputs == len(BG_TYPES[bg_type])
    assert torch.equal(net.fc.weight, torch.zeros_like(net.fc.weight))
    assert torch.equal(net.fc.bias, torch.tensor(BG_TYPES[bg_type]))
    assert net.encoder.down_blocks[0].conv.in_channels == 6  # source and driving stacked
    assert torch.allclose(net(*images), torch.eye(3).expand(3, 3, 3))


def test_conv_predictor_shift_moves_only_the_translation(images):
    net = BGMotionPredictor(4, 3, 16, 2, bg_type="shift")
    with torch.no_grad():
        net.fc.bias.copy_(torch.tensor([0.25, -0.5]))
    out = net(*images)
    expected = torch.tensor([[1.0, 0.0, 0.25], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    assert torch.allclose(out, expected.expand(3, 3, 3))


def test_conv_predictor_perspective_predicts_the_bottom_row(images):
    net = BGMotionPredictor(4, 3, 16, 2, bg_type="perspective")
    params = torch.tensor([1.0, 0.1, 0.2, 0.3, 1.0, 0.4, 0.05, -0.06])
    with torch.no_grad():
        net.fc.bias.copy_(params)
    out = net(*images)
    expected = torch.tensor([[1.0, 0.1, 0.2], [0.3, 1.0, 0.4], [0.05, -0.06, 1.0]])
    assert torch.allclose(out, expected.expand(3, 3, 3))


def test_conv_predictor_zero_gives_a_fresh_identity_every_call(images):
    net = BGMotionPredictor(4, 3, 16, 2, bg_type="zero")
    out = net(*images)
    out[0, 0, 2] = 5.0  # a writable tensor of its own, not a view of a shared identity
    assert torch.equal(net(*images), torch.eye(3).expand(3, 3, 3))
    assert list(net.parameters()) == []
    with pytest.raises(ValueError, match="choose one of zero, shift, affine, perspective"):
        BGMotionPredictor(4, 3, 16, 2, bg_type="similarity")

"""methods.detectors.resnet_keypoints: torchvision's ResNet-18 module tree with a base width, and
the TPSMM/CPAB keypoint head regressing ``num_tps * 5`` keypoints in (-1, 1), x first."""

from __future__ import annotations

import pytest
import torch
import torchvision

from methods.detectors.resnet_keypoints import POINTS_PER_TPS, ResNet18, ResNetKeypoints

pytestmark = pytest.mark.usefixtures("one_thread")


def test_at_width_64_it_is_torchvisions_resnet18():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    ours = ResNet18(10).eval()
    ref_state = reference.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    ours.load_state_dict(ref_state, strict=True)  # same parameter names: torchvision's files load
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(image), reference(image), atol=1e-6)


def test_width_and_input_channels_scale_the_tree():
    net = ResNet18(7, in_channels=6, width=4)
    assert net.conv1.in_channels == 6 and net.conv1.out_channels == 4
    widths = [getattr(net, f"layer{i}")[1].conv2.out_channels for i in (1, 2, 3, 4)]
    assert widths == [4, 8, 16, 32] and net.fc.in_features == 32 and net.fc.out_features == 7
    assert net(torch.rand(1, 6, 40, 24)).shape == (1, 7)
    # torchvision's initialisation: batch norms at weight 1, bias 0.
    assert torch.equal(net.bn1.weight, torch.ones(4)) and torch.equal(net.bn1.bias, torch.zeros(4))


def test_keypoints_are_num_tps_times_five_in_the_open_unit_square():
    torch.manual_seed(0)
    det = ResNetKeypoints(num_tps=3, width=4)
    assert POINTS_PER_TPS == 5 and det.fg_encoder.fc.out_features == 3 * 5 * 2
    image = torch.rand(2, 3, 32, 32)
    out = det(image)
    assert list(out) == ["fg_kp"] and out["fg_kp"].shape == (2, 15, 2)
    assert (out["fg_kp"].abs() < 1).all()
    # Large outputs saturate towards, never past, the edges.
    with torch.no_grad():
        det.fg_encoder.fc.bias.mul_(0).add_(50.0)
    assert (det(image)["fg_kp"] <= 1).all()


def test_keypoint_coordinates_are_interleaved_x_first():
    det = ResNetKeypoints(num_tps=1, width=4).eval()
    bias = torch.linspace(-2, 2, 10)
    with torch.no_grad():
        det.fg_encoder.fc.weight.zero_()
        det.fg_encoder.fc.bias.copy_(bias)
    kp = det(torch.rand(2, 3, 32, 32))["fg_kp"]
    expected = (torch.sigmoid(bias) * 2 - 1).view(5, 2)  # output 2i is x of point i, 2i+1 its y
    assert torch.allclose(kp, expected.expand(2, 5, 2), atol=1e-6)


def test_the_release_key_prefix_and_ignored_common_params():
    # A config's whole common_params section is passed; what the detector does not use is ignored.
    det = ResNetKeypoints(num_tps=2, num_channels=1, width=4, bg=True, multi_mask=False)
    assert all(k.startswith("fg_encoder.") for k in det.state_dict())
    assert det.fg_encoder.conv1.in_channels == 1
    assert det(torch.rand(2, 1, 32, 32))["fg_kp"].shape == (2, 10, 2)


def test_gradients_reach_the_first_convolution():
    det = ResNetKeypoints(num_tps=1, width=4)
    det(torch.rand(2, 3, 32, 32))["fg_kp"].sum().backward()
    assert det.fg_encoder.conv1.weight.grad.abs().sum() > 0

"""The papers' body-keypoint evaluator: rtpose (OpenPose COCO-18, VGG-19 PAF network) with the
PAF decoder, as pose-evaluation's ``extract.py --type body_pose`` runs it
(metrics.backends.rtpose_body, metrics.backends.paf_decoder).

The network is checked against the reference architecture's state-dict listing
(tests/data/rtpose_vgg19_state_dict.json); the decoder on hand-made maps; the backend at random
weights on small frames (a 32 px network input instead of 368, for speed). Parity with the
reference code itself is measured outside the test suite (docs/evaluators.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.weights import REGISTRY, MissingWeightsError
from metrics.backends import paf_decoder as pd
from metrics.backends import rtpose_body as rb
from metrics.backends.base import BackendInfo, backend_weights

pytestmark = pytest.mark.usefixtures("one_thread")

STATE_DICT_FACTS = Path(__file__).resolve().parent / "data" / "rtpose_vgg19_state_dict.json"
INFO = BackendInfo("rtpose", "pytorch_Realtime_Multi-Person_Pose_Estimation", "test", "random-init")


# ------------------------------------------------------------------------------------ network


def test_state_dict_keys_and_shapes_are_the_reference_architectures():
    with torch.device("meta"):
        net = rb.RtposeVGG19()
    ours = [[name, list(tensor.shape)] for name, tensor in net.state_dict().items()]
    facts = json.loads(STATE_DICT_FACTS.read_text())
    assert ours == facts["state_dict"]
    assert sum(torch.Size(shape).numel() for _, shape in ours) == 52_311_446


def test_a_state_dict_with_a_wrong_key_or_shape_is_refused_naming_it():
    with torch.device("meta"):
        net = rb.RtposeVGG19()
    state = dict(net.state_dict())
    state["model0.0.weights"] = state.pop("model0.0.weight")
    with pytest.raises(ValueError, match=r"pose_model\.pth: does not match") as err:
        rb.load_rtpose_state_dict(net, state, "pose_model.pth")
    assert "missing keys ['model0.0.weight']" in str(err.value)
    assert "unexpected keys ['model0.0.weights']" in str(err.value)
    state = dict(net.state_dict())
    state["model6_2.12.bias"] = torch.zeros(18)
    with pytest.raises(ValueError, match=r"wrong shapes \['model6_2\.12\.bias'\]"):
        rb.load_rtpose_state_dict(net, state, "pose_model.pth")
    with pytest.raises(ValueError, match="not an rtpose state dict"):
        rb.load_rtpose_state_dict(net, [1, 2], "pose_model.pth")


def test_the_released_state_dict_loads_strictly_and_its_digest_is_recorded(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = rb.RtposeVGG19().state_dict()
    path = tmp_path / REGISTRY[rb.WEIGHTS_NAME].filename
    monkeypatch.setattr(rb, "resolve_with_sha256", lambda name, weights_dir: (path, "d" * 64))
    monkeypatch.setattr(rb, "load_pickled", lambda name, file: state)
    backend = rb.build_rtpose(weights_dir=tmp_path, batch_size=3)
    assert backend.info == BackendInfo(
        "rtpose",
        "pytorch_Realtime_Multi-Person_Pose_Estimation",
        "257d8b4 (pose-evaluation)",
        "d" * 64,
    )
    assert torch.equal(backend.net.model6_2[12].weight, state["model6_2.12.weight"])
    assert not backend.net.training and backend.batch_size == 3


def test_missing_weights_stop_with_the_file_url_and_fetch_command(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        rb.build_rtpose(weights_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "pose_model.pth") in message and REGISTRY[rb.WEIGHTS_NAME].url in message
    assert f"animbench weights fetch {rb.WEIGHTS_NAME} --dir {tmp_path}" in message
    assert "\n" not in message


def test_registered_with_the_weights_it_loads_and_random_init_says_so(tmp_path):
    assert backend_weights("keypoint", "rtpose", {}) == ["rtpose_vgg19_coco"]
    backend = rb.build_rtpose(weights_dir=tmp_path, pretrained=False)
    assert backend.info.weights_sha256 == "random-init" and backend.num_joints == 18
    assert backend.info.cache_key() == "rtpose-257d8b4 (pose-evaluation)-random-init"


# ------------------------------------------------------------------------------ preprocessing


def test_the_shorter_side_is_scaled_to_368_and_padded_to_the_stride():
    assert rb.network_scale(256, 256) == 368 / 256
    assert rb.network_scale(200, 300) == 368 / 200  # landscape: 368 px high
    assert rb.network_scale(300, 200) == 368 / 200  # portrait: 368 px WIDE (crop_with_factor)
    frame = np.full((20, 30, 3), 255, np.uint8)
    image, resized = rb.network_input(frame, input_height=36)
    assert resized == (36, 54) and image.shape == (3, 40, 56) and image.flags.c_contiguous
    assert image.dtype == np.float32 and image[0, 0, 0] == 255 / 256 - 0.5
    assert image[0, -1, -1] == -0.5  # the zero padding


def test_mirrored_maps_are_mirrored_back_with_left_and_right_exchanged():
    rng = np.random.default_rng(0)
    heat, paf = rng.random((4, 6, 19)), rng.random((4, 6, 38))
    # The mirror image of the frame's maps, as a mirror-symmetric network would give.
    mirror_heat = heat[:, ::-1][:, :, rb.HEATMAP_MIRROR]
    mirror_paf = paf[:, ::-1][:, :, rb.PAF_MIRROR] * np.where(np.arange(38) % 2 == 0, -1, 1)
    np.testing.assert_allclose(rb.average_heatmaps_with_mirror(heat, mirror_heat), heat)
    np.testing.assert_allclose(rb.average_pafs_with_mirror(paf, mirror_paf), paf)


# ------------------------------------------------------------------------------------ decoder

H, W = 48, 64
# neck, right shoulder, right elbow, right wrist: limbs (1, 2), (2, 3), (3, 4)
ARM = {1: (20, 10), 2: (12, 12), 3: (10, 22), 4: (9, 32)}
ARM_LIMBS = ((1, 2), (2, 3), (3, 4))


def _maps(people: list[dict[int, tuple[int, int]]], limbs: list[tuple[tuple[int, int], ...]]):
    """Gaussian peaks (value 1 at the joint) and unit PAFs along each limb, 1.5 px wide."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    heat, paf = np.zeros((H, W, 19)), np.zeros((H, W, 38))
    for joints, person_limbs in zip(people, limbs, strict=True):
        for joint, (x, y) in joints.items():
            blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
            heat[:, :, joint] = np.maximum(heat[:, :, joint], blob)
        for a, b in person_limbs:
            start, end = np.array(joints[a], float), np.array(joints[b], float)
            unit = (end - start) / np.linalg.norm(end - start)
            t = (xx - start[0]) * unit[0] + (yy - start[1]) * unit[1]
            off = np.abs((xx - start[0]) * unit[1] - (yy - start[1]) * unit[0])
            on = (t >= -1) & (t <= np.linalg.norm(end - start) + 1) & (off <= 1.5)
            cx, cy = pd.LIMB_PAF_CHANNELS[pd.LIMBS.index((a, b))]
            paf[on, cx], paf[on, cy] = unit
    return heat, paf


def _person_joints(decoded: pd.Decoded, person: np.ndarray) -> dict[int, tuple[float, float]]:
    return {
        j: tuple(decoded.joints[int(row), :2])
        for j, row in enumerate(person[: pd.NUM_JOINTS])
        if row >= 0
    }


def test_one_person():
    decoded = pd.decode(*_maps([ARM], [ARM_LIMBS]))
    np.testing.assert_array_equal(
        decoded.joints[:, [pd.X, pd.Y, pd.TYPE]], [[*ARM[j], j] for j in ARM]
    )
    np.testing.assert_array_equal(decoded.joints[:, pd.ID], range(4))
    np.testing.assert_allclose(decoded.joints[:, pd.SCORE], 1.0)
    assert len(decoded.people) == 1
    assert _person_joints(decoded, decoded.people[0]) == ARM
    # 4 joints of score 1 and 3 limbs whose PAF lies exactly along them (score 1 each)
    np.testing.assert_allclose(decoded.people[0, pd.PERSON_SCORE :], [7.0, 4.0])
    out = pd.keypoints_from_joints(decoded.joints)
    np.testing.assert_array_equal(out[list(ARM)], list(ARM.values()))
    assert np.isnan(np.delete(out, list(ARM), axis=0)).all() and out.shape == (18, 2)


def test_two_people_and_the_last_peak_in_raster_order_wins():
    """Person B stands higher and to the right: each joint's last peak in raster order (row by
    row) is person A's, so extract.py's 18x2 array is A's whole arm, not the first person's."""
    arm_b = {j: (x + 36, y - 6) for j, (x, y) in ARM.items()}
    decoded = pd.decode(*_maps([ARM, arm_b], [ARM_LIMBS, ARM_LIMBS]))
    assert len(decoded.joints) == 8 and len(decoded.people) == 2
    people = {frozenset(_person_joints(decoded, p).items()) for p in decoded.people}
    assert people == {frozenset(ARM.items()), frozenset(arm_b.items())}
    out = pd.keypoints_from_joints(decoded.joints)
    np.testing.assert_array_equal(out[list(ARM)], list(ARM.values()))
    # ... and numpy's fancy assignment, as extract.py writes it, agrees.
    reference = -np.ones((18, 2))
    reference[decoded.joints[:, pd.TYPE].astype(int)] = decoded.joints[:, :2]
    np.testing.assert_array_equal(np.where(np.isnan(out), -1, out), reference)


def test_a_missing_limb_leaves_its_joint_out_of_the_person_but_not_out_of_the_output():
    heat, paf = _maps([ARM], [ARM_LIMBS[:2]])  # no elbow -> wrist PAF
    decoded = pd.decode(heat, paf)
    assert len(decoded.joints) == 4 and len(decoded.people) == 1
    assert _person_joints(decoded, decoded.people[0]) == {j: ARM[j] for j in (1, 2, 3)}
    assert decoded.people[0, 4] == -1 and decoded.people[0, pd.PERSON_COUNT] == 3
    found = [len(limbs) for limbs in pd.connect_limbs(paf, decoded.joints)]
    assert found == [int(limb in ARM_LIMBS[:2]) for limb in pd.LIMBS]
    out = pd.keypoints_from_joints(decoded.joints)
    np.testing.assert_array_equal(out[4], ARM[4])  # extract.py reads peaks, not people


def test_two_joints_alone_make_no_person():
    decoded = pd.decode(*_maps([{1: (20, 10), 2: (12, 12)}], [((1, 2),)]))
    assert len(decoded.joints) == 2 and decoded.people.shape == (0, 20)


def test_a_peak_moves_to_the_maximum_of_its_5x5_window():
    """The peak test compares 4 neighbours only: a diagonal neighbour can be larger, and the
    peak is then refined onto it (both peaks end at the same place, with its score)."""
    heat = np.zeros((H, W, 19))
    heat[10, 10, 0], heat[11, 11, 0], heat[0, 0, 5] = 0.5, 0.9, 0.3
    heat[20, 30, 7] = 0.1  # not above the threshold
    joints = pd.find_peaks(heat)
    np.testing.assert_array_equal(
        joints, [[11, 11, 0.9, 0, 0], [11, 11, 0.9, 1, 0], [0, 0, 0.3, 2, 5]]
    )
    assert pd.find_peaks(np.zeros((H, W, 19))).shape == (0, 5)
    assert np.isnan(pd.keypoints_from_joints(np.zeros((0, 5)))).all()


# ------------------------------------------------------------------------------------ backend


class HotCell(torch.nn.Module):
    """Stands in for the network: zero PAFs, heatmap ``joint`` 1 at one output cell."""

    def __init__(self, joint: int, cell: tuple[int, int]) -> None:
        super().__init__()
        self.joint, self.cell = joint, cell

    def forward(self, x, last_pafs=True):
        shape = (len(x), rb.HEATMAP_CHANNELS, x.shape[2] // 8, x.shape[3] // 8)
        heat = torch.zeros(shape)
        heat[:, self.joint, self.cell[0], self.cell[1]] = 1.0
        return torch.zeros((len(x), rb.PAF_CHANNELS, *shape[2:])), heat


def test_detect_maps_the_network_grid_to_frame_pixels_and_averages_the_mirror_pass():
    """A right-elbow (3) hot cell in every image: the frame's pass puts the right elbow there,
    the mirror pass a left elbow (6) at the mirrored place; each averages to 0.5, a peak."""
    backend = rb.RtposeBody(HotCell(3, (2, 1)), INFO, "cpu", batch_size=2, input_height=40)
    frames = np.zeros((3, 30, 40, 3), np.uint8)  # scale 40 / 30: 40 x 53 -> 40 x 56, 5 x 7 cells
    out = backend.detect(frames)
    assert out.shape == (3, 18, 2) and out.dtype == np.float64
    scale = 40 / 30
    x, y = (8 * 1 + 4) / scale - 0.5, (8 * 2 + 4) / scale - 0.5  # the cell's centre in the frame
    np.testing.assert_allclose(out[:, 3], [[x, y]] * 3, atol=1.0)
    np.testing.assert_allclose(out[:, 6], [[40 - 1 - x, y]] * 3, atol=1.0)
    assert np.isnan(np.delete(out, [3, 6], axis=1)).all()
    heatmaps, pafs = backend.maps(frames)
    assert heatmaps.shape == (3, 30, 40, 19) and pafs.shape == (3, 30, 40, 38)
    assert heatmaps[0, :, :, 3].max() == pytest.approx(0.5, abs=0.05) and not pafs.any()


def _random_net() -> rb.RtposeVGG19:
    """Random weights with He-normal scale, so that heatmaps do cross the peak threshold."""
    torch.manual_seed(0)
    net = rb.RtposeVGG19()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
            torch.nn.init.normal_(module.bias, std=0.05)
    return net.eval()


def test_random_weights_batched_equal_one_by_one_with_the_nan_convention():
    net = _random_net()
    frames = np.random.default_rng(0).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    batched = rb.RtposeBody(net, INFO, "cpu", batch_size=3, input_height=32)
    single = rb.RtposeBody(net, INFO, "cpu", batch_size=1, input_height=32)
    out = batched.detect(frames)
    assert out.shape == (3, 18, 2) and out.dtype == np.float64
    for a, b in zip(batched.maps(frames), single.maps(frames), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(out, single.detect(frames))
    found = ~np.isnan(out[..., 0])
    assert found.any() and (np.isnan(out[..., 1]) == ~found).all()
    assert (out[found] == np.round(out[found])).all()  # whole pixels, inside the frame
    assert (
        (out[found] >= 0).all() and (out[found][:, 0] < 20).all() and (out[found][:, 1] < 24).all()
    )
    assert batched.detect(frames[:0]).shape == (0, 18, 2)


def test_skipping_the_last_paf_branch_leaves_the_heatmaps_unchanged():
    net = _random_net()
    x = torch.rand(2, 3, 32, 24) - 0.5
    with torch.no_grad():
        pafs, heatmaps = net(x)
        none, alone = net(x, last_pafs=False)
    assert pafs.shape == (2, 38, 4, 3) and heatmaps.shape == (2, 19, 4, 3) and none is None
    assert torch.equal(alone, heatmaps)


def test_frames_must_be_uint8_rgb():
    backend = rb.RtposeBody(HotCell(0, (0, 0)), INFO, "cpu", batch_size=2, input_height=16)
    for bad in (
        np.zeros((1, 8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 8, 8, 4), np.uint8),
    ):
        with pytest.raises(ValueError, match=r"uint8 RGB of shape \(N, H, W, 3\)"):
            backend.detect(bad)


@pytest.mark.slow
def test_full_size_network_batched_equals_one_by_one():
    net = _random_net()
    frames = np.random.default_rng(1).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    batched = rb.RtposeBody(net, INFO, "cpu", batch_size=2)
    single = rb.RtposeBody(net, INFO, "cpu", batch_size=1)
    for a, b in zip(batched.maps(frames), single.maps(frames), strict=True):
        assert a.shape[1:3] == (48, 64)
        np.testing.assert_allclose(a, b, atol=1e-5)

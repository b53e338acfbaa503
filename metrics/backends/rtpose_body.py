"""Body keypoints as the papers measured them: OpenPose's COCO-18 VGG-19 PAF network (`rtpose`).

Published body AKD/MKR of image-animation papers come from pose-evaluation's ``extract.py
--type body_pose``, which runs pytorch_Realtime_Multi-Person_Pose_Estimation (the fork pinned at
257d8b4) with the CMU COCO model ``pose_model.pth``. This backend reproduces that inference:

- the RGB frame is flipped to BGR;
- one scale: ``scale = 368 / height * height / min(height, width)`` (get_multiplier's
  ``scale_search = [1.]`` followed by crop_with_factor, which divides by the SHORTER side: a
  landscape or square frame becomes 368 px high, a portrait one 368 px wide); cv2 bilinear
  resize with that factor, zero padding (pixel value 0, -0.5 once preprocessed) right/bottom to
  a multiple of the stride 8, then ``x / 256 - 0.5`` ('rtpose' preprocessing);
- the network's stage-6 PAFs (38) and heatmaps (19) are cv2-bicubic upsampled 8x, cropped to
  the resized frame and cv2-bicubic resized to the frame size, in float32 as coco_eval.py's
  get_outputs does;
- the mirrored frame goes through the same steps; its maps are mirrored back, their left/right
  channels swapped and PAF x components negated, and averaged with the frame's
  (handle_paf_and_heat), in float64;
- the peaks of the averaged heatmaps are decoded as post.py decode_pose does
  (metrics.backends.paf_decoder) and written into an 18x2 array by joint type, the last peak in
  raster order winning where a joint has several; a joint with no peak is NaN (-1 there).

The network runs batched (each batch: its frames and their mirror images, as one contiguous
NCHW float32 array like the reference's), the resizes and the decoder per frame on numpy/cv2.
Outputs equal the one-frame-at-a-time reference (bit for bit on CPU in our parity runs; a
convolution backend may round differently with another batch size). ``detect`` skips what
extract.py computes but never reads: the stage-6 PAF branch, the PAF resizes, limbs and people.
The weights are the registry entry ``rtpose_vgg19_coco``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR, load_pickled, resolve_with_sha256
from metrics.backends import paf_decoder
from metrics.backends.base import BackendInfo, check_frames, register_keypoint_backend

NUM_JOINTS = paf_decoder.NUM_JOINTS
HEATMAP_CHANNELS = 19  # 18 joints + background
PAF_CHANNELS = paf_decoder.NUM_PAF_CHANNELS
STAGES = 6
STRIDE = 8
INPUT_HEIGHT = 368  # the height the shorter frame side is scaled to (scale_search [1.])
PAD_VALUE = 0  # padding pixel value before preprocessing (crop_with_factor's np.zeros)
WEIGHTS_NAME = "rtpose_vgg19_coco"
RANDOM_INIT = "random-init"

# coco_eval.py handle_paf_and_heat: the channel that holds each channel's mirror image (left and
# right joints and limbs exchanged; the background heatmap and the nose/neck ones stay).
HEATMAP_MIRROR = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18)
PAF_MIRROR = (
    6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25, 26, 27, 12, 13, 14, 15, 16, 17,
    18, 19, 28, 29, 32, 33, 30, 31, 36, 37, 34, 35,
)  # fmt: skip

# The VGG-19 trunk (conv1_1 .. conv4_2) and the two CPM layers conv4_3_CPM, conv4_4_CPM, as
# (in, out) 3x3 convolutions or "pool" (2x2 max pool). State-dict keys are Sequential indices
# (model0.<index>.weight), so the layer order, each convolution followed by its ReLU module,
# is what makes the released file load.
TRUNK: tuple[tuple[int, int] | str, ...] = (
    (3, 64), (64, 64), "pool",
    (64, 128), (128, 128), "pool",
    (128, 256), (256, 256), (256, 256), (256, 256), "pool",
    (256, 512), (512, 512), (512, 256), (256, 128),
)  # fmt: skip
FEATURES = 128
STAGE_INPUT = PAF_CHANNELS + HEATMAP_CHANNELS + FEATURES  # 185: stages 2-6 see both maps


def _with_relus(layers: list[nn.Module], last: nn.Conv2d | None = None) -> nn.Sequential:
    """Each convolution of ``layers`` followed by a ReLU, then ``last`` (the raw output) bare."""
    modules: list[nn.Module] = []
    for layer in layers:
        modules += [layer, nn.ReLU(inplace=True)] if isinstance(layer, nn.Conv2d) else [layer]
    return nn.Sequential(*modules, *([last] if last is not None else []))


def _trunk() -> nn.Sequential:
    return _with_relus(
        [nn.MaxPool2d(2, 2) if spec == "pool" else nn.Conv2d(*spec, 3, padding=1) for spec in TRUNK]
    )


def _stage(stage: int, outputs: int) -> nn.Sequential:
    """One branch of one stage: stage 1 has three 3x3 convolutions on the trunk's features,
    stages 2-6 five 7x7 ones on maps + features; both end with two 1x1 convolutions."""
    if stage == 1:
        convs = [nn.Conv2d(FEATURES, FEATURES, 3, padding=1) for _ in range(3)]
        return _with_relus([*convs, nn.Conv2d(FEATURES, 512, 1)], nn.Conv2d(512, outputs, 1))
    convs = [
        nn.Conv2d(STAGE_INPUT if i == 0 else FEATURES, FEATURES, 7, padding=3) for i in range(5)
    ]
    return _with_relus([*convs, nn.Conv2d(FEATURES, FEATURES, 1)], nn.Conv2d(FEATURES, outputs, 1))


class RtposeVGG19(nn.Module):
    """rtpose_vgg.py get_model('vgg19'): modules ``model0`` (trunk), ``model<stage>_1`` (PAF
    branch) and ``model<stage>_2`` (heatmap branch), registered in the reference's order so the
    state dict matches ``pose_model.pth`` key for key."""

    def __init__(self) -> None:
        super().__init__()
        self.model0 = _trunk()
        for branch, outputs in ((1, PAF_CHANNELS), (2, HEATMAP_CHANNELS)):
            for stage in range(1, STAGES + 1):
                self.add_module(f"model{stage}_{branch}", _stage(stage, outputs))

    def forward(
        self, x: torch.Tensor, last_pafs: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B, 3, H, W) preprocessed BGR -> last-stage PAFs (B, 38, H/8, W/8), heatmaps (B, 19,
        H/8, W/8). ``last_pafs=False`` skips the stage-6 PAF branch (None), which no heatmap
        depends on."""
        features = self.model0(x)
        maps = features
        for stage in range(1, STAGES + 1):
            heatmaps = getattr(self, f"model{stage}_2")(maps)
            if stage == STAGES and not last_pafs:
                return None, heatmaps
            pafs = getattr(self, f"model{stage}_1")(maps)
            maps = torch.cat([pafs, heatmaps, features], 1)
        return pafs, heatmaps


def load_rtpose_state_dict(net: RtposeVGG19, state: object, source: str | Path) -> None:
    """Strict load of the released state dict; anything else is refused, naming what differs."""
    if not isinstance(state, dict):
        raise ValueError(f"{source}: not an rtpose state dict (got {type(state).__name__})")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(
        k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or reshaped:
        raise ValueError(
            f"{source}: does not match the rtpose VGG-19 network: missing keys {missing}, "
            f"unexpected keys {unexpected}, wrong shapes {reshaped}"
        )
    net.load_state_dict(state, strict=True)


def network_scale(height: int, width: int, input_height: int = INPUT_HEIGHT) -> float:
    """cv2 resize factor of a ``height`` x ``width`` frame, computed with the reference's
    floating-point operations in its order (get_multiplier, then crop_with_factor)."""
    return input_height / height * height / min(height, width)


def network_input(
    frame_bgr: np.ndarray, input_height: int = INPUT_HEIGHT
) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, Hp, Wp) float32 network input of one BGR uint8 frame and the resized (h, w) inside it."""
    scale = network_scale(*frame_bgr.shape[:2], input_height)
    resized = cv2.resize(np.ascontiguousarray(frame_bgr), None, fx=scale, fy=scale)
    height, width = resized.shape[:2]
    padded = np.full(
        (-(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE, 3), PAD_VALUE, np.uint8
    )
    padded[:height, :width] = resized
    # Contiguous NCHW, as the reference's batch array: a channels-last batch would send the
    # convolutions down another kernel path (outputs differing by ~1e-5).
    image = np.ascontiguousarray((padded.astype(np.float32) / 256.0 - 0.5).transpose(2, 0, 1))
    return image, (height, width)


def maps_to_frame(maps: np.ndarray, resized: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
    """(H/8, W/8, C) float32 network maps -> (H, W, C) float64 at frame size: bicubic 8x up,
    crop to the resized frame, bicubic to the frame (in float32, as get_outputs)."""
    up = cv2.resize(
        np.ascontiguousarray(maps), None, fx=STRIDE, fy=STRIDE, interpolation=cv2.INTER_CUBIC
    )
    up = np.ascontiguousarray(up[: resized[0], : resized[1]])
    out = cv2.resize(up, (frame[1], frame[0]), interpolation=cv2.INTER_CUBIC)
    return out.reshape(*frame, maps.shape[-1]).astype(np.float64)  # cv2 drops a single channel


def average_heatmaps_with_mirror(heatmaps: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Average a frame's (H, W, 19) heatmaps with its mirror image's, mirrored back."""
    return (heatmaps + mirrored[:, ::-1][:, :, HEATMAP_MIRROR]) / 2.0


def average_pafs_with_mirror(pafs: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Average a frame's (H, W, 38) PAFs with its mirror image's, mirrored back."""
    back = mirrored[:, ::-1][:, :, PAF_MIRROR]
    back[:, :, 0::2] *= -1  # a PAF's x component changes sign in the mirror image
    return (pafs + back) / 2.0


class RtposeBody:
    """rtpose + PAF decoding -> (N, 18, 2) pixel x, y per COCO-18 joint; NaN where not found."""

    num_joints = NUM_JOINTS

    def __init__(
        self,
        net: RtposeVGG19,
        info: BackendInfo,
        device: str,
        batch_size: int,
        input_height: int = INPUT_HEIGHT,
    ) -> None:
        self.net = net
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.input_height = input_height  # smaller only in tests, for speed

    @torch.no_grad()
    def _batch_maps(
        self, frames: np.ndarray, with_pafs: bool = True
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Averaged (heatmaps, PAFs or None) at frame size of each frame of one network batch."""
        bgr = frames[..., ::-1]
        inputs = [network_input(image, self.input_height) for image in (*bgr, *bgr[:, :, ::-1])]
        batch = torch.from_numpy(np.stack([x for x, _ in inputs])).to(self.device)
        pafs, heatmaps = (
            None if t is None else t.cpu().numpy() for t in self.net(batch, last_pafs=with_pafs)
        )
        resized, size, n = inputs[0][1], frames.shape[1:3], len(frames)

        def at_frame(maps: np.ndarray, k: int) -> np.ndarray:
            return maps_to_frame(maps[k].transpose(1, 2, 0), resized, size)

        out = []
        for i in range(n):
            heat = average_heatmaps_with_mirror(at_frame(heatmaps, i), at_frame(heatmaps, n + i))
            paf = None
            if with_pafs:
                paf = average_pafs_with_mirror(at_frame(pafs, i), at_frame(pafs, n + i))
            out.append((heat, paf))
        return out

    def maps(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 19) heatmaps and (N, H, W, 38) PAFs, float64, as the decoder sees them."""
        check_frames(frames)
        pairs = [
            pair
            for start in range(0, len(frames), self.batch_size)
            for pair in self._batch_maps(frames[start : start + self.batch_size])
        ]
        if not pairs:
            height, width = frames.shape[1:3]
            return np.zeros((0, height, width, HEATMAP_CHANNELS)), np.zeros(
                (0, height, width, PAF_CHANNELS)
            )
        return np.stack([h for h, _ in pairs]), np.stack([p for _, p in pairs])

    def detect(self, frames: np.ndarray) -> np.ndarray:
        check_frames(frames)
        out = np.full((len(frames), NUM_JOINTS, 2), np.nan)
        for start in range(0, len(frames), self.batch_size):
            # extract.py reads only the peaks: PAFs (and people) never reach its output.
            batch = self._batch_maps(frames[start : start + self.batch_size], with_pafs=False)
            for i, (heatmaps, _) in enumerate(batch):
                out[start + i] = paf_decoder.keypoints_from_joints(paf_decoder.find_peaks(heatmaps))
        return out


@register_keypoint_backend("rtpose", weights=lambda **_: [WEIGHTS_NAME])
def build_rtpose(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 8,
    pretrained: bool = True,
) -> RtposeBody:
    """``batch_size`` frames per network call (each with its mirror image: twice as many
    images). ``pretrained=False``: the same architecture at PyTorch's default random init
    (plumbing tests only)."""
    sha256 = RANDOM_INIT
    if pretrained:
        # Resolved first: a missing file is reported before the 52M-parameter build.
        path, sha256 = resolve_with_sha256(WEIGHTS_NAME, weights_dir)
        net = RtposeVGG19()
        load_rtpose_state_dict(net, load_pickled(WEIGHTS_NAME, path), path)
    else:
        net = RtposeVGG19()
    info = BackendInfo(
        name="rtpose",
        package="pytorch_Realtime_Multi-Person_Pose_Estimation",
        version="257d8b4 (pose-evaluation)",
        weights_sha256=sha256,
    )
    return RtposeBody(net.eval().to(device), info, device, batch_size)

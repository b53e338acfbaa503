"""68 facial landmarks with face-alignment: the SFD face detector, then FAN 2D.

As in the pose-evaluation protocol: per frame, the 68 2D landmarks (pixel x, y) of the first
detected face (SFD's highest-scoring box after non-maximum suppression). A frame with no face
gives an all-NaN row, which the metric code counts as a skipped frame.

face-alignment 1.5.0 downloads its weights into the torch hub cache and compiles the network
when ``FaceAlignment`` is constructed; here both networks are built from the package's own
classes and loaded from the registry (``fan_2d``, ``sfd``) instead, in eager mode. The enum is
``LandmarksType.TWO_D`` (renamed from ``_2D`` in face-alignment 1.4).

``face_alignment_paper`` is the same two networks (same registry weights) run the way the
papers' pose-evaluation ran face-alignment at commit 3750f83 (2018):
``FaceAlignment(LandmarksType._2D, flip_input=False).get_landmarks(frame)[0]`` on every frame.
What that differs in from ``face_alignment`` (and from face-alignment 1.5.0's own
``get_landmarks``), with the sizes measured on identical inputs, is in docs/evaluators.md:

- no flipped second FAN pass (``flip_input=False``; our modern default is ``True``);
- one frame at a time through SFD (the modern backend batches frames);
- SFD boxes decoded in float32 (1.5.0: float64) and NMS'd as float32 rows, their scores sorted
  with NumPy 1.15's quicksort: today's NumPy sorts with SIMD on AVX-512 machines and orders
  tied scores differently, so the "first face" among boxes tied at the top score differs;
- the crop centre and scale rounded as 3750f83 computed them from float32 boxes under
  NumPy 1.x scalar promotion (the centre a float32 tensor, the scale a float64);
- landmarks taken back to the image with the float32 torch ``transform`` (inverse matrix,
  truncation to int) per landmark; 1.5.0 uses a float64 ``pinv`` (``transform_np``), which
  truncates to the neighbouring integer for a few landmarks in 100,000 (about 1 in 1,000 when
  the box corners are whole pixels).

Both variants return integer-valued pixel coordinates (both versions truncate to int).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from pathlib import Path

import numpy as np
import torch

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve_with_sha256
from metrics.backends.base import (
    BackendInfo,
    check_frames,
    frames_to_tensor,
    register_keypoint_backend,
)

# face-alignment's batch path takes RGB float on the 0..255 scale.
_frames_to_tensor = frames_to_tensor
NUM_LANDMARKS = 68
FAN_WEIGHTS, SFD_WEIGHTS = "fan_2d", "sfd"
RANDOM_INIT = "random-init"


class FaceAlignmentLandmarks:
    """SFD + FAN 2D -> (N, 68, 2) pixel landmarks of the first face; NaN rows where none."""

    num_joints = NUM_LANDMARKS

    def __init__(self, aligner, info: BackendInfo, batch_size: int) -> None:
        self.aligner = aligner
        self.info = info
        self.batch_size = batch_size

    def detect(self, frames: np.ndarray) -> np.ndarray:
        images = _frames_to_tensor(frames)
        out = np.full((len(images), NUM_LANDMARKS, 2), np.nan)
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            # SFD runs batched; its boxes come out of non-maximum suppression in descending
            # score order, so the first box is the first (most confident) face.
            boxes = self.aligner.face_detector.detect_from_batch(batch)
            for i, faces in enumerate(boxes):
                if len(faces) == 0:
                    continue  # no face: the row stays NaN and the frame is counted as skipped
                image = batch[i].numpy().transpose(1, 2, 0)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="No faces were detected")
                    points = self.aligner.get_landmarks_from_image(image, detected_faces=[faces[0]])
                if points:
                    out[start + i] = np.asarray(points[0], dtype=np.float64)[:NUM_LANDMARKS, :2]
        return out


def _load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_networks(device: str, weights_dir: str | Path, pretrained: bool):
    """FAN (4 stacks, 2D) and S3FD from the package's classes, at the registry weights (or random
    when ``pretrained`` is False): ``(fan, sfd, weights_sha256, weights_files)``, both in eval mode
    on ``device``."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    fan, sfd_net = FAN(4), s3fd()  # NetworkSize.LARGE: 4 stacked hourglasses
    sha256, weights_files = RANDOM_INIT, {}
    if pretrained:
        fan_path, fan_sha = resolve_with_sha256(FAN_WEIGHTS, weights_dir)
        sfd_path, sfd_sha = resolve_with_sha256(SFD_WEIGHTS, weights_dir)
        fan.load_state_dict(_load_state(fan_path))
        sfd_net.load_state_dict(_load_state(sfd_path))
        # One digest for the pair (sha256 of "<fan sha256>+<sfd sha256>"), so that either file
        # changing invalidates cached ground truth; the two file digests stay in weights_files.
        weights_files = {FAN_WEIGHTS: fan_sha, SFD_WEIGHTS: sfd_sha}
        sha256 = hashlib.sha256(f"{fan_sha}+{sfd_sha}".encode()).hexdigest()
    return fan.to(device).eval(), sfd_net.to(device).eval(), sha256, weights_files


@register_keypoint_backend("face_alignment", weights=lambda **_: [FAN_WEIGHTS, SFD_WEIGHTS])
def build_face_alignment(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 8,
    face_threshold: float = 0.5,
    flip_input: bool = True,
    pretrained: bool = True,
) -> FaceAlignmentLandmarks:
    """``face_threshold`` is SFD's score threshold (face-alignment's default 0.5);
    ``pretrained=False`` builds both networks at random weights (plumbing tests only)."""
    from face_alignment.api import FaceAlignment, LandmarksType
    from face_alignment.detection.core import FaceDetector
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    fan, sfd_net, sha256, weights_files = _load_networks(device, weights_dir, pretrained)

    # The package's classes, filled in without their constructors (which would download from
    # the hub and torch.compile): same attributes, our weights.
    detector = SFDDetector.__new__(SFDDetector)
    FaceDetector.__init__(detector, device, False)
    detector.filter_threshold = face_threshold
    detector.face_detector = sfd_net

    aligner = FaceAlignment.__new__(FaceAlignment)
    aligner.device = device
    aligner.flip_input = flip_input
    aligner.landmarks_type = LandmarksType.TWO_D
    aligner.verbose = False
    aligner.dtype = torch.float32
    aligner.max_batch_size = batch_size
    aligner.face_detector = detector
    aligner.face_alignment_net = fan

    info = BackendInfo(
        name="face_alignment",
        package="face-alignment",
        version=importlib.metadata.version("face-alignment"),
        weights_sha256=sha256,
    )
    backend = FaceAlignmentLandmarks(aligner, info, batch_size)
    backend.weights_files = weights_files
    return backend


# ---------------------------------------------------------------------------------------------
# face_alignment_paper: face-alignment as the papers' pose-evaluation ran it (commit 3750f83)
# ---------------------------------------------------------------------------------------------

PAPER_COMMIT = "3750f83"
#: S3FD as 3750f83's SFDDetector used it: candidates above 0.05, NMS at IoU 0.3, faces above 0.5.
SFD_CANDIDATE_SCORE, SFD_NMS_IOU, SFD_FACE_SCORE = 0.05, 0.3, 0.5
SFD_MEAN_BGR = (104.0, 117.0, 123.0)
SFD_VARIANCES = (0.1, 0.2)
#: FAN crop: 256x256 input, 64x64 heatmaps, box scale divided by SFD's reference scale 195, the
#: centre moved up by 0.12 of the box height.
CROP_SIZE, HEATMAP_SIZE, REFERENCE_SCALE, CENTER_SHIFT = 256, 64, 195, 0.12


def sfd_boxes_float32(outputs: list[torch.Tensor]) -> np.ndarray:
    """S3FD's six (class, regression) output pairs of one image -> ``(K, 5)`` float32 rows
    ``x1, y1, x2, y2, score`` of every anchor whose face probability exceeds 0.05, level by
    level, each level in row-major anchor order (3750f83's order, which NMS's sort starts from).

    Decoded in float32 torch arithmetic, as 3750f83 did (1.5.0 decodes in float64 NumPy; the
    boxes differ by up to ~5e-5 px). Level ``i`` has stride ``4 * 2**i`` and square anchors of
    four strides; centres move by ``0.1 * size * regression``, sizes scale by ``exp(0.2 * reg)``.
    """
    rows = []
    for level in range(len(outputs) // 2):
        prob = torch.softmax(outputs[2 * level].detach().float().cpu(), dim=1)[0, 1]
        reg = outputs[2 * level + 1].detach().float().cpu()[0]
        hits = torch.nonzero(prob > SFD_CANDIDATE_SCORE)  # row-major, as a scan finds them
        if len(hits) == 0:
            continue
        ys, xs = hits[:, 0], hits[:, 1]
        stride = 2 ** (level + 2)
        anchor_xy = torch.stack([xs, ys], 1).float() * stride + stride / 2
        anchor_wh = torch.full_like(anchor_xy, 4.0 * stride)
        loc = reg[:, ys, xs].t()
        centre = anchor_xy + loc[:, :2] * SFD_VARIANCES[0] * anchor_wh
        size = anchor_wh * torch.exp(loc[:, 2:] * SFD_VARIANCES[1])
        top_left = centre - size / 2
        rows.append(torch.cat([top_left, size + top_left, prob[ys, xs, None]], 1))
    if not rows:
        return np.zeros((0, 5), np.float32)
    return torch.cat(rows).numpy()


def classic_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values)`` as NumPy 1.15 computed it: its default (unstable) quicksort, median
    of three pivots, insertion sort for partitions of up to 16, smaller partition first.

    The order among equal values is the algorithm's. NumPy >= 1.25 sorts with x86-simd-sort on
    AVX-512 (NumPy 2 also on AVX2) machines, which orders ties differently; without ties every
    algorithm gives the same permutation, so that case takes ``np.argsort``.
    """
    values = np.asarray(values)
    if len(np.unique(values)) == len(values):
        return np.argsort(values)
    v, idx = values.tolist(), list(range(len(values)))
    pending = [(0, len(idx) - 1)]
    while pending:
        lo, hi = pending.pop()
        while hi - lo > 15:  # partition around the median of idx[lo], idx[mid], idx[hi]
            mid = lo + ((hi - lo) >> 1)
            if v[idx[mid]] < v[idx[lo]]:
                idx[mid], idx[lo] = idx[lo], idx[mid]
            if v[idx[hi]] < v[idx[mid]]:
                idx[hi], idx[mid] = idx[mid], idx[hi]
            if v[idx[mid]] < v[idx[lo]]:
                idx[mid], idx[lo] = idx[lo], idx[mid]
            pivot = v[idx[mid]]
            left, right = lo, hi - 1
            idx[mid], idx[right] = idx[right], idx[mid]
            while True:
                left += 1
                while v[idx[left]] < pivot:
                    left += 1
                right -= 1
                while pivot < v[idx[right]]:
                    right -= 1
                if left >= right:
                    break
                idx[left], idx[right] = idx[right], idx[left]
            idx[left], idx[hi - 1] = idx[hi - 1], idx[left]
            if left - lo < hi - left:  # keep the larger side for later, go on with the smaller
                pending.append((left + 1, hi))
                hi = left - 1
            else:
                pending.append((lo, left - 1))
                lo = left + 1
        for k in range(lo + 1, hi + 1):  # insertion sort of the short run idx[lo..hi]
            item, key, j = idx[k], v[idx[k]], k
            while j > lo and key < v[idx[j - 1]]:
                idx[j] = idx[j - 1]
                j -= 1
            idx[j] = item
    return np.asarray(idx, dtype=np.intp)


def nms_float32(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression of ``(K, 5)`` float32 rows as 3750f83's SFD ran it: from
    the highest score down (``classic_argsort`` of the scores, reversed), a box is dropped when
    its overlap with a kept one exceeds ``iou``; overlap = intersection / union with the
    "+1 pixel" areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, all in float32. Returns the kept row
    indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    x1, y1, x2, y2, scores = (boxes[:, k] for k in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = classic_argsort(scores)[::-1]
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return np.asarray(keep, dtype=np.intp)


def paper_center_scale(box) -> tuple[torch.Tensor, float]:
    """FAN crop centre and scale of a face box as 3750f83 computed them.

    Its boxes are float32 rows, and under the NumPy 1.x of its time a float32 scalar combined
    with a Python number gave a float64: the centre is worked out in float64 from float32 box
    differences and stored as a float32 tensor (its y then moved up by ``0.12 * height`` in
    float32 tensor arithmetic); the scale ``(w + h) / 195`` stays float64. (Under NumPy 2 the
    same source gives float32 scalars, and 3750f83's ``transform`` then fails on them.)
    """
    x1, y1, x2, y2 = (np.float32(v) for v in box[:4])
    width, height = x2 - x1, y2 - y1  # float32
    center = torch.tensor(
        [float(x2) - float(width) / 2.0, float(y2) - float(height) / 2.0], dtype=torch.float32
    )
    center[1] = center[1] - float(height) * CENTER_SHIFT
    scale = float(((x2 - x1) + y2) - y1) / REFERENCE_SCALE  # summed left to right in float32
    return center, scale


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """``(68, 64, 64)`` heatmaps -> ``(68, 2)`` float32 x, y in heatmap pixels, as both
    3750f83 and 1.5.0 compute them: the first maximum (1-based column, row), moved a quarter
    pixel towards the larger neighbour along each axis (not on the border row/column; no move
    where the neighbours are equal), minus 0.5."""
    count, rows, cols = heatmaps.shape
    if (rows, cols) != (HEATMAP_SIZE, HEATMAP_SIZE):
        raise ValueError(f"heatmaps must be (J, {HEATMAP_SIZE}, {HEATMAP_SIZE}), got {heatmaps.shape}")
    hm = heatmaps.astype(np.float32, copy=False)
    flat = hm.reshape(count, -1).argmax(1)
    px, py = flat % cols, flat // cols  # 0-based column, row of the (first) maximum
    peaks = np.stack([px, py], 1).astype(np.float32) + 1.0
    inside = (px > 0) & (px < cols - 1) & (py > 0) & (py < rows - 1)
    j, x, y = np.arange(count)[inside], px[inside], py[inside]
    step = np.stack([hm[j, y, x + 1] - hm[j, y, x - 1], hm[j, y + 1, x] - hm[j, y - 1, x]], 1)
    peaks[inside] += np.sign(step) * np.float32(0.25)
    return peaks - np.float32(0.5)


def paper_landmarks_from_heatmaps(heatmaps: np.ndarray, center: torch.Tensor, scale: float) -> np.ndarray:
    """``(68, 64, 64)`` FAN heatmaps of a crop -> ``(68, 2)`` float64 image pixels, as 3750f83:
    each heatmap peak mapped back through the inverse of the crop's float32 affine transform
    (face-alignment's ``transform(..., invert=True)``, unchanged since 3750f83) and truncated
    towards zero to an int."""
    from face_alignment.utils import transform

    peaks = torch.from_numpy(heatmap_peaks(heatmaps))
    points = [transform(p, center, scale, HEATMAP_SIZE, True).numpy() for p in peaks]
    return np.asarray(points, dtype=np.float64)


class FaceAlignmentPaperLandmarks:
    """3750f83's ``get_landmarks(frame)[0]`` per frame; NaN rows where SFD finds no face."""

    num_joints = NUM_LANDMARKS

    def __init__(self, fan, sfd_net, info: BackendInfo, device: str = "cpu",
                 face_threshold: float = SFD_FACE_SCORE) -> None:
        self.fan, self.sfd_net = fan, sfd_net
        self.info = info
        self.device = device
        self.face_threshold = face_threshold

    @torch.no_grad()
    def face_boxes(self, frame: np.ndarray) -> np.ndarray:
        """``(K, 5)`` float32 faces of one RGB uint8 frame, most confident first (SFD alone on
        this frame, NMS at IoU 0.3, score above ``face_threshold``)."""
        bgr = torch.from_numpy(np.ascontiguousarray(frame[..., ::-1])).permute(2, 0, 1).float()
        bgr = bgr - torch.tensor(SFD_MEAN_BGR).view(3, 1, 1)
        boxes = sfd_boxes_float32(self.sfd_net(bgr[None].to(self.device)))
        boxes = boxes[nms_float32(boxes, SFD_NMS_IOU)]
        return boxes[boxes[:, 4] > self.face_threshold]

    @torch.no_grad()
    def landmarks(self, frame: np.ndarray, box) -> np.ndarray:
        """``(68, 2)`` float64 pixel landmarks of the face ``box`` (x1, y1, x2, y2, ...)."""
        from face_alignment.utils import crop

        center, scale = paper_center_scale(box)
        # 256x256 uint8, cv2 bilinear; face-alignment's crop, its code unchanged since 3750f83
        patch = crop(frame, center, scale, float(CROP_SIZE))
        inp = torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))).float().div_(255.0)
        heatmaps = self.fan(inp[None].to(self.device))[-1].detach().float().cpu()  # no flip pass
        return paper_landmarks_from_heatmaps(heatmaps[0].numpy(), center, scale)

    def detect(self, frames: np.ndarray) -> np.ndarray:
        check_frames(frames)  # the same input check as the modern backend
        out = np.full((len(frames), NUM_LANDMARKS, 2), np.nan)
        for i, frame in enumerate(frames):
            faces = self.face_boxes(frame)
            if len(faces):  # no face: the row stays NaN (pose-evaluation stored None)
                out[i] = self.landmarks(frame, faces[0])
        return out


@register_keypoint_backend("face_alignment_paper", weights=lambda **_: [FAN_WEIGHTS, SFD_WEIGHTS])
def build_face_alignment_paper(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    face_threshold: float = SFD_FACE_SCORE,
    pretrained: bool = True,
) -> FaceAlignmentPaperLandmarks:
    """The papers' face landmarks (pose-evaluation with face-alignment 3750f83), on the installed
    face-alignment's network classes and the registry weights. ``face_threshold`` is fixed at 0.5
    in 3750f83 (a parameter here only for tests); there is no ``flip_input`` or batch size: the
    paper ran ``flip_input=False``, one frame at a time."""
    fan, sfd_net, sha256, weights_files = _load_networks(device, weights_dir, pretrained)
    info = BackendInfo(
        name="face_alignment_paper",
        package="face-alignment",
        # "3750f83-behaviour-on-1.5.0": 3750f83's procedure run on the installed package's
        # classes. No spaces: the ground-truth cache directory is named after it.
        version=f"{PAPER_COMMIT}-behaviour-on-{importlib.metadata.version('face-alignment')}",
        weights_sha256=sha256,
    )
    backend = FaceAlignmentPaperLandmarks(fan, sfd_net, info, device, face_threshold)
    backend.weights_files = weights_files
    return backend

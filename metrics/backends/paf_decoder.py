"""Part-affinity-field decoding of OpenPose's COCO-18 maps, as pose-evaluation runs it.

The papers' body AKD/MKR came from pose-evaluation's ``extract.py --type body_pose``, which
decodes the rtpose network's maps with pytorch_Realtime_Multi-Person_Pose_Estimation's
``network/post.py`` ``decode_pose`` (fork pinned at 257d8b4). This module reproduces that
decoder on maps already at frame resolution (the only way extract.py calls it):

1. peaks: per joint map, the pixels that are >= their 4 neighbours (edges compare with
   themselves) and above ``peak_threshold``, in raster order; each is then moved to the maximum
   of the 5x5 window around it (clipped to the map), whose value becomes its score;
2. limbs: every source/destination peak pair of a limb is scored along 10 points of the PAF;
   pairs are kept greedily, best first, each peak used once per limb;
3. people: limbs are chained into people through shared peaks; people with fewer than 3 joints
   or a mean score below 0.2 are dropped.

extract.py keeps only step 1: it writes every peak's x, y into an 18x2 array by joint type, so
where a joint type has several peaks the LAST one in raster order of the detected (unrefined)
peak wins, whoever it belongs to. ``keypoints_from_joints`` reproduces that; the people of
``decode`` are there for inspection and parity, not for the metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 18  # nose, neck, r/l shoulder-elbow-wrist, r/l hip-knee-ankle, r/l eye, r/l ear
NUM_PAF_CHANNELS = 38

# post.py ``joint_to_limb_heatmap_relationship``: (source joint, destination joint) per limb, in
# the order limbs are connected and grouped (the order decides which person a limb joins).
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)  # fmt: skip
# post.py ``paf_xy_coords_per_limb``: the PAF channels holding each limb's (x, y) direction.
LIMB_PAF_CHANNELS: tuple[tuple[int, int], ...] = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
)  # fmt: skip

# extract.py's param {'thre1': 0.1, 'thre2': 0.05, 'thre3': 0.5}; thre3 is never read.
PEAK_THRESHOLD = 0.1
LIMB_THRESHOLD = 0.05
REFINE_RADIUS = 2  # post.py NMS win_size: a peak moves to the maximum of its 5x5 window
LIMB_SAMPLES = 10  # points along a candidate limb at which the PAF is read
MIN_SAMPLES_ABOVE = 0.8 * LIMB_SAMPLES  # a limb needs more than this many points above threshold
MIN_PERSON_JOINTS = 3
MIN_PERSON_MEAN_SCORE = 0.2

# Columns of ``Decoded.joints`` (post.py's joint_list) and ``Decoded.people``.
X, Y, SCORE, ID, TYPE = range(5)
PERSON_SCORE, PERSON_COUNT = NUM_JOINTS, NUM_JOINTS + 1


@dataclass(frozen=True)
class Decoded:
    """``joints`` (K, 5): x, y, score, id (= row), joint type, grouped by type, raster order
    within a type; ``people`` (P, 20): per joint the row in ``joints`` (-1: none), then the
    person's total score and joint count."""

    joints: np.ndarray
    people: np.ndarray


def find_peaks(heatmaps: np.ndarray, threshold: float = PEAK_THRESHOLD) -> np.ndarray:
    """(H, W, >=18) maps -> (K, 5) joints: x, y, score, id, joint type (post.py NMS at factor 1)."""
    maps = np.asarray(heatmaps, dtype=np.float64)[:, :, :NUM_JOINTS]
    height, width = maps.shape[:2]
    # scipy's maximum_filter with a cross footprint, mode 'reflect': an edge pixel's missing
    # neighbour is the pixel itself, i.e. edge padding.
    padded = np.pad(maps, ((1, 1), (1, 1), (0, 0)), mode="edge")
    is_peak = maps > threshold
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        is_peak &= maps >= padded[dy : dy + height, dx : dx + width]
    # -inf outside the map: a window clipped at the border never picks a padded cell.
    r = REFINE_RADIUS
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(maps, ((r, r), (r, r), (0, 0)), constant_values=-np.inf),
        (2 * r + 1, 2 * r + 1),
        axis=(0, 1),
    )
    rows = []
    for joint in range(NUM_JOINTS):
        ys, xs = np.nonzero(is_peak[:, :, joint])  # raster order, as post.py's find_peaks
        window = windows[ys, xs, joint].reshape(len(ys), (2 * r + 1) ** 2)
        best = window.argmax(axis=1)  # first maximum in raster order of the window, as argmax
        refined_y = ys + best // (2 * r + 1) - r
        refined_x = xs + best % (2 * r + 1) - r
        score = window[np.arange(len(ys)), best]
        rows.append(
            np.stack(
                [refined_x, refined_y, score, np.zeros_like(score), np.full_like(score, joint)], 1
            )
        )
    joints = np.concatenate(rows).astype(np.float64)
    joints[:, ID] = np.arange(len(joints))
    return joints


def keypoints_from_joints(joints: np.ndarray) -> np.ndarray:
    """(18, 2) x, y per joint type, NaN where none: extract.py's ``tmp[types] = xy`` fancy
    assignment, where for a repeated type the last row (last peak in raster order) wins."""
    out = np.full((NUM_JOINTS, 2), np.nan)
    types = joints[:, TYPE].astype(int)
    present, from_end = np.unique(types[::-1], return_index=True)
    out[present] = joints[len(types) - 1 - from_end, :2]
    return out


def _mean_of_ten(values: np.ndarray) -> np.ndarray:
    """Row means of (P, 10) ``values``, summed in the order numpy's pairwise sum uses for one
    10-element array (eight partial sums added as a tree, then the last two): post.py takes the
    mean limb by limb, and a row-wise ``mean(axis=1)`` sometimes rounds differently in the last
    bit, which changes limb and people scores (and could reorder near-tied candidates)."""
    v = values.T
    total = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
    return (total + v[8] + v[9]) / LIMB_SAMPLES


def _limb_candidates(
    pafs: np.ndarray, src: np.ndarray, dst: np.ndarray, channels: tuple[int, int], threshold: float
) -> list[tuple[int, int, float]]:
    """(i, j, score) of the src[i] -> dst[j] pairs the PAF supports, in (i, j) order."""
    i, j = (a.ravel() for a in np.meshgrid(np.arange(len(src)), np.arange(len(dst)), indexing="ij"))
    start, end = src[i, :2], dst[j, :2]
    direction = end - start
    length = np.sqrt(np.sum(direction**2, axis=1)) + 1e-8
    unit = direction / length[:, None]
    # Sample points rounded as post.py does; peaks are whole pixels, so a sample sits a multiple
    # of 1/9 px off the grid and is never a rounding tie.
    xs = np.round(np.linspace(start[:, 0], end[:, 0], LIMB_SAMPLES, axis=1)).astype(np.intp)
    ys = np.round(np.linspace(start[:, 1], end[:, 1], LIMB_SAMPLES, axis=1)).astype(np.intp)
    along = pafs[ys, xs, channels[0]] * unit[:, :1] + pafs[ys, xs, channels[1]] * unit[:, 1:]
    # Limbs longer than half the image height are penalised.
    score = _mean_of_ten(along) + np.minimum(0.5 * pafs.shape[0] / length - 1, 0)
    keep = (np.count_nonzero(along > threshold, axis=1) > MIN_SAMPLES_ABOVE) & (score > 0)
    return [
        (int(a), int(b), float(s)) for a, b, s in zip(i[keep], j[keep], score[keep], strict=True)
    ]


def connect_limbs(
    pafs: np.ndarray, joints: np.ndarray, threshold: float = LIMB_THRESHOLD
) -> list[np.ndarray]:
    """Per limb type (``LIMBS``), the (M, 5) limbs found: source id, destination id, score,
    source index, destination index (indices within the joints of that type)."""
    by_type = [joints[joints[:, TYPE] == t] for t in range(NUM_JOINTS)]
    limbs = []
    for (src_type, dst_type), channels in zip(LIMBS, LIMB_PAF_CHANNELS, strict=True):
        src, dst = by_type[src_type], by_type[dst_type]
        found: list[list[float]] = []
        if len(src) and len(dst):
            candidates = _limb_candidates(pafs, src, dst, channels, threshold)
            # Best score first; ties keep (i, j) order (post.py's stable sort).
            candidates.sort(key=lambda c: c[2], reverse=True)
            used_src: set[int] = set()
            used_dst: set[int] = set()
            for i, j, score in candidates:
                if i in used_src or j in used_dst:
                    continue
                used_src.add(i)
                used_dst.add(j)
                found.append([src[i, ID], dst[j, ID], score, i, j])
                if len(found) >= min(len(src), len(dst)):
                    break
        limbs.append(np.array(found, dtype=np.float64).reshape(-1, 5))
    return limbs


def _new_person(limb: np.ndarray, src_type: int, dst_type: int, joints: np.ndarray) -> np.ndarray:
    person = np.full(NUM_JOINTS + 2, -1.0)
    person[src_type], person[dst_type] = limb[0], limb[1]
    person[PERSON_COUNT] = 2
    person[PERSON_SCORE] = joints[int(limb[0]), SCORE] + joints[int(limb[1]), SCORE] + limb[2]
    return person


def _extend(person: np.ndarray, limb: np.ndarray, dst_type: int, joints: np.ndarray) -> None:
    person[dst_type] = limb[1]
    person[PERSON_COUNT] += 1
    person[PERSON_SCORE] += joints[int(limb[1]), SCORE] + limb[2]


def group_people(limbs: list[np.ndarray], joints: np.ndarray) -> np.ndarray:
    """(P, 20) people from ``connect_limbs``' limbs, limb types in ``LIMBS`` order (post.py's
    group_limbs_of_same_person, including its corner cases: a limb touching three or more
    people starts a new one; two people sharing no joint are merged by a limb between them)."""
    people: list[np.ndarray] = []
    for (src_type, dst_type), found in zip(LIMBS, limbs, strict=True):
        for limb in found:
            touching = [
                k for k, p in enumerate(people) if p[src_type] == limb[0] or p[dst_type] == limb[1]
            ]
            if len(touching) == 1:
                if people[touching[0]][dst_type] != limb[1]:
                    _extend(people[touching[0]], limb, dst_type, joints)
            elif len(touching) == 2:
                first, second = people[touching[0]], people[touching[1]]
                if ((first[:NUM_JOINTS] >= 0) & (second[:NUM_JOINTS] >= 0)).any():
                    _extend(first, limb, dst_type, joints)
                else:
                    # Disjoint: -1 + (id + 1) takes the second's joints, keeps the first's.
                    first[:NUM_JOINTS] += second[:NUM_JOINTS] + 1
                    first[NUM_JOINTS:] += second[NUM_JOINTS:]
                    first[PERSON_SCORE] += limb[2]
                    people.pop(touching[1])
            else:
                people.append(_new_person(limb, src_type, dst_type, joints))
    kept = [
        p
        for p in people
        if not (
            p[PERSON_COUNT] < MIN_PERSON_JOINTS
            or p[PERSON_SCORE] / p[PERSON_COUNT] < MIN_PERSON_MEAN_SCORE
        )
    ]
    return np.array(kept, dtype=np.float64).reshape(-1, NUM_JOINTS + 2)


def decode(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    peak_threshold: float = PEAK_THRESHOLD,
    limb_threshold: float = LIMB_THRESHOLD,
) -> Decoded:
    """post.py ``decode_pose`` on (H, W, 19) heatmaps and (H, W, 38) PAFs at frame resolution."""
    joints = find_peaks(heatmaps, peak_threshold)
    limbs = connect_limbs(np.asarray(pafs, dtype=np.float64), joints, limb_threshold)
    return Decoded(joints, group_people(limbs, joints))

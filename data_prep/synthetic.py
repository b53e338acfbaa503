"""The embedded default dataset: procedurally generated articulated 2D figures.

Each video shows one figure (an *identity*: body proportions plus clothing colours/patterns)
moving with smooth joint-angle trajectories (sums of sinusoids) plus a slow global translation
and scale, over a muted textured background. With ``camera_motion`` the whole scene (background
and figure) also drifts smoothly, as if the camera panned.

Everything is derived from ``SyntheticConfig.seed`` through ``np.random.default_rng`` streams
keyed by (seed, purpose, index), so the same config always produces byte-identical PNGs, and a
video's content does not depend on how many other videos are generated.

Identities: with ``disjoint_identities=True`` (default), identities ``0 .. num_identities -
num_test_identities - 1`` appear only in train videos and the last ``num_test_identities`` only
in test videos (like the reference VoxCeleb/TaiChi splits). With ``False`` both splits cycle over
all identities. Videos are assigned to their split's identities round-robin. A video's name
starts with its identity (``id003#train0007``), as the real datasets' chunk names do.

Ground truth (``ground_truth.csv``): per video, frame and joint the pixel position ``x, y``
(continuous coordinates: pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``, so its
centre is ``(j + 0.5, i + 0.5)``) and ``visible`` = 1 iff the joint lies inside the frame
(``0 <= x < W`` and ``0 <= y < H``). Occlusion by other body parts does not affect visibility;
a visible joint always lies on its figure's mask (every part is at least ``MIN_RADIUS_PX``
thick, so the pixel containing a joint is fully covered).
"""

from __future__ import annotations

import colorsys
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.datasets import register_dataset
from data_prep.io import atomic_dir, atomic_path
from data_prep.manifest import MANIFEST_NAME, format_size, write_manifest
from data_prep.video import write_video

JOINTS = (
    "head",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "pelvis",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
)
J = {name: i for i, name in enumerate(JOINTS)}
GROUND_TRUTH_NAME = "ground_truth.csv"
GT_COLUMNS = ["video", "split", "frame", "identity", "joint", "x", "y", "visible"]
# Thinnest drawn radius in output pixels; guarantees the pixel holding a joint is covered.
MIN_RADIUS_PX = 1.5
_SPLIT_CODE = {"train": 1, "test": 2}


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic dataset (defaults: the demo dataset)."""

    size: int = 64  # square frames, size x size pixels
    num_identities: int = 6
    num_test_identities: int = 2  # identities reserved for test when disjoint_identities
    disjoint_identities: bool = True
    train_videos: int = 24
    test_videos: int = 6
    min_frames: int = 32
    max_frames: int = 32
    seed: int = 0
    camera_motion: bool = True
    supersample: int = 2  # render at supersample x resolution, then box-filter (anti-aliasing)
    motion_speed: float = 1.0  # multiplies all trajectory frequencies

    @classmethod
    def from_dict(cls, params: dict | None) -> SyntheticConfig:
        """Build from a plain dict (e.g. YAML); unknown keys raise ValueError."""
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"unknown synthetic dataset parameter(s) {unknown}; allowed {sorted(known)}"
            )
        cfg = cls(**params)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"synthetic dataset config: {msg}")

        ints = ("size", "num_identities", "num_test_identities", "train_videos", "test_videos")
        for name in (*ints, "min_frames", "max_frames", "seed", "supersample"):
            v = getattr(self, name)
            need(
                isinstance(v, int) and not isinstance(v, bool), f"{name} must be an int, got {v!r}"
            )
        for name in ("disjoint_identities", "camera_motion"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false")
        need(
            isinstance(self.motion_speed, int | float) and not isinstance(self.motion_speed, bool),
            "motion_speed must be a number",
        )
        need(self.size >= 16, f"size must be >= 16, got {self.size}")
        need(self.num_identities >= 1, "num_identities must be >= 1")
        need(self.train_videos >= 0 and self.test_videos >= 0, "video counts must be >= 0")
        need(self.train_videos + self.test_videos >= 1, "at least one video is needed")
        need(1 <= self.min_frames <= self.max_frames, "need 1 <= min_frames <= max_frames")
        need(self.supersample >= 1, "supersample must be >= 1")
        need(self.motion_speed > 0, "motion_speed must be > 0")
        if self.disjoint_identities:
            need(
                1 <= self.num_test_identities < self.num_identities,
                "disjoint_identities needs 1 <= num_test_identities < num_identities "
                f"(got {self.num_test_identities} of {self.num_identities})",
            )

    def identities(self, split: str) -> list[int]:
        """Identity labels used by ``split``."""
        n_test = self.num_test_identities
        if not self.disjoint_identities:
            return list(range(self.num_identities))
        if split == "train":
            return list(range(self.num_identities - n_test))
        return list(range(self.num_identities - n_test, self.num_identities))


# --------------------------------------------------------------------------- appearance


@dataclass(frozen=True)
class Paint:
    """How one body part is coloured: two colours mixed by a pattern in part coordinates."""

    color1: tuple[float, float, float]
    color2: tuple[float, float, float]
    pattern: str  # solid | stripes (across the part) | split (lengthwise halves) | checker
    freq: float  # stripes per part length (stripes/checker)
    phase: float


@dataclass(frozen=True)
class Identity:
    """Body proportions (in figure units, ~1 = figure height) and per-part paint."""

    label: int
    head_r: float
    neck_len: float
    torso_len: float
    shoulder_half: float
    hip_half: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    torso_w: float
    arm_w: float
    leg_w: float
    paints: dict[str, Paint] = field(default_factory=dict)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_identity(seed: int, label: int) -> Identity:
    """Deterministic identity ``label`` of dataset ``seed``."""
    rng = np.random.default_rng([seed, 0, label])
    u = rng.uniform

    def bright(hue: float) -> tuple[float, float, float]:
        return _hsv(hue, u(0.55, 1.0), u(0.7, 1.0))

    skin = _hsv(u(0.03, 0.11), u(0.25, 0.6), u(0.55, 1.0))
    hair = _hsv(u(0.0, 1.0), u(0.2, 0.9), u(0.1, 0.5))
    shirt_h = u()
    pants_h = shirt_h + u(0.25, 0.75)  # keep shirt and pants hues apart
    shirt = Paint(
        bright(shirt_h),
        bright(shirt_h + u(0.3, 0.7)),
        str(rng.choice(["solid", "stripes", "split", "checker"])),
        float(u(2.0, 4.0)),
        float(u(0, 2 * np.pi)),
    )
    pants = Paint(
        bright(pants_h),
        _hsv(pants_h, u(0.3, 0.8), u(0.3, 0.55)),
        str(rng.choice(["solid", "stripes", "split"])),
        float(u(1.5, 3.0)),
        float(u(0, 2 * np.pi)),
    )
    skin_paint = Paint(skin, skin, "solid", 1.0, 0.0)
    long_sleeves = bool(rng.random() < 0.5)
    long_pants = bool(rng.random() < 0.6)
    paints = {
        "head": Paint(skin, hair, "hair", float(u(-0.1, 0.4)), 0.0),  # freq = hairline
        "neck": skin_paint,
        "torso": shirt,
        "shoulders": shirt,
        "hips": pants,
        "upper_arm": shirt,
        "forearm": shirt if long_sleeves else skin_paint,
        "thigh": pants,
        "shin": pants if long_pants else skin_paint,
    }
    return Identity(
        label=label,
        head_r=u(0.075, 0.1),
        neck_len=u(0.09, 0.12),
        torso_len=u(0.26, 0.32),
        shoulder_half=u(0.08, 0.12),
        hip_half=u(0.05, 0.07),
        upper_arm=u(0.15, 0.2),
        forearm=u(0.14, 0.18),
        thigh=u(0.2, 0.25),
        shin=u(0.19, 0.24),
        torso_w=u(0.07, 0.1),
        arm_w=u(0.03, 0.042),
        leg_w=u(0.038, 0.052),
        paints=paints,
    )


# --------------------------------------------------------------------------- motion


def _dir(theta: np.ndarray) -> np.ndarray:
    """Unit vector at angle ``theta`` from straight down (image y grows downwards)."""
    return np.stack([np.sin(theta), np.cos(theta)], axis=-1)


def _smooth(rng: np.random.Generator, t: np.ndarray, speed: float, lo: float, hi: float):
    """A smooth random signal in [lo, hi]: normalised sum of two sinusoids."""
    amps = rng.uniform(0.3, 1.0, size=2)
    amps /= amps.sum()
    freqs = rng.uniform(0.012, 0.04, size=2) * speed  # cycles per frame
    phases = rng.uniform(0, 2 * np.pi, size=2)
    s = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return lo + (hi - lo) * (0.5 + 0.5 * s)


def pose_sequence(
    ident: Identity, rng: np.random.Generator, num_frames: int, size: int, speed: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions ``(T, 15, 2)`` in scene pixels (x, y), before camera motion, and the
    per-frame figure scale ``(T,)`` (figure units -> pixels)."""
    t = np.arange(num_frames, dtype=np.float64)

    def sig(lo: float, hi: float) -> np.ndarray:
        return _smooth(rng, t, speed, lo, hi)

    scale = size * 0.72 * sig(0.88, 1.05)  # figure units -> pixels
    pelvis = np.stack([size * (0.5 + sig(-0.12, 0.12)), size * (0.55 + sig(-0.04, 0.04))], axis=-1)
    lean = sig(-0.25, 0.25)
    up = -_dir(lean)  # pelvis -> neck
    perp = np.stack([np.cos(lean), -np.sin(lean)], axis=-1)  # figure's left -> right, image x+
    s = scale[:, None]
    p = np.zeros((num_frames, len(JOINTS), 2))
    p[:, J["pelvis"]] = pelvis
    p[:, J["neck"]] = pelvis + s * ident.torso_len * up
    head_tilt = lean + sig(-0.35, 0.35)
    p[:, J["head"]] = p[:, J["neck"]] - s * ident.neck_len * _dir(head_tilt)
    for side, sign in (("r", -1.0), ("l", 1.0)):
        sh = p[:, J["neck"]] + sign * s * ident.shoulder_half * perp
        p[:, J[f"{side}_shoulder"]] = sh
        # Arms swing widely (up to overhead); elbows only bend one way.
        upper = sign * sig(-0.4, 2.4) + lean
        lower = upper + sign * sig(0.0, 1.8)
        p[:, J[f"{side}_elbow"]] = sh + s * ident.upper_arm * _dir(upper)
        p[:, J[f"{side}_wrist"]] = p[:, J[f"{side}_elbow"]] + s * ident.forearm * _dir(lower)
        hip = pelvis + sign * s * ident.hip_half * perp
        p[:, J[f"{side}_hip"]] = hip
        thigh = sig(-0.7, 0.7) + sign * 0.08
        shin = thigh - sig(0.0, 1.2)  # knees bend backwards
        p[:, J[f"{side}_knee"]] = hip + s * ident.thigh * _dir(thigh)
        p[:, J[f"{side}_ankle"]] = p[:, J[f"{side}_knee"]] + s * ident.shin * _dir(shin)
    return p, scale


def camera_path(
    rng: np.random.Generator, num_frames: int, size: int, enabled: bool, speed: float = 1.0
) -> np.ndarray:
    """Camera offset ``(T, 2)`` in pixels; the scene appears shifted by ``-offset``."""
    if not enabled:
        return np.zeros((num_frames, 2))
    t = np.arange(num_frames, dtype=np.float64)
    amp = 0.08 * size
    return np.stack([_smooth(rng, t, speed, -amp, amp) for _ in range(2)], axis=-1)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Background:
    """A muted colour plus sinusoidal gratings, evaluated analytically (sub-pixel shifts)."""

    base: tuple[float, float, float]
    waves: tuple[tuple[float, float, float, float, float, float], ...]  # kx, ky, phase, r, g, b

    @classmethod
    def sample(cls, rng: np.random.Generator, size: int) -> Background:
        base = _hsv(rng.uniform(), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.45))
        waves = []
        for _ in range(3):
            wavelength = size * rng.uniform(0.12, 0.4)
            ang = rng.uniform(0, np.pi)
            k = 2 * np.pi / wavelength
            col = rng.uniform(0.02, 0.07) * rng.uniform(0.5, 1.0, size=3)
            waves.append(
                (k * np.cos(ang), k * np.sin(ang), rng.uniform(0, 2 * np.pi), *map(float, col))
            )
        return cls(base, tuple(waves))

    def render(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Colours ``(len(ys), len(xs), 3)`` at scene coordinates."""
        img = np.empty((len(ys), len(xs), 3))
        img[:] = self.base
        for kx, ky, ph, r, g, b in self.waves:
            w = np.sin(ys[:, None] * ky + xs[None, :] * kx + ph)
            img += w[..., None] * np.array([r, g, b])
        return img


def _parts(ident: Identity, joints: np.ndarray, scale: float):
    """Draw list: (paint, a, b, radius_px, shade), far side first, near side last."""
    r_arm, r_leg = ident.arm_w * scale, ident.leg_w * scale
    P = ident.paints
    j = joints

    def limbs(side: str, shade: float):
        return [
            (P["thigh"], j[J[f"{side}_hip"]], j[J[f"{side}_knee"]], r_leg, shade),
            (P["shin"], j[J[f"{side}_knee"]], j[J[f"{side}_ankle"]], r_leg * 0.9, shade),
            (P["upper_arm"], j[J[f"{side}_shoulder"]], j[J[f"{side}_elbow"]], r_arm, shade),
            (P["forearm"], j[J[f"{side}_elbow"]], j[J[f"{side}_wrist"]], r_arm * 0.9, shade),
        ]

    # The left side is drawn behind the body and darker: a depth cue that also makes the two
    # sides distinguishable.
    body = [
        (P["neck"], j[J["neck"]], j[J["head"]], r_arm, 1.0),
        (P["hips"], j[J["l_hip"]], j[J["r_hip"]], r_leg, 1.0),
        (P["torso"], j[J["pelvis"]], j[J["neck"]], ident.torso_w * scale, 1.0),
        (P["shoulders"], j[J["l_shoulder"]], j[J["r_shoulder"]], r_arm * 1.1, 1.0),
        (P["head"], j[J["head"]], j[J["head"]], ident.head_r * scale, 1.0),
    ]
    return limbs("l", 0.72) + body + limbs("r", 1.0)


def _draw_part(img, alpha, ss, paint, a, b, radius, shade, axis):
    """Composite one capsule onto the supersampled canvas ``img`` (in place)."""
    h, w = alpha.shape
    radius = max(radius, MIN_RADIUS_PX)
    # Bounding box in supersampled pixel indices; work on the crop only.
    lo = (np.minimum(a, b) - radius - 1) * ss
    hi = (np.maximum(a, b) + radius + 1) * ss
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(np.ceil(hi[0])), w), min(int(np.ceil(hi[1])), h)
    if x0 >= x1 or y0 >= y1:
        return
    xs = (np.arange(x0, x1) + 0.5) / ss - a[0]
    ys = (np.arange(y0, y1) + 0.5) / ss - a[1]
    px, py = np.meshgrid(xs, ys)
    ab = b - a
    length2 = float(ab @ ab)
    if length2 > 1e-12:
        u = np.clip((px * ab[0] + py * ab[1]) / length2, 0.0, 1.0)
        d = np.hypot(px - u * ab[0], py - u * ab[1]) - radius
        tl = (px * ab[0] + py * ab[1]) / length2  # along the part, 0 at a, 1 at b
        sl = (px * -ab[1] + py * ab[0]) / np.sqrt(length2) / radius  # across, in radii
    else:
        d = np.hypot(px, py) - radius
        tl = (px * axis[0] + py * axis[1]) / radius  # along the head's axis, in radii
        sl = (px * -axis[1] + py * axis[0]) / radius
    cov = np.clip(0.5 - d * ss, 0.0, 1.0)  # soft edge one subpixel wide
    if paint.pattern == "solid":
        m = None
    elif paint.pattern == "stripes":
        m = np.sin(2 * np.pi * paint.freq * tl + paint.phase)
    elif paint.pattern == "split":
        m = sl
    elif paint.pattern == "checker":
        m = np.sin(2 * np.pi * paint.freq * tl + paint.phase) * np.sin(np.pi * sl)
    elif paint.pattern == "hair":
        m = tl - paint.freq  # hair beyond the hairline, on the side away from the neck
    else:
        raise ValueError(f"unknown paint pattern {paint.pattern!r}")
    c1 = np.asarray(paint.color1) * shade
    c2 = np.asarray(paint.color2) * shade
    if m is None:
        color = np.broadcast_to(c1, (*d.shape, 3))
    else:
        mix = np.clip(0.5 + 4.0 * m, 0.0, 1.0)[..., None]  # sharp but anti-aliased boundary
        color = c1 * (1 - mix) + c2 * mix
    c = cov[..., None]
    crop = img[y0:y1, x0:x1]
    crop *= 1 - c
    crop += c * color
    alpha[y0:y1, x0:x1] = 1 - (1 - alpha[y0:y1, x0:x1]) * (1 - cov)


def render_frame(
    ident: Identity,
    joints: np.ndarray,
    scale: float,
    background: Background,
    camera: np.ndarray,
    size: int,
    supersample: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame.

    ``joints`` ``(15, 2)`` are image pixels (camera already applied), ``scale`` is figure units
    -> pixels, ``camera`` the offset applied to the background. Returns the ``(H, W, 3)`` uint8
    image and the ``(H, W)`` bool figure mask (pixels at least half covered by the figure).
    """
    ss = supersample
    coords = (np.arange(size * ss) + 0.5) / ss
    img = background.render(coords + camera[0], coords + camera[1])
    alpha = np.zeros((size * ss, size * ss))
    head_axis = joints[J["head"]] - joints[J["neck"]]
    head_axis = head_axis / max(float(np.hypot(*head_axis)), 1e-9)
    for paint, a, b, radius, shade in _parts(ident, joints, scale):
        _draw_part(img, alpha, ss, paint, a, b, radius, shade, head_axis)
    if ss > 1:  # box filter down to the output resolution
        img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
        alpha = alpha.reshape(size, ss, size, ss).mean(axis=(1, 3))
    # Rounding (not truncation) here: this is content creation, not the evaluation protocol.
    frame = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return frame, alpha >= 0.5


@dataclass
class SyntheticVideo:
    """A rendered video with its ground truth."""

    name: str
    split: str
    identity: int
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) bool figure masks
    joints: np.ndarray  # (T, 15, 2) float64 pixels, x then y
    visible: np.ndarray  # (T, 15) bool


def video_name(split: str, index: int, identity: int) -> str:
    """``id003#train0007``: the identity first and ``#`` after it, as in the VoxCeleb and TaiChi
    chunk names, so identity sampling (:func:`data_prep.loading.video_identity`) reads it."""
    return f"id{identity:03d}#{split}{index:04d}"


def render_video(config: SyntheticConfig, split: str, index: int) -> SyntheticVideo:
    """Render video ``index`` of ``split`` (deterministic in config and index alone)."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}")
    ids = config.identities(split)
    label = ids[index % len(ids)]
    ident = make_identity(config.seed, label)
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], index])
    n = int(rng.integers(config.min_frames, config.max_frames + 1))
    size = config.size
    background = Background.sample(rng, size)
    joints, scale = pose_sequence(ident, rng, n, size, config.motion_speed)
    camera = camera_path(rng, n, size, config.camera_motion, config.motion_speed)
    joints = joints - camera[:, None, :]
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for t in range(n):
        frames[t], masks[t] = render_frame(
            ident, joints[t], float(scale[t]), background, camera[t], size, config.supersample
        )
    x, y = joints[..., 0], joints[..., 1]
    visible = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return SyntheticVideo(
        video_name(split, index, label), split, label, frames, masks, joints, visible
    )


def _ground_truth_rows(video: SyntheticVideo) -> pd.DataFrame:
    t, nj = video.visible.shape
    return pd.DataFrame(
        {
            "video": video.name,
            "split": video.split,
            "frame": np.repeat(np.arange(t), nj),
            "identity": video.identity,
            "joint": np.tile(np.array(JOINTS), t),
            "x": video.joints[..., 0].ravel(),
            "y": video.joints[..., 1].ravel(),
            "visible": video.visible.ravel().astype(int),
        }
    )


def generate(config: SyntheticConfig | dict, out_dir: str | os.PathLike) -> Path:
    """Generate the dataset into ``out_dir`` atomically and return ``out_dir``.

    Layout: ``out_dir/{train,test}/<video>/0000000.png ...``, ``out_dir/manifest.csv`` and
    ``out_dir/ground_truth.csv`` (see module docstring). An existing ``out_dir`` is replaced
    only once the new dataset is complete.
    """
    if isinstance(config, dict):
        config = SyntheticConfig.from_dict(config)
    config.validate()
    out_dir = Path(out_dir)
    manifest, gt = [], []
    with atomic_dir(out_dir) as tmp:
        for split, count in (("train", config.train_videos), ("test", config.test_videos)):
            for index in range(count):
                video = render_video(config, split, index)
                write_video(tmp / split / video.name, video.frames)
                manifest.append(
                    {
                        "video": video.name,
                        "split": split,
                        "frames": len(video.frames),
                        "size": format_size((config.size, config.size)),
                        "source": "synthetic",
                        "status": "ok",
                    }
                )
                gt.append(_ground_truth_rows(video))
        write_manifest(tmp / MANIFEST_NAME, manifest)
        with atomic_path(tmp / GROUND_TRUTH_NAME) as gt_tmp:
            pd.concat(gt, ignore_index=True)[GT_COLUMNS].to_csv(
                gt_tmp, index=False, float_format="%.4f"
            )
    return out_dir


@register_dataset("synthetic")
def build(params: dict, out_dir: Path) -> Path:
    """The dataset registry's builder: ``params`` are :class:`SyntheticConfig` fields."""
    return generate(SyntheticConfig.from_dict(params), out_dir)

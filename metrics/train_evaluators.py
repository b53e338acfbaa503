"""Train and validate the synthetic dataset's evaluators on its ground truth.

Training uses the *train* split only; validation uses the held-out *test* split (other videos and,
by default, other identities): the keypoint network's error in pixels on visible joints and its
visibility accuracy on test frames shifted so that some joints leave the frame, and the identity
network's top-1 retrieval accuracy across test videos. The figures, and whether they reach the
protocol's targets, are stored inside each weights file and in ``validation.json``; the report
shows them beside the AKD/MKR/AED numbers they qualify.

Hyperparameters and targets come from the protocol (``metrics/protocols.yaml``,
``trained_evaluators``). Same seed, same data -> same weights on CPU. Outputs are written
atomically; a folder whose files match the dataset and settings is left as it is (re-running is
free), anything else is retrained.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data_prep.io import atomic_path, file_sha256, write_text
from data_prep.manifest import MANIFEST_NAME, available_videos
from data_prep.synthetic import GROUND_TRUTH_NAME, JOINTS
from data_prep.video import read_video
from metrics.backends import synthetic
from metrics.backends.synthetic import IDENTITY_FILE, KEYPOINT_FILE, IdentityNet, KeypointNet
from metrics.protocols import load_schema

log = logging.getLogger(__name__)
VALIDATION_NAME = "validation.json"
#: The six orders of the RGB channels (identity first).
PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

def check_settings(settings: dict[str, Any]) -> None:
    """Raise a KeyError naming every missing, unknown or ill-typed key of a settings dict.

    The keys and their types are defined once, by ``$defs/trained_evaluators`` in
    metrics/protocols.schema.yaml (which also validates protocols.yaml when it loads); this
    checks dicts built in code (tests, benchmarks, :func:`override`) against the same schema.
    """
    schema = load_schema()
    section = {**schema["$defs"]["trained_evaluators"], "$defs": schema["$defs"]}
    errors = sorted(
        jsonschema.Draft202012Validator(section).iter_errors(settings),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        problems = ["at " + (".".join(str(p) for p in e.absolute_path) or "(top level)") + ": " + e.message for e in errors]
        raise KeyError(f"evaluator training settings: {'; '.join(problems)} (see metrics/protocols.schema.yaml)")


def override(settings: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the (nested) values of ``extra`` replaced; unknown keys are errors."""
    out = dict(settings)
    for key, value in extra.items():
        if key not in settings:
            raise KeyError(f"unknown evaluator training setting {key!r}; known: {', '.join(sorted(settings))}")
        out[key] = override(settings[key], value) if isinstance(settings[key], dict) else value
    return out


def load_split(dataset_root: Path, split: str) -> dict[str, np.ndarray]:
    """All frames of ``split`` with their joints, visibility, identity and video index."""
    gt_path = dataset_root / GROUND_TRUTH_NAME
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} is missing: synthetic evaluators need the synthetic dataset's ground truth")
    gt = pd.read_csv(gt_path, dtype={"video": str})
    order = {name: i for i, name in enumerate(JOINTS)}
    frames, joints, visible, identity, video_index = [], [], [], [], []
    for v, video in enumerate(available_videos(dataset_root, split)):
        clip = read_video(dataset_root / split / video)
        rows = gt[gt["video"] == video].assign(j=lambda d: d["joint"].map(order)).sort_values(["frame", "j"])
        if len(rows) != len(clip) * len(JOINTS):
            raise ValueError(f"{gt_path}: video {video} has {len(rows)} joint rows, expected {len(clip)} x {len(JOINTS)}")
        frames.append(clip)
        joints.append(rows[["x", "y"]].to_numpy(np.float32).reshape(len(clip), len(JOINTS), 2))
        visible.append(rows["visible"].to_numpy(bool).reshape(len(clip), len(JOINTS)))
        identity.append(np.full(len(clip), int(rows["identity"].iloc[0])))
        video_index.append(np.full(len(clip), v))
    return {
        "frames": np.concatenate(frames),
        "joints": np.concatenate(joints),
        "visible": np.concatenate(visible),
        "identity": np.concatenate(identity),
        "video": np.concatenate(video_index),
    }


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def shift(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Translate each image by ``offsets`` (N, 2) pixels (x, y), repeating the border."""
    n, _, h, w = images.shape
    theta = torch.zeros(n, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * offsets[:, 0] / w
    theta[:, 1, 2] = -2 * offsets[:, 1] / h
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _random_shift(rng: torch.Generator, n: int, size: int, fraction: float) -> torch.Tensor:
    """Half of the batch stays put; the other half moves by up to ``fraction`` of the frame."""
    offsets = (torch.rand(n, 2, generator=rng) * 2 - 1) * fraction * size
    return offsets * (torch.rand(n, 1, generator=rng) < 0.5)


def _in_frame(joints: torch.Tensor, visible: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x, y = joints[..., 0], joints[..., 1]
    return visible & (x >= 0) & (x < w) & (y >= 0) & (y < h)


def train_keypoint_net(train: dict[str, np.ndarray], settings: dict[str, Any], seed: int, progress: bool) -> KeypointNet:
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    images = _tensor(train["frames"])
    joints, visible = torch.from_numpy(train["joints"]), torch.from_numpy(train["visible"])
    h, w = images.shape[-2:]
    net = KeypointNet(num_joints=joints.shape[1], width=settings["width"])
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings["lr"], total_steps=settings["steps"])
    net.train()
    for _ in tqdm(range(settings["steps"]), desc="keypoint evaluator", disable=not progress):
        idx = torch.randint(len(images), (settings["batch_size"],), generator=rng)
        offsets = _random_shift(rng, len(idx), w, settings["shift"])
        x = shift(images[idx], offsets)
        target = joints[idx] + offsets[:, None, :]
        vis = _in_frame(target, visible[idx], h, w)
        coords, logits = net(x)
        # Coordinates learned where the joint is in the frame; visibility everywhere.
        loss = (coords - target).abs().sum(-1)[vis].mean() / 4 + F.binary_cross_entropy_with_logits(logits, vis.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return net.eval()


def _cosine_classifier_loss(embedding: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    return F.cross_entropy(scale * embedding @ F.normalize(weights, dim=1).T, labels)


def train_identity_net(train: dict[str, np.ndarray], settings: dict[str, Any], seed: int, progress: bool) -> IdentityNet:
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed + 1)
    images = _tensor(train["frames"])
    classes, labels = np.unique(train["identity"], return_inverse=True)
    labels = torch.from_numpy(labels)
    # Few training identities teach an embedding little about unseen ones. Permuting the colour
    # channels of a frame gives a figure with other clothing colours: each (identity, permutation)
    # is trained as a class of its own, 6x the identities, and the embedding learns to compare
    # colours and proportions rather than to recognise four figures.
    net = IdentityNet(dim=settings["dim"], width=settings["width"])
    centres = torch.nn.Parameter(torch.randn(len(classes) * len(PERMUTATIONS), settings["dim"]))
    optimizer = torch.optim.Adam([*net.parameters(), centres], lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings["lr"], total_steps=settings["steps"])
    net.train()
    size = images.shape[-1]
    for _ in tqdm(range(settings["steps"]), desc="identity evaluator", disable=not progress):
        idx = torch.randint(len(images), (settings["batch_size"],), generator=rng)
        x = shift(images[idx], _random_shift(rng, len(idx), size, settings["shift"]))
        perm = torch.randint(len(PERMUTATIONS), (len(idx),), generator=rng)
        x = x[torch.arange(len(idx))[:, None], torch.tensor(PERMUTATIONS)[perm]]  # (N, 3, H, W), channels permuted
        loss = _cosine_classifier_loss(net(x), centres, labels[idx] * len(PERMUTATIONS) + perm, settings["scale"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return net.eval()


@torch.no_grad()
def validate_keypoint_net(net: KeypointNet, test: dict[str, np.ndarray], shift_fraction: float, seed: int) -> dict[str, float]:
    """Pixel error on visible joints of unshifted test frames; visibility accuracy on shifted ones."""
    images = _tensor(test["frames"])
    joints, visible = torch.from_numpy(test["joints"]), torch.from_numpy(test["visible"])
    h, w = images.shape[-2:]
    coords, _ = net(images)
    error = (coords - joints).norm(dim=-1)[visible]
    rng = torch.Generator().manual_seed(seed + 2)
    offsets = _random_shift(rng, len(images), w, shift_fraction)
    _, logits = net(shift(images, offsets))
    truth = _in_frame(joints + offsets[:, None, :], visible, h, w)
    return {
        "keypoint_error_px": float(error.mean()),
        "keypoint_error_px_p95": float(error.quantile(0.95)),
        "keypoint_abs_coordinate_px": float((coords - joints).abs()[visible].mean()),
        "visibility_accuracy": float(((logits > 0) == truth).float().mean()),
        "out_of_frame_joints": int((~truth).sum()),
        "frames": len(images),
    }


@torch.no_grad()
def validate_identity_net(net: IdentityNet, test: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Top-1 retrieval: each test frame's nearest neighbour among frames of *other* test videos.

    The mean AED between frames of the same identity (other videos) and of other identities is
    recorded too (None where the test split has no such pair, e.g. a single test identity).
    """
    emb = net(_tensor(test["frames"]))
    distance = torch.cdist(emb, emb)
    video = torch.from_numpy(test["video"])
    distance[video[:, None] == video[None, :]] = float("inf")
    identity = torch.from_numpy(test["identity"])
    nearest = distance.argmin(dim=1)
    same = identity[:, None] == identity[None, :]
    other_video = video[:, None] != video[None, :]
    d2 = distance.pow(2)
    return {
        "identity_top1": float((identity[nearest] == identity).float().mean()),
        "identities": int(identity.unique().numel()),
        "aed_same_identity": float(d2[same & other_video].mean()) if (same & other_video).any() else None,
        "aed_other_identity": float(d2[~same].mean()) if (~same).any() else None,
        "frames": len(emb),
    }


def _fingerprint(dataset_root: Path, settings: dict[str, Any]) -> str:
    return json.dumps(
        {
            "manifest": file_sha256(dataset_root / MANIFEST_NAME),
            "ground_truth": file_sha256(dataset_root / GROUND_TRUTH_NAME),
            "settings": settings,
            # Edited training or network code retrains, even when run outside Snakemake.
            "code": [file_sha256(Path(module.__file__)) for module in (sys.modules[__name__], synthetic)],
        },
        sort_keys=True,
    )


def train_evaluators(
    dataset_root: Path, out_dir: Path, settings: dict[str, Any], progress: bool = True
) -> dict[str, Any]:
    """Train, validate and save both evaluators into ``out_dir``; returns the validation record.

    ``settings``: complete, as the protocol's ``trained_evaluators`` section (:func:`override`
    changes some of them)."""
    check_settings(settings)
    fingerprint = _fingerprint(dataset_root, settings)
    record_path = out_dir / VALIDATION_NAME
    if record_path.is_file() and (out_dir / KEYPOINT_FILE).is_file() and (out_dir / IDENTITY_FILE).is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint:
            log.info("evaluators in %s are up to date", out_dir)
            return record
    train, test = load_split(dataset_root, "train"), load_split(dataset_root, "test")
    targets, seed = settings["targets"], settings["seed"]
    record: dict[str, Any] = {"fingerprint": fingerprint, "train_frames": len(train["frames"]), "test_frames": len(test["frames"])}

    start = time.perf_counter()
    keypoint = train_keypoint_net(train, settings["keypoint"], seed, progress)
    kp_val = validate_keypoint_net(keypoint, test, settings["keypoint"]["shift"], seed)
    kp_val["train_seconds"] = round(time.perf_counter() - start, 1)
    kp_val["meets_targets"] = bool(
        kp_val["keypoint_error_px"] <= targets["keypoint_error_px"] and kp_val["visibility_accuracy"] >= targets["visibility_accuracy"]
    )
    start = time.perf_counter()
    identity = train_identity_net(train, settings["identity"], seed, progress)
    id_val = validate_identity_net(identity, test)
    id_val["train_seconds"] = round(time.perf_counter() - start, 1)
    id_val["meets_targets"] = bool(id_val["identity_top1"] >= targets["identity_top1"])

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, net, arch, validation, kind in (
        (KEYPOINT_FILE, keypoint, {"num_joints": keypoint.num_joints, "width": settings["keypoint"]["width"]}, kp_val, "keypoint"),
        (IDENTITY_FILE, identity, {"dim": identity.dim, "width": settings["identity"]["width"]}, id_val, "identity"),
    ):
        validation = {**validation, "targets": targets}
        with atomic_path(out_dir / name) as tmp:
            torch.save({"kind": kind, "arch": arch, "state_dict": net.state_dict(), "validation": validation}, tmp)
        record[kind] = {**validation, "weights_sha256": file_sha256(out_dir / name)}
    for kind in ("keypoint", "identity"):
        if not record[kind]["meets_targets"]:
            log.warning("synthetic %s evaluator misses its validation targets: %s", kind, record[kind])
    write_text(record_path, json.dumps(record, indent=2, sort_keys=True))
    return record

"""The synthetic dataset: determinism, layout, ground truth, identities, registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_prep.datasets import DATASETS, prepare_dataset, register_dataset
from data_prep.loading import video_identity
from data_prep.manifest import read_manifest
from data_prep.synthetic import (
    GT_COLUMNS,
    JOINTS,
    SyntheticConfig,
    generate,
    render_video,
)
from data_prep.video import list_frames, read_video

TINY = dict(
    size=32,
    num_identities=3,
    num_test_identities=1,
    train_videos=3,
    test_videos=2,
    min_frames=4,
    max_frames=6,
    seed=7,
)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(SyntheticConfig.from_dict(TINY), tmp_path_factory.mktemp("ds") / "tiny")


def test_same_seed_is_byte_identical(tiny, tmp_path):
    again = generate(dict(TINY), tmp_path / "again")
    assert _files(tiny) == _files(again)


def test_different_seed_differs(tiny, tmp_path):
    other = generate({**TINY, "seed": 8}, tmp_path / "other")
    a, b = _files(tiny), _files(other)
    pngs = [k for k in a if k.suffix == ".png" and k in b]
    assert pngs and all(a[k] != b[k] for k in pngs)


def test_layout_manifest_and_ground_truth_agree(tiny):
    m = read_manifest(tiny)
    assert list(m["split"].value_counts().sort_index()) == [2, 3]  # test, train
    assert set(m["source"]) == {"synthetic"} and set(m["status"]) == {"ok"}
    assert set(m["size"]) == {"32x32"}
    gt = pd.read_csv(tiny / "ground_truth.csv")
    assert list(gt.columns) == GT_COLUMNS
    for row in m.itertuples():
        frames = list_frames(tiny / row.split / row.video)
        assert len(frames) == row.frames and 4 <= row.frames <= 6
        assert read_video(tiny / row.split / row.video, (32, 32)).shape[0] == row.frames
        g = gt[gt["video"] == row.video]
        assert len(g) == row.frames * len(JOINTS)
        assert set(g["split"]) == {row.split}
        assert sorted(set(g["frame"])) == list(range(row.frames))
        assert g["identity"].nunique() == 1
        assert video_identity(row.video) == f"id{g['identity'].iloc[0]:03d}"
    inside = (gt["x"] >= 0) & (gt["x"] < 32) & (gt["y"] >= 0) & (gt["y"] < 32)
    assert (gt["visible"] == inside.astype(int)).all()


def test_identities_disjoint_by_default(tiny):
    gt = pd.read_csv(tiny / "ground_truth.csv")
    train = set(gt.loc[gt["split"] == "train", "identity"])
    test = set(gt.loc[gt["split"] == "test", "identity"])
    assert train == {0, 1} and test == {2}


def test_identities_shared_when_configured():
    cfg = SyntheticConfig.from_dict({**TINY, "disjoint_identities": False})
    assert cfg.identities("train") == cfg.identities("test") == [0, 1, 2]
    labels = {render_video(cfg, "test", i).identity for i in range(2)}
    assert labels == {0, 1}


@pytest.mark.parametrize("size", [32, 64])
def test_visible_joints_lie_on_figure(size):
    cfg = SyntheticConfig.from_dict({**TINY, "size": size, "min_frames": 12, "max_frames": 12})
    for split, index in (("train", 0), ("train", 1), ("train", 2), ("test", 0)):
        v = render_video(cfg, split, index)
        assert v.visible.mean() > 0.9  # the figure mostly stays in frame
        for t, j in zip(*np.nonzero(v.visible), strict=True):
            x, y = v.joints[t, j]
            assert v.masks[t, int(y), int(x)], (split, index, t, JOINTS[j])
        # The mask is a figure, not the whole frame, and the figure is high-contrast.
        assert 0.03 < v.masks.mean() < 0.5


def test_motion_is_smooth_but_present():
    cfg = SyntheticConfig.from_dict({**TINY, "size": 64, "min_frames": 32, "max_frames": 32})
    for index in range(3):
        v = render_video(cfg, "train", index)
        step = np.linalg.norm(np.diff(v.joints, axis=0), axis=-1)  # (T-1, J) pixels
        assert step.max() < 0.12 * cfg.size
        assert step.mean() > 0.005 * cfg.size
        # Pixels change between frames, too (not a still image).
        assert np.abs(np.diff(v.frames.astype(int), axis=0)).mean() > 1.0


def test_camera_motion_moves_background():
    still = SyntheticConfig.from_dict(
        {**TINY, "camera_motion": False, "min_frames": 8, "max_frames": 8}
    )
    moving = SyntheticConfig.from_dict({**TINY, "min_frames": 8, "max_frames": 8})
    for cfg, expect_moving in ((still, False), (moving, True)):
        v = render_video(cfg, "train", 0)
        fig = v.masks[0] | v.masks[-1]
        for _ in range(2):  # grow the figure over its anti-aliased fringe
            fig = fig | np.roll(fig, 1, 0) | np.roll(fig, -1, 0) | np.roll(fig, 1, 1)
            fig = fig | np.roll(fig, -1, 1)
        bg = ~fig  # pixels that are background in both frames
        diff = np.abs(v.frames[0].astype(int) - v.frames[-1].astype(int))[bg]
        assert (diff.max() > 2) == expect_moving


def test_config_errors():
    with pytest.raises(ValueError, match=r"unknown synthetic dataset parameter.*\['colour'\]"):
        SyntheticConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="min_frames"):
        SyntheticConfig.from_dict({"min_frames": 10, "max_frames": 5})
    with pytest.raises(ValueError, match="train_videos must be an int"):
        SyntheticConfig.from_dict({"train_videos": 2.5})
    with pytest.raises(ValueError, match="camera_motion must be true or false"):
        SyntheticConfig.from_dict({"camera_motion": "no"})
    with pytest.raises(ValueError, match="num_test_identities"):
        SyntheticConfig.from_dict({"num_identities": 2, "num_test_identities": 2})


def test_registry(tmp_path):
    assert "synthetic" in DATASETS
    out = prepare_dataset(
        "synthetic", {**TINY, "train_videos": 1, "test_videos": 1}, tmp_path / "d"
    )
    assert len(read_manifest(out)) == 2
    with pytest.raises(ValueError, match=r"unknown dataset 'voxceleb'.*synthetic"):
        prepare_dataset("voxceleb", {}, tmp_path / "v")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("synthetic")(lambda params, out_dir: out_dir)

"""Training pairs and whole-video loading: shapes, determinism, augmentation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_prep.loading import AugmentationConfig, FramePairDataset, VideoDataset, video_identity
from data_prep.manifest import ManifestError, write_manifest
from data_prep.synthetic import generate
from data_prep.video import VideoError, frame_name, read_video, write_video

TINY = dict(
    size=32,
    num_identities=3,
    num_test_identities=1,
    train_videos=3,
    test_videos=2,
    min_frames=5,
    max_frames=8,
    seed=3,
)
FULL_AUG = {
    "flip_param": {"horizontal_flip": True, "time_flip": True},
    "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(TINY, tmp_path_factory.mktemp("ds") / "tiny")


def _dataset(root, videos):
    """Write a dataset from ``{name: (split, frames or None, status)}``."""
    rows = []
    for name, (split, frames, status) in videos.items():
        if frames is not None:
            write_video(root / split / name, frames)
        rows.append(
            {
                "video": name,
                "split": split,
                "frames": 0 if frames is None else len(frames),
                "size": "" if frames is None else f"{frames.shape[1]}x{frames.shape[2]}",
                "source": "test",
                "status": status,
            }
        )
    write_manifest(root / "manifest.csv", rows)
    return root


def _rand(t=4, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _same(a, b):
    return torch.equal(a["source"], b["source"]) and torch.equal(a["driving"], b["driving"])


def test_pair_shapes_and_range(root):
    ds = FramePairDataset(root, "train", (32, 32), FULL_AUG, num_repeats=4)
    assert len(ds) == 12
    assert ds.videos == sorted(ds.videos)
    item = ds[5]
    assert item["video"] == ds.videos[5 % 3]
    for key in ("source", "driving"):
        x = item[key]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(IndexError):
        ds[12]


def test_frame_size_comes_from_manifest(root):
    assert FramePairDataset(root).frame_size == (32, 32)
    with pytest.raises(VideoError, match=r"32x32.*frame_size=\(64, 64\)"):
        FramePairDataset(root, frame_size=(64, 64))


def test_pairs_are_frames_of_the_video(root):
    ds = FramePairDataset(root, num_repeats=2)
    for i in range(len(ds)):
        item = ds[i]
        video = torch.from_numpy(read_video(root / "train" / item["video"])).permute(0, 3, 1, 2)
        video = video.float() / 255
        for key in ("source", "driving"):
            assert any(torch.equal(item[key], f) for f in video)


def test_deterministic_per_epoch(root):
    a = FramePairDataset(root, augmentation=FULL_AUG, num_repeats=3, seed=1)
    b = FramePairDataset(root, augmentation=FULL_AUG, num_repeats=3, seed=1)
    assert all(_same(a[i], b[i]) for i in range(len(a)))
    first = [a[i] for i in range(len(a))]
    a.set_epoch(1)
    second = [a[i] for i in range(len(a))]
    assert not all(_same(x, y) for x, y in zip(first, second, strict=True))
    a.set_epoch(0)  # resuming at an epoch boundary replays it
    assert all(_same(x, a[i]) for i, x in enumerate(first))
    c = FramePairDataset(root, augmentation=FULL_AUG, num_repeats=3, seed=2)
    assert not all(_same(x, c[i]) for i, x in enumerate(first))


def test_independent_of_num_workers(root):
    ds = FramePairDataset(root, augmentation=FULL_AUG, num_repeats=4, seed=5)
    ds.set_epoch(3)

    def batches(workers):
        loader = DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
        return list(loader)

    b0, b1 = batches(0), batches(1)
    assert len(b0) == len(b1) == 3
    for x, y in zip(b0, b1, strict=True):
        assert torch.equal(x["source"], y["source"]) and torch.equal(x["driving"], y["driving"])
        assert x["video"] == y["video"]


def test_horizontal_flip_applies_to_both_frames(root):
    plain = FramePairDataset(root, num_repeats=8)
    flip = FramePairDataset(
        root, augmentation={"flip_param": {"horizontal_flip": True}}, num_repeats=8
    )
    flipped = 0
    for i in range(len(plain)):
        p, f = plain[i], flip[i]
        if torch.equal(f["source"], p["source"].flip(-1)) and not torch.equal(
            f["source"], p["source"]
        ):
            flipped += 1
            assert torch.equal(f["driving"], p["driving"].flip(-1))
        else:
            assert _same(p, f)
    assert 0 < flipped < len(plain)


def test_time_flip_swaps_order(root):
    plain = FramePairDataset(root, num_repeats=8)
    tflip = FramePairDataset(root, augmentation={"flip_param": {"time_flip": True}}, num_repeats=8)
    swapped = 0
    for i in range(len(plain)):
        p, t = plain[i], tflip[i]
        if not _same(p, t):
            swapped += 1
            assert torch.equal(t["source"], p["driving"])
            assert torch.equal(t["driving"], p["source"])
    assert swapped > 0


def test_jitter_uses_same_parameters_for_both_frames(tmp_path):
    still = np.repeat(_rand(t=1), 6, axis=0)  # identical frames: any pair is (x, x)
    _dataset(tmp_path, {"still": ("train", still, "ok")})
    plain = FramePairDataset(tmp_path, num_repeats=6)
    jit = FramePairDataset(tmp_path, augmentation=FULL_AUG, num_repeats=6)
    for i in range(len(jit)):
        item = jit[i]
        assert torch.equal(item["source"], item["driving"])
    assert not torch.equal(jit[0]["source"], plain[0]["source"])


def test_missing_videos_are_excluded(tmp_path):
    _dataset(
        tmp_path,
        {
            "b": ("train", _rand(seed=1), "ok"),
            "a": ("train", _rand(seed=2), "ok"),
            "gone": ("train", None, "missing"),
            "bad": ("train", None, "corrupt"),
            "t": ("test", _rand(t=3, seed=3), "ok"),
        },
    )
    assert FramePairDataset(tmp_path).videos == ["a", "b"]
    vd = VideoDataset(tmp_path)
    assert vd.videos == ["t"] and len(vd) == 1
    item = vd[0]
    assert item["video"] == "t" and item["frames"].shape == (3, 3, 16, 16)
    expected = torch.from_numpy(_rand(t=3, seed=3)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(item["frames"], expected)


def test_video_dataset_on_synthetic(root):
    vd = VideoDataset(root, "test", (32, 32))
    assert vd.videos == sorted(vd.videos) and len(vd) == 2
    for i in range(len(vd)):
        frames = vd[i]["frames"]
        assert frames.dtype == torch.float32 and frames.shape[1:] == (3, 32, 32)
        assert 5 <= frames.shape[0] <= 8 and frames.shape[0] == vd.num_frames(i)


def test_no_test_split(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(), "ok")})
    with pytest.raises(ManifestError, match=r"has no test split"):
        VideoDataset(tmp_path, "test")


def test_no_available_test_videos(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(), "ok"), "x": ("test", None, "missing")})
    with pytest.raises(ManifestError, match=r"no available test videos"):
        VideoDataset(tmp_path, "test")


def test_empty_video_folder_fails_at_construction(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(), "ok"), "b": ("train", _rand(), "ok")})
    for f in (tmp_path / "train" / "b").iterdir():
        f.unlink()
    with pytest.raises(VideoError, match=r"train/b holds no frames"):
        FramePairDataset(tmp_path)
    with pytest.raises(VideoError, match=r"train/b holds no frames"):
        VideoDataset(tmp_path, "train")


def test_corrupt_frame_fails_at_read(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(t=1), "ok")})
    (tmp_path / "train" / "a" / frame_name(0)).write_bytes(b"garbage")
    ds = FramePairDataset(tmp_path)
    with pytest.raises(VideoError, match=r"a/0000000\.png is corrupt"):
        ds[0]


def test_wrong_resolution_fails_at_read(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(t=1), "ok")})
    write_video(tmp_path / "train" / "a", _rand(t=1, h=8, w=8))
    with pytest.raises(VideoError, match=r"0000000\.png is 8x8.*expected 16x16"):
        FramePairDataset(tmp_path)[0]
    with pytest.raises(VideoError, match=r"0000000\.png is 8x8"):
        VideoDataset(tmp_path, "train")[0]


def test_augmentation_config():
    cfg = AugmentationConfig.from_dict(FULL_AUG)
    assert cfg.horizontal_flip and cfg.time_flip and cfg.hue == 0.1 and cfg.jitter
    assert not AugmentationConfig.from_dict({}).jitter
    with pytest.raises(ValueError, match=r"unknown augmentation key.*rotation_param"):
        AugmentationConfig.from_dict({"rotation_param": {}})
    with pytest.raises(ValueError, match=r"unknown jitter_param key.*gamma"):
        AugmentationConfig.from_dict({"jitter_param": {"gamma": 0.1}})
    with pytest.raises(ValueError, match="brightness must be a number >= 0"):
        AugmentationConfig.from_dict({"jitter_param": {"brightness": -1}})
    with pytest.raises(ValueError, match="horizontal_flip must be true or false"):
        AugmentationConfig.from_dict({"flip_param": {"horizontal_flip": "yes"}})


def test_lost_last_frame_is_named_with_counts(tmp_path):
    """Deleting a video's last frame after preparation is an error naming video and counts."""
    _dataset(tmp_path, {"a": ("train", _rand(t=4), "ok"), "b": ("test", _rand(t=5), "ok")})
    (tmp_path / "test" / "b" / frame_name(4)).unlink()
    with pytest.raises(ManifestError, match=r"test/b holds 4 frame\(s\) but .*manifest.csv records 5"):
        VideoDataset(tmp_path, "test")
    (tmp_path / "train" / "a" / frame_name(3)).unlink()
    with pytest.raises(ManifestError, match=r"train/a holds 3 frame\(s\)"):
        FramePairDataset(tmp_path, "train")


def test_short_manifest_row_is_named(tmp_path):
    _dataset(tmp_path, {"a": ("train", _rand(), "ok")})
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(manifest.read_text() + "b,train,4\n")
    with pytest.raises(ManifestError, match=r"line 3 \(video 'b'\) has 3 field\(s\), expected 6"):
        FramePairDataset(tmp_path, "train")


# ----------------------------------------------------------------------------- identity sampling


def _identities_dataset(root):
    """Identity ``a`` with 1 video, ``b`` with 2, ``c`` with 5; names as VoxCeleb's chunks."""
    counts = {"a": 1, "b": 2, "c": 5}
    videos = {
        f"{ident}#clip{k}#000001#000004": ("train", _rand(seed=10 * i + k), "ok")
        for i, (ident, n) in enumerate(counts.items())
        for k in range(n)
    }
    return _dataset(root, videos), counts


def test_video_identity_is_the_name_before_the_first_hash():
    assert video_identity("id10001#7w0IBEWc9Qw#000993#001143") == "id10001"
    assert video_identity("id003#train0007") == "id003"
    assert video_identity("plain") == "plain"


def test_id_sampling_epoch_counts_identities_and_draws_each_equally(tmp_path):
    root, counts = _identities_dataset(tmp_path)
    by_video = FramePairDataset(root, num_repeats=3)
    by_identity = FramePairDataset(root, num_repeats=3, id_sampling=True)
    assert len(by_video) == 8 * 3
    assert len(by_identity) == len(counts) * 3  # steps per epoch = identities x repeats
    assert by_identity.identities == ["a", "b", "c"]

    # Over many epochs every identity is drawn equally often, whatever its number of videos,
    # and within an identity every video is drawn (uniformly).
    drawn: dict[str, int] = {}
    for epoch in range(200):
        by_identity.set_epoch(epoch)
        for i in range(len(by_identity)):
            video = by_identity[i]["video"]
            drawn[video] = drawn.get(video, 0) + 1
    per_identity = {ident: sum(n for v, n in drawn.items() if video_identity(v) == ident) for ident in counts}
    assert per_identity == {ident: 600 for ident in counts}
    videos_of_c = [n for v, n in drawn.items() if video_identity(v) == "c"]
    assert len(videos_of_c) == 5
    # 600 draws over 5 videos: 120 each expected, s.d. ~9.8; 60 is 6 s.d. away
    assert min(videos_of_c) > 60 and max(videos_of_c) < 180
    # without identity sampling, identity c (5 of 8 videos) is drawn 5x as often as a
    video_draws = [video_identity(by_video[i]["video"]) for i in range(len(by_video))]
    assert video_draws.count("c") == 5 * video_draws.count("a")


def test_id_sampling_is_deterministic_per_seed_and_epoch(tmp_path):
    root, _ = _identities_dataset(tmp_path)
    a = FramePairDataset(root, num_repeats=4, id_sampling=True, seed=1)
    b = FramePairDataset(root, num_repeats=4, id_sampling=True, seed=1)
    assert all(_same(a[i], b[i]) for i in range(len(a)))
    with pytest.raises(ValueError, match="id_sampling must be true or false"):
        FramePairDataset(root, id_sampling="yes")


# ----------------------------------------------------------------------------- reference flips, resize, crop


def test_flips_follow_the_reference_rule_time_flip_excludes_horizontal(tmp_path):
    """RandomFlip: time flip with p 1/2; only without it, horizontal flip with p 1/2."""
    frames = _rand(t=6)
    _dataset(tmp_path, {"v": ("train", frames, "ok")})
    plain = FramePairDataset(tmp_path, num_repeats=400)
    both = FramePairDataset(tmp_path, augmentation={"flip_param": FULL_AUG["flip_param"]}, num_repeats=400)
    outcomes = {"none": 0, "time": 0, "horizontal": 0}
    for i in range(len(plain)):
        p, f = plain[i], both[i]
        if torch.equal(p["source"], p["driving"]):
            continue  # an identity pair: a time flip cannot be seen
        if _same(p, f):
            outcomes["none"] += 1
        elif torch.equal(f["source"], p["driving"]) and torch.equal(f["driving"], p["source"]):
            outcomes["time"] += 1
        else:
            assert torch.equal(f["source"], p["source"].flip(-1))
            assert torch.equal(f["driving"], p["driving"].flip(-1))
            outcomes["horizontal"] += 1
    total = sum(outcomes.values())
    # expected 1/4 none, 1/2 time, 1/4 horizontal (never both); ~330 pairs: s.d. of a quarter ~8
    assert abs(outcomes["time"] / total - 0.5) < 0.1
    assert abs(outcomes["horizontal"] / total - 0.25) < 0.1
    assert abs(outcomes["none"] / total - 0.25) < 0.1


def test_resize_and_crop_keep_the_frame_size_and_move_the_content(tmp_path):
    frames = _rand(t=3, h=32, w=32)
    _dataset(tmp_path, {"v": ("train", frames, "ok")})
    aug = {"resize_param": {"ratio": [0.8, 1.2]}, "crop_param": {"size": [32, 32]}}
    plain = FramePairDataset(tmp_path, num_repeats=20)
    moved = FramePairDataset(tmp_path, augmentation=aug, num_repeats=20)
    changed = 0
    for i in range(len(plain)):
        p, m = plain[i], moved[i]
        assert m["source"].shape == m["driving"].shape == (3, 32, 32)
        assert m["source"].dtype == torch.float32
        assert 0 <= float(m["source"].min()) and float(m["source"].max()) <= 1
        changed += not _same(p, m)
    assert changed > 10


def test_resize_is_scikit_images_call_and_the_crop_pads_with_edges():
    from skimage.transform import resize

    from data_prep.loading import _random_crop, _random_resize

    frames = torch.from_numpy(_rand(t=2, h=20, w=20)).permute(0, 3, 1, 2).float() / 255
    small = _random_resize(frames, 0.9)  # int(20 * 0.9) = 18
    assert small.shape == (2, 3, 18, 18)
    expected = resize(frames[1].permute(1, 2, 0).numpy(), (18, 18), order=0, preserve_range=True,
                      mode="constant", anti_aliasing=True)
    assert np.allclose(small[1].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    padded = _random_crop(small, (20, 20), np.random.default_rng(0))
    assert padded.shape == (2, 3, 20, 20)
    # centred edge padding: one row/column repeated on each side
    assert torch.equal(padded[..., 1:19, 1:19], small)
    assert torch.equal(padded[..., 0, 1:19], small[..., 0, :])
    assert torch.equal(padded[..., 19, 1:19], small[..., 17, :])


def test_resize_and_crop_config_errors():
    cfg = AugmentationConfig.from_dict({"resize_param": {"ratio": [0.9, 1.1]}, "crop_param": {"size": [64, 64]}})
    assert cfg.resize_ratio == (0.9, 1.1) and cfg.crop_size == (64, 64)
    with pytest.raises(ValueError, match="resize_param needs crop_param"):
        AugmentationConfig.from_dict({"resize_param": {"ratio": [0.9, 1.1]}})
    with pytest.raises(ValueError, match="ratio must be two numbers"):
        AugmentationConfig.from_dict({"resize_param": {"ratio": 0.9}, "crop_param": {"size": [8, 8]}})
    with pytest.raises(ValueError, match="size must be two integers"):
        AugmentationConfig.from_dict({"crop_param": {"size": [8.5, 8]}})
    with pytest.raises(ValueError, match="0 < low <= high"):
        AugmentationConfig.from_dict({"resize_param": {"ratio": [1.1, 0.9]}, "crop_param": {"size": [8, 8]}})

"""The authors' released checkpoints of the methods we implement, as runs that need no training.

Each :class:`Release` names one published file (registered in :data:`data_prep.weights.REGISTRY`
under the same name, so ``animbench weights list|fetch|check`` handle it like every weights file),
the dataset it was trained on, and the method config that describes its architecture: the
releases carry no config, so it comes from our reference configs
(``methods/configs/{method}/{dataset}.yaml``), with ``align_corners`` set as the release was
trained. A workflow run names a release (``checkpoint: tpsmm_taichi``) or a file path instead of
training (docs/released.md).

Loading order, so that a release never runs code and never loads other bytes than the first
verified download: size, then SHA-256 against the published digest (MRAA's Git LFS pointers) or
the lock file's (FOMM and TPSMM publish none), then ``torch.load(weights_only=True)``
(:func:`methods.engine.checkpoints.read`), then strict loading into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep import weights
from data_prep.registry import Registry

FOMM_YANDEX = "https://yadi.sk/d/lEw8uRm140L_eQ"
FOMM_DRIVE = "https://drive.google.com/drive/folders/1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH"
# MRAA's checkpoints are Git LFS files of its repository; the LFS pointers publish size and SHA-256.
MRAA_COMMIT = "451f7dae807cb9bda35af35581216d348caecc21"
MRAA_LFS = f"https://media.githubusercontent.com/media/snap-research/articulated-animation/{MRAA_COMMIT}/checkpoints"
MRAA_DRIVE = "https://drive.google.com/drive/folders/1jCeFPqfU_wKNYwof0ONICwsj3xHlr_tb"
# TPSMM's README: Yandex Disk, Google Drive, Baidu Yun (password 1234); its Tsinghua Cloud link is struck out.
TPSMM_YANDEX = "https://disk.yandex.com/d/bWopgbGj1ZUV1w"
TPSMM_DRIVE = "https://drive.google.com/drive/folders/1pNDo1ODQIb5HVObRtCmubqJikmR7VVLT"

#: Where each method's configs keep ``align_corners`` (the key the models read).
ALIGN_CORNERS_KEY = {
    "fomm": "model_params.common_params.align_corners",
    "mraa": "model_params.align_corners",
    "tpsmm": "model_params.common_params.align_corners",
}
#: Why each method's releases use the value they use.
ALIGN_CORNERS_WHY = {
    "fomm": "trained on torch 1.0, whose grid_sample behaved as align_corners=True",
    "mraa": "trained on torch 1.4, whose grid_sample default was align_corners=False",
    "tpsmm": "the reference passes align_corners=True to every grid_sample and flow resize",
}


@dataclass(frozen=True)
class Release:
    """One released checkpoint: registry name = weights-registry name."""

    name: str
    method: str
    dataset: str  # our dataset name it was trained on (its test split is where it is measured)
    align_corners: bool
    #: The entries the file holds beyond the model's: what the reference layout carries (unused
    #: here: discriminators, optimizers, epoch), so a stand-in can be written in the same layout.
    extra_entries: tuple[str, ...] = ()
    has_avd: bool = False  # MRAA/TPSMM releases carry the AVD network used by animation's avd mode
    #: The config's file name when it is not the dataset's (FOMM's ``vox-adv``, ``taichi-adv``).
    config_name: str = ""

    @property
    def config(self) -> str:
        """Our reference config of its architecture, relative to the repository."""
        return f"methods/configs/{self.method}/{self.config_name or self.dataset}.yaml"

    def overrides(self) -> dict[str, Any]:
        return {ALIGN_CORNERS_KEY[self.method]: self.align_corners}


#: Every released checkpoint by name.
RELEASES: Registry[Release] = Registry("released checkpoint")


def _register(release: Release, file: weights.WeightsFile) -> None:
    RELEASES.add(release.name, release)
    weights.register(file)


_FOMM_EXTRA = ("discriminator", "optimizer_generator", "optimizer_discriminator", "optimizer_kp_detector", "epoch")
_FOMM_GAN = "trained with FOMM's GAN; its discriminator loads with it"
for _name, _file, _dataset, _config, _note in (
    ("fomm_vox", "vox-cpk.pth.tar", "vox", "", ""),
    ("fomm_vox_adv", "vox-adv-cpk.pth.tar", "vox", "vox-adv", _FOMM_GAN),
    ("fomm_taichi", "taichi-cpk.pth.tar", "taichi", "", ""),
    ("fomm_taichi_adv", "taichi-adv-cpk.pth.tar", "taichi", "taichi-adv", _FOMM_GAN),
    ("fomm_mgif", "mgif-cpk.pth.tar", "mgif", "", _FOMM_GAN),
):
    _register(
        Release(_name, "fomm", _dataset, True, _FOMM_EXTRA, config_name=_config),
        weights.WeightsFile(
            name=_name, filename=_file, url=FOMM_YANDEX, remote_path=f"/{_file}", mirror=FOMM_DRIVE,
            sha256_prefix="",
            description=f"FOMM released checkpoint, {_dataset} (first-order-model README)" + (f"; {_note}" if _note else ""),
            checksum_source="first-order-model README (Yandex Disk / Google Drive folders); no checksum published",
        ),
    )

_MRAA_EXTRA = ("optimizer_reconstruction", "optimizer_avd", "epoch_avd")
for _name, _file, _dataset, _size, _sha, _note in (
    ("mraa_vox", "vox256.pth", "vox", 291_747_542,
     "a8c59e0b38f96195eac6414265dcf8e4b15e0675cea2622489b735edc61b3b66", ""),
    ("mraa_taichi", "taichi256.pth", "taichi", 273_409_176,
     "6fd5ebb68953d6c7d02ff765986efa1c8a62d349817fe736a6069e07dc8c17af", ""),
    ("mraa_mgif", "mgif256.pth", "mgif", 248_256_308,
     "58b796e31f763ccfbb240f959c9d92c2afe8a6e57da303e07d8fabd1f2921c68", ""),
    ("mraa_ted", "ted384.pth", "ted", 273_409_224,
     "5c88fb60718a64a8fd87043b0e95781b50e500457d03bf3b4fd26cca6b70c3f7", "the paper's TED-talks model"),
    ("mraa_ted_youtube", "ted-youtube384.pth", "ted", 292_943_746,
     "75ce78089fc2f0b0a276346bf8f14c2043895845ed869bdbe9b2656d3feec13b",
     "trained on the videos still on YouTube (MRAA README); not the paper's row"),
):
    _register(
        Release(_name, "mraa", _dataset, False, _MRAA_EXTRA, has_avd=True),
        weights.WeightsFile(
            name=_name, filename=_file, url=f"{MRAA_LFS}/{_file}", mirror=MRAA_DRIVE,
            sha256_prefix=_sha, size=_size,
            description=f"MRAA released checkpoint with its AVD network, {_dataset} (articulated-animation)"
            + (f"; {_note}" if _note else ""),
            checksum_source=f"Git LFS pointer checkpoints/{_file} of snap-research/articulated-animation@{MRAA_COMMIT[:7]}",
        ),
    )

_TPSMM_EXTRA = ("optimizer", "optimizer_bg_predictor", "optimizer_avd", "epoch")
for _name, _file, _dataset in (
    ("tpsmm_vox", "vox.pth.tar", "vox"),
    ("tpsmm_taichi", "taichi.pth.tar", "taichi"),
    ("tpsmm_ted", "ted.pth.tar", "ted"),
    ("tpsmm_mgif", "mgif.pth.tar", "mgif"),
):
    _register(
        Release(_name, "tpsmm", _dataset, True, _TPSMM_EXTRA, has_avd=True),
        weights.WeightsFile(
            name=_name, filename=_file, url=TPSMM_YANDEX, remote_path=f"/{_file}", mirror=TPSMM_DRIVE,
            sha256_prefix="",
            description=f"TPSMM released checkpoint with its AVD network, {_dataset} (Thin-Plate-Spline-Motion-Model README)",
            checksum_source="Thin-Plate-Spline-Motion-Model README (Yandex / Google Drive / Baidu); no checksum published",
        ),
    )


def list_releases() -> list[str]:
    return RELEASES.names()


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file a run reconstructs with, verified, and what the reports show of it."""

    path: Path
    sha256: str
    release: str | None  # registry name, or None for a file path
    checksum: str  # what the digest was checked against: sha256 / locked / unverified / a path

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": str(self.path), "sha256": self.sha256, "release": self.release,
                                 "checked_against": self.checksum}
        if self.release is not None:
            file, release = weights.REGISTRY[self.release], RELEASES[self.release]
            entry["location"] = file.url + (f" : {file.remote_path}" if file.remote_path else "")
            entry["align_corners"] = release.align_corners
            entry["align_corners_why"] = ALIGN_CORNERS_WHY[release.method]
        return entry


def resolve_checkpoint(name_or_path: str, weights_dir: str | Path) -> ResolvedCheckpoint:
    """A release name -> its verified file in ``weights_dir`` (size and digest checked before
    anything reads it); anything else is a file path, loaded only as tensors and plain data."""
    from data_prep.io import file_sha256

    if name_or_path in RELEASES:
        path, digest = weights.resolve_with_sha256(name_or_path, weights_dir)
        entry = weights.REGISTRY[name_or_path]
        kind = weights.checksum_kind(entry)
        return ResolvedCheckpoint(path, digest, name_or_path, kind if kind != "unpublished" else "unverified")
    path = Path(name_or_path)
    if not path.is_file():
        raise weights.MissingWeightsError(
            f"checkpoint {path} does not exist, and {name_or_path!r} is not a released checkpoint "
            f"(known: {', '.join(list_releases())})"
        )
    return ResolvedCheckpoint(path, file_sha256(path), None, "a file path (no registry digest)")


def release_method_config(
    release: str, repo: Path, overrides: dict[str, Any] | None = None, config: str | Path | None = None
) -> dict[str, Any]:
    """The method config of ``release``: ``config`` (default: our reference config for its
    dataset), its ``align_corners``, then ``overrides`` (a run's own)."""
    from methods.engine.config import load_method_config

    found = RELEASES.get(release)
    path = config if config is not None else repo / found.config
    return load_method_config(path, overrides={**found.overrides(), **(overrides or {})})

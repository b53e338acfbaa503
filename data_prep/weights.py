"""Pretrained weights: where each file comes from, its checksum, and how to fetch it.

Nothing downloads at import, training or evaluation time. A component that needs a file calls
:func:`resolve` (or :func:`resolve_with_sha256`), which either returns the verified local path or
stops with an error that names the file, its official URL and the command that fetches it.
``animbench weights fetch`` downloads and verifies; ``animbench weights check`` reports what is
present, missing or corrupt.

Checksums come in three kinds, recorded per entry (``checksum_kind``) because not every upstream
publishes a full SHA-256:

- ``sha256``: the full digest of the official file, as recorded by independent users of it.
- ``sha256-prefix``: the hex digits the upstream puts in the file name (torch hub convention,
  ``name-<first sha256 digits>.ext``, which ``torch.hub`` itself verifies).
- ``unpublished``: the upstream publishes no checksum (a Google Drive, Yandex Disk or plain file
  link). The first verified download (``weights fetch``, or ``weights lock`` for a file placed by
  hand) records its size and SHA-256 in the committed lock file ``data_prep/weights.lock.csv``;
  every later run checks the same bytes, and a file that changed is refused. Until then the file
  is "unverified": ``weights check`` says so and the evaluators and reports record its digest
  beside every number.

Downloads go through pooch (``pooch.retrieve`` with the known hash, its progress bar; a Google
Drive file through gdown, a file in a public Yandex Disk folder through Yandex's public API),
into a temporary folder first: a failed or corrupt download never replaces a file.
"""

from __future__ import annotations

import csv
import datetime
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_prep.io import atomic_path, file_sha256
from data_prep.registry import Registry

DEFAULT_WEIGHTS_DIR = Path("resources/weights")
#: Size and SHA-256 of files whose upstream publishes no checksum, recorded at their first fetch.
LOCK_FILE = Path(__file__).with_name("weights.lock.csv")
LOCK_COLUMNS = ("name", "filename", "size", "sha256", "recorded")
YANDEX_PUBLIC_API = "https://cloud-api.yandex.net/v1/disk/public/resources/download"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    name: str
    filename: str
    url: str
    # The known leading hex digits of the file's SHA-256: all 64 when the full digest is known,
    # the upstream's file-name prefix otherwise, "" when the upstream publishes none.
    sha256_prefix: str
    description: str
    size: int | None = None  # bytes, when known; checked before hashing (a cheap truncation test)
    checksum_source: str = ""  # where the checksum (and size) come from
    # The file's path inside the public Yandex Disk folder ``url`` (FOMM's and TPSMM's releases).
    remote_path: str = ""
    # Another official location (a Google Drive folder the README also links), for a manual download.
    mirror: str = ""

    @property
    def checksum_kind(self) -> str:
        if len(self.sha256_prefix) == 64:
            return "sha256"
        return "sha256-prefix" if self.sha256_prefix else "unpublished"


#: Every weights file by name: the networks of losses and evaluators, declared below, and the
#: methods' released checkpoints, declared with their run metadata in methods/engine/releases.py.
REGISTRY: Registry[WeightsFile] = Registry("weights", builtin_modules=("methods.engine.releases",))


def register(entry: WeightsFile) -> WeightsFile:
    if entry.sha256_prefix.lower() != entry.sha256_prefix or not all(
        c in "0123456789abcdef" for c in entry.sha256_prefix
    ):
        raise ValueError(f"weights {entry.name!r}: sha256_prefix must be lower-case hex")
    return REGISTRY.add(entry.name, entry)


def list_weights() -> list[str]:
    return REGISTRY.names()


register(
    WeightsFile(
        name="vgg19",
        filename="vgg19.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256_prefix="dcbb9e9d",
        description="torchvision VGG-19 ImageNet weights (perceptual loss of every method)",
        checksum_source="torchvision file name (torch hub sha256 prefix)",
    )
)
register(
    WeightsFile(
        name="openpifpaf_shufflenetv2k16",
        filename="shufflenetv2k16-210820-232500-cocokp-slurm726069-edge513-o10s-7189450a.pkl",
        url=(
            "http://github.com/openpifpaf/torchhub/releases/download/v0.13/"
            "shufflenetv2k16-210820-232500-cocokp-slurm726069-edge513-o10s-7189450a.pkl"
        ),
        sha256_prefix="7189450a",
        description="openpifpaf 0.13 COCO keypoint model, ShuffleNetV2-K16 (body AKD/MKR; openpifpaf's default)",
        checksum_source="openpifpaf 0.13.11 plugins/coco CHECKPOINT_URLS file name (torch hub sha256 prefix)",
    )
)
register(
    WeightsFile(
        name="fan_2d",
        filename="2DFAN4-11f355bf06.pth.tar",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
        sha256_prefix="11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
        description="face-alignment FAN 2D, 4 stacked hourglasses, 68 landmarks (face AKD)",
        checksum_source="face-alignment 1.5.0 models_urls (prefix in file name); full digest as pinned by independent users",
    )
)
register(
    WeightsFile(
        name="sfd",
        filename="s3fd-619a316812.pth",
        url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        sha256_prefix="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
        size=89_843_225,
        description="face-alignment SFD (S3FD) face detector used before FAN (face AKD)",
        checksum_source="face-alignment 1.5.0 sfd models_urls (prefix in file name); full digest and size as pinned by independent users",
    )
)
register(
    WeightsFile(
        name="facenet_vggface2",
        filename="20180402-114759-vggface2.pt",
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        sha256_prefix="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        size=111_898_327,
        description="facenet-pytorch InceptionResnetV1 trained on VGGFace2 (face AED)",
        checksum_source="facenet-pytorch 2.5.3 load_weights URL; digest and size as pinned by independent users",
    )
)
register(
    WeightsFile(
        name="torchreid_resnet50_market1501",
        filename="resnet50_market1501.pt",
        url="https://drive.google.com/uc?id=1dUUZ4rHDWohmsQXCRe2C_HbYkzz94iBV",
        sha256_prefix="",
        description=(
            "torchreid ResNet-50 (softmax) trained on Market-1501, the dataset of the re-id "
            "baseline the pose-evaluation protocol used (body AED)"
        ),
        checksum_source="torchreid model zoo (Google Drive link in torchreid 0.2.5 reid_model_factory); no checksum published",
    )
)
register(
    WeightsFile(
        name="sam_vit_b",
        filename="sam_vit_b_01ec64.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256_prefix="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size=375_042_383,
        description="Segment Anything ViT-B (CPAB keypoint-semantic loss)",
        checksum_source="segment-anything README checkpoint link; digest and size as pinned by independent users",
    )
)
register(
    WeightsFile(
        name="sam_vit_l",
        filename="sam_vit_l_0b3195.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256_prefix="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        description="Segment Anything ViT-L (CPAB keypoint-semantic loss, variant vit_l)",
        checksum_source="segment-anything README checkpoint link; digest as pinned by independent users (size not cross-checked)",
    )
)
register(
    WeightsFile(
        name="sam_vit_h",
        filename="sam_vit_h_4b8939.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256_prefix="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size=2_564_550_879,
        description="Segment Anything ViT-H (CPAB keypoint-semantic loss, variant vit_h)",
        checksum_source="segment-anything README checkpoint link; digest and size as pinned by independent users",
    )
)
register(
    WeightsFile(
        name="dino_vitb8",
        filename="dino_vitbase8_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
        sha256_prefix="",
        description="DINO ViT-B/8 backbone (CPAB structure loss)",
        checksum_source="facebookresearch/dino hub URL; no checksum published",
    )
)
register(
    WeightsFile(
        name="dino_vits8",
        filename="dino_deitsmall8_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
        sha256_prefix="",
        description="DINO ViT-S/8 backbone (a smaller CPAB structure-loss variant; the paper uses ViT-B/8)",
        checksum_source="facebookresearch/dino README/hub URL; no checksum published",
    )
)


# --- the papers' evaluators (pose-evaluation, the `paper-*` protocols; docs/evaluators.md) -------
register(
    WeightsFile(
        name="rtpose_vgg19_coco",
        filename="pose_model.pth",
        url="https://yadi.sk/d/0L-PgAaGRKgkJA",
        sha256_prefix="",
        description=(
            "OpenPose CMU COCO-18 body model (VGG-19 PAF network, `rtpose`) as pose-evaluation "
            "loads it (paper body AKD/MKR)"
        ),
        checksum_source="pose-evaluation README (single-file public Yandex Disk link); no checksum published",
    )
)
register(
    WeightsFile(
        name="reid_baseline_ft_net",
        filename="reid_model.pth",
        url="https://yadi.sk/d/jAPhvFEFp6qzIw",
        sha256_prefix="",
        description=(
            "Person_reID_baseline_pytorch ft_net(751) (ResNet-50, Market-1501) as pose-evaluation "
            "loads it (paper body AED)"
        ),
        checksum_source="pose-evaluation README (single-file public Yandex Disk link); no checksum published",
    )
)
register(
    WeightsFile(
        name="openface_nn4_small2",
        filename="openface.pth",
        url=(
            "https://github.com/thnkim/OpenFacePytorch/raw/"
            "d00221832413e86b5608ca791c956b7949479627/openface.pth"
        ),
        sha256_prefix="",
        description="OpenFace nn4.small2 (OpenFacePytorch's openface.pth, the commit pose-evaluation pins; paper face AED)",
        checksum_source="thnkim/OpenFacePytorch @d002218 (file in the repository); no checksum published",
    )
)


class MissingWeightsError(FileNotFoundError):
    """A weights file is missing or does not match its checksum."""


class WeightsFetchError(MissingWeightsError):
    """A download failed (offline, refused, or the bytes did not match the checksum)."""


def _lock_path(lock_file: Path | None) -> Path:
    # Looked up at call time (not a default argument), so tests can point LOCK_FILE elsewhere.
    return lock_file if lock_file is not None else LOCK_FILE


def read_lock(lock_file: Path | None = None) -> dict[str, dict[str, str]]:
    """Lock entries by registry name: ``size``, ``sha256``, ``filename``, ``recorded``."""
    lock_file = _lock_path(lock_file)
    if not lock_file.is_file():
        return {}
    with open(lock_file, newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(line for line in handle if not line.startswith("#"))}


def record_lock(name: str, path: Path, digest: str, lock_file: Path | None = None) -> None:
    """Add (or keep) the lock entry of ``name``: the file's size and SHA-256, today's date."""
    lock_file = _lock_path(lock_file)
    entries = read_lock(lock_file)
    if name in entries:
        return
    entries[name] = {"name": name, "filename": REGISTRY[name].filename, "size": str(path.stat().st_size),
                     "sha256": digest, "recorded": datetime.date.today().isoformat()}
    header = ("# Weights whose upstream publishes no checksum: size and SHA-256 of the first verified\n"
              "# download (`animbench weights fetch` / `weights lock`). Commit this file.\n")
    with atomic_path(lock_file) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(header)
        writer = csv.DictWriter(handle, fieldnames=LOCK_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(entries[n] for n in sorted(entries))


def checksum_kind(entry: WeightsFile, lock_file: Path | None = None) -> str:
    """The entry's published checksum kind, or ``locked`` when only the lock file pins it."""
    if entry.checksum_kind == "unpublished" and entry.name in read_lock(lock_file):
        return "locked"
    return entry.checksum_kind


def _how(entry: WeightsFile, weights_dir: str | Path) -> str:
    path = Path(weights_dir) / entry.filename
    where = entry.url + (f" (file {entry.remote_path})" if entry.remote_path else "")
    mirror = f" or from {entry.mirror}" if entry.mirror else ""
    return (
        f"Fetch it with `animbench weights fetch {entry.name} --dir {weights_dir}` on a machine with "
        f"internet access, or download it from {where}{mirror} and place it at {path}."
    )


def verify_file(entry: WeightsFile, path: Path, lock_file: Path | None = None) -> tuple[str, str]:
    """``(status, sha256)`` of a local file: status is ok, unverified or a reason it is corrupt.

    The size is checked first (a truncated download is named as such, without hashing), then the
    digest against the published checksum and against the lock file's.
    """
    lock_file = _lock_path(lock_file)
    locked = read_lock(lock_file).get(entry.name)
    size = entry.size if entry.size is not None else (int(locked["size"]) if locked else None)
    found = path.stat().st_size
    if size is not None and found != size:
        kind = "truncated" if found < size else "too long"
        return f"corrupt: {kind}, {found} bytes, expected {size}", ""
    digest = file_sha256(path)
    if not digest.startswith(entry.sha256_prefix):
        return (
            f"corrupt: sha256 {digest[:16]}… does not start with {entry.sha256_prefix[:16]}",
            digest,
        )
    if locked and digest != locked["sha256"]:
        return (
            f"corrupt: sha256 {digest[:16]}… differs from {locked['sha256'][:16]}…, recorded in "
            f"{lock_file.name} at its first fetch ({locked['recorded']}): the file changed",
            digest,
        )
    return ("ok" if entry.sha256_prefix or locked else "unverified"), digest


def resolve_with_sha256(
    name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, lock_file: Path | None = None
) -> tuple[Path, str]:
    """Verified local path of weights ``name`` and the file's full SHA-256 (recorded by evaluators)."""
    lock_file = _lock_path(lock_file)
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"missing weights file {path} ({entry.description}). {_how(entry, weights_dir)}"
        )
    status, digest = verify_file(entry, path, lock_file)
    if status.startswith("corrupt"):
        raise MissingWeightsError(
            f"weights file {path} is {status}; it is truncated or a different file. {_how(entry, weights_dir)}"
        )
    if status == "unverified":
        LOG.warning(
            "weights %s: upstream publishes no checksum and %s has none recorded; loaded file has "
            "sha256 %s (`animbench weights lock %s` records it)", path, lock_file.name, digest, name,
        )
    return path, digest


def resolve(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, verify: bool = True) -> Path:
    """Path of the local copy of weights ``name``, checked against its checksum."""
    if verify:
        return resolve_with_sha256(name, weights_dir)[0]
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"missing weights file {path} ({entry.description}). {_how(entry, weights_dir)}"
        )
    return path


def check(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, lock_file: Path | None = None) -> str:
    """One word-first status line for ``animbench weights check``: ok / unverified / missing / corrupt."""
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        return f"missing     {name}: {path} ({entry.url})"
    status, digest = verify_file(entry, path, lock_file)
    if status == "ok":
        kind = checksum_kind(entry, lock_file)
        return f"ok          {name}: {path} (sha256 {digest[:16]}…, checked against {kind})"
    if status == "unverified":
        return (f"unverified  {name}: {path} (sha256 {digest}; upstream publishes no checksum; "
                f"`animbench weights lock {name}` records it)")
    return f"corrupt     {name}: {path} ({status.removeprefix('corrupt: ')}); re-fetch from {entry.url}"


def lock(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, lock_file: Path | None = None) -> str:
    """Record the digest of a present, unverified file (one placed by hand) in the lock file."""
    lock_file = _lock_path(lock_file)
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        raise MissingWeightsError(f"missing weights file {path}. {_how(entry, weights_dir)}")
    status, digest = verify_file(entry, path, lock_file)
    if status.startswith("corrupt"):
        raise MissingWeightsError(f"weights file {path} is {status}; not recorded")
    if status == "unverified":
        record_lock(name, path, digest, lock_file)
        return f"locked      {name}: sha256 {digest} recorded in {lock_file}"
    return f"ok          {name}: already checked against {checksum_kind(entry, lock_file)}"


def load_pickled(name: str, path: Path, lock_file: Path | None = None) -> object:
    """``torch.load`` of registry file ``name`` (already resolved, so its size and digest were
    checked): tensors and plain data only when that suffices; the full unpickler, which can run
    code, only for a file whose digest is pinned (published, or recorded in the lock file), since
    some upstream files are pickled objects (openpifpaf's whole models, torchreid's training
    checkpoints)."""
    lock_file = _lock_path(lock_file)
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():
            raise MissingWeightsError(f"weights file {path} is not a valid torch file ({str(err)[:120]})") from None
    entry = REGISTRY.get(name)
    if checksum_kind(entry, lock_file) == "unpublished":
        raise MissingWeightsError(
            f"weights file {path} holds pickled Python objects and its digest is pinned nowhere (no "
            f"published checksum, none recorded in {lock_file.name}): refused unread, since unpickling "
            f"it could run code. If it came from {entry.url}, record it with `animbench weights lock "
            f"{name}` and rerun"
        )
    return torch.load(path, map_location="cpu", weights_only=False)


# --- downloads ---------------------------------------------------------------------------------


def _gdown(url: str, output_file: str, pooch_obj: object) -> None:
    # Google Drive answers large files with a confirmation page; gdown knows the handshake.
    import gdown

    if gdown.download(url, str(output_file), quiet=False) is None:
        raise OSError(f"gdown could not download {url}")


def _yandex(entry: WeightsFile) -> Callable[[str, str, object], None]:
    """A pooch downloader for ``entry.remote_path`` inside the public Yandex Disk folder ``url``."""

    def download(url: str, output_file: str, pooch_obj: object) -> None:
        import pooch
        import requests

        # A single-file public link (pose-evaluation's weights) has no path inside it.
        params = {"public_key": url, **({"path": entry.remote_path} if entry.remote_path else {})}
        answer = requests.get(YANDEX_PUBLIC_API, params=params, timeout=60)
        answer.raise_for_status()
        pooch.HTTPDownloader(progressbar=True)(answer.json()["href"], output_file, pooch_obj)

    return download


def _drive_folder(entry: WeightsFile) -> Callable[[str, str, object], None]:
    """A pooch downloader for ``entry.filename`` inside the public Google Drive folder ``url``:
    gdown lists the folder (no download), then fetches that one file by its id."""

    def download(url: str, output_file: str, pooch_obj: object) -> None:
        import gdown

        listed = gdown.download_folder(url=url, skip_download=True, quiet=True) or []
        found = [f for f in listed if Path(f.path).name == entry.filename]
        if not found:
            raise OSError(f"{entry.filename} is not in the Google Drive folder {url}")
        if gdown.download(id=found[0].id, output=str(output_file), quiet=False) is None:
            raise OSError(f"gdown could not download {entry.filename} from {url}")

    return download


def _sources(entry: WeightsFile) -> list[tuple[str, Callable[[str, str, object], None]]]:
    """(location, pooch downloader) to try in turn: the official location, then a Google Drive
    folder mirror (the READMEs link both; either may be rate-limited or gone)."""
    sources = [(entry.url, _downloader(entry))]
    if "drive.google.com/drive/folders/" in entry.mirror:
        sources.append((entry.mirror, _drive_folder(entry)))
    return sources


def _downloader(entry: WeightsFile) -> Callable[[str, str, object], None]:
    import pooch

    if "drive.google.com" in entry.url:
        return _gdown
    if entry.remote_path or entry.url.startswith(("https://yadi.sk/", "https://disk.yandex")):
        return _yandex(entry)
    return pooch.HTTPDownloader(progressbar=True)


def fetch(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, lock_file: Path | None = None) -> Path:
    """Download weights ``name`` from its official location, verify, and move it into place.

    An already present, verified file is kept. The download lands in a temporary folder and
    replaces nothing unless it verifies. A failed download (offline, HTTP error, wrong bytes)
    raises :class:`WeightsFetchError` with one line naming the location and the reason. The first
    download of a file with no published checksum records its digest in the lock file.
    """
    lock_file = _lock_path(lock_file)
    import pooch

    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if path.is_file() and not verify_file(entry, path, lock_file)[0].startswith("corrupt"):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    locked = read_lock(lock_file).get(name)
    full = entry.sha256_prefix if len(entry.sha256_prefix) == 64 else (locked or {}).get("sha256")
    failures = []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fetch-") as tmp:
        for url, downloader in _sources(entry):
            try:
                fetched = Path(pooch.retrieve(
                    url, known_hash=f"sha256:{full}" if full else None, fname=entry.filename,
                    path=tmp, downloader=downloader, progressbar=True,
                ))
            except Exception as err:  # noqa: BLE001 - network, HTTP, gdown and hash failures alike
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                if "hash" in reason.lower():
                    failures.append(f"download of {url} is corrupt ({reason[:200]})")
                else:
                    failures.append(f"could not download {url} ({type(err).__name__}: {reason[:200]})")
                continue
            status, digest = verify_file(entry, fetched, lock_file)
            if status.startswith("corrupt"):
                failures.append(f"download of {url} is {status}")
                fetched.unlink()
                continue
            os.replace(fetched, path)  # same folder: atomic
            break
        else:
            offline = "" if any("corrupt" in f for f in failures) else (
                " This machine may be offline: download it elsewhere and place it at "
                f"{path}, then run `animbench weights check {name}`.")
            raise WeightsFetchError(f"{'; '.join(failures)}; nothing was written to {path}.{offline}")
    if status == "unverified":
        record_lock(name, path, digest, lock_file)
        LOG.warning("fetched %s: upstream publishes no checksum; sha256 %s recorded in %s", path, digest, lock_file)
    return path

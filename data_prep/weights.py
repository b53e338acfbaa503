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
- ``unpublished``: the upstream publishes no checksum (a Google Drive or plain file link). The
  file cannot be verified; ``weights check`` says so, and the evaluators record the digest of
  whatever file they loaded beside every number.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data_prep.io import atomic_path, file_sha256
from data_prep.registry import Registry

DEFAULT_WEIGHTS_DIR = Path("resources/weights")
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

    @property
    def checksum_kind(self) -> str:
        if len(self.sha256_prefix) == 64:
            return "sha256"
        return "sha256-prefix" if self.sha256_prefix else "unpublished"


#: Every weights file by name; the entries are declared in this module (no lazy modules).
REGISTRY: Registry[WeightsFile] = Registry("weights")


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


class MissingWeightsError(FileNotFoundError):
    """A weights file is missing or does not match its checksum."""


class WeightsFetchError(MissingWeightsError):
    """A download failed (offline, refused, or the bytes did not match the checksum)."""


def _how(entry: WeightsFile, weights_dir: str | Path) -> str:
    path = Path(weights_dir) / entry.filename
    return (
        f"Fetch it with `animbench weights fetch {entry.name} --dir {weights_dir}` on a machine with "
        f"internet access, or download {entry.url} and place it at {path}."
    )


def verify_file(entry: WeightsFile, path: Path) -> tuple[str, str]:
    """``(status, sha256)`` of a local file: status is ok, unverified or a reason it is corrupt."""
    if entry.size is not None and path.stat().st_size != entry.size:
        return f"corrupt: {path.stat().st_size} bytes, expected {entry.size}", ""
    digest = file_sha256(path)
    if not digest.startswith(entry.sha256_prefix):
        return (
            f"corrupt: sha256 {digest[:16]}… does not start with {entry.sha256_prefix[:16]}",
            digest,
        )
    return ("ok" if entry.sha256_prefix else "unverified"), digest


def resolve_with_sha256(
    name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR
) -> tuple[Path, str]:
    """Verified local path of weights ``name`` and the file's full SHA-256 (recorded by evaluators)."""
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"missing weights file {path} ({entry.description}). {_how(entry, weights_dir)}"
        )
    status, digest = verify_file(entry, path)
    if status.startswith("corrupt"):
        raise MissingWeightsError(
            f"weights file {path} is {status}; it is truncated or a different file. {_how(entry, weights_dir)}"
        )
    if status == "unverified":
        LOG.warning(
            "weights %s: upstream publishes no checksum; loaded file has sha256 %s", path, digest
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


def check(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR) -> str:
    """One word-first status line for ``animbench weights check``: ok / unverified / missing / corrupt."""
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if not path.is_file():
        return f"missing     {name}: {path} ({entry.url})"
    status, digest = verify_file(entry, path)
    if status == "ok":
        return f"ok          {name}: {path} (sha256 {digest[:16]}…, checked against {entry.checksum_kind})"
    if status == "unverified":
        return f"unverified  {name}: {path} (sha256 {digest}; upstream publishes no checksum)"
    return f"corrupt     {name}: {path} ({status.removeprefix('corrupt: ')}); re-fetch from {entry.url}"


def _download(url: str, target: Path, label: str) -> None:
    if "drive.google.com" in url:
        # Google Drive answers large files with a confirmation page; gdown (a torchreid
        # dependency) knows the handshake.
        import gdown

        if gdown.download(url, str(target), quiet=False) is None:
            raise OSError(f"gdown could not download {url}")
        return
    from tqdm import tqdm

    with tqdm(unit="B", unit_scale=True, desc=label) as bar:

        def hook(blocks: int, block_size: int, total: int) -> None:
            bar.total = total if total > 0 else None
            bar.update(blocks * block_size - bar.n)

        urllib.request.urlretrieve(url, target, reporthook=hook)


def fetch(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """Download weights ``name`` from the official URL, verify, and move into place atomically.

    An already present, verified file is kept. A failed download (offline, HTTP error) raises
    :class:`WeightsFetchError` with one line naming the URL and the reason.
    """
    entry = REGISTRY.get(name)
    path = Path(weights_dir) / entry.filename
    if path.is_file() and not verify_file(entry, path)[0].startswith("corrupt"):
        return path
    try:
        with atomic_path(path) as tmp:
            _download(entry.url, Path(tmp), entry.filename)
            status, digest = verify_file(entry, Path(tmp))
            if status.startswith("corrupt"):
                raise WeightsFetchError(
                    f"download of {entry.url} is {status}; nothing was written to {path}"
                )
    except (urllib.error.URLError, OSError) as err:
        if isinstance(err, WeightsFetchError):
            raise
        reason = getattr(err, "reason", None) or err
        raise WeightsFetchError(
            f"could not download {entry.url} ({reason}). This machine may be offline: download it "
            f"elsewhere and place it at {path}, then run `animbench weights check {name}`."
        ) from None
    if status == "unverified":
        LOG.warning("fetched %s: upstream publishes no checksum; sha256 %s", path, digest)
    return path

#!/usr/bin/env bash
# Install the real evaluator backends (issue 8) into a Python 3.11 + torch 2.14 environment
# without letting any of them change torch or torchvision.
#
#   bash workflow/scripts/install_evaluators.sh [PYTHON]      (default: .venv/bin/python)
#
# What `pip install -r requirements.lock` cannot do on its own, done here:
# - openpifpaf 0.13.11 has no wheel for Python 3.11 and pins torch==1.13.1. Its sdist is fetched
#   from PyPI, patched (-std=c++20 because torch 2.14's headers need it; matplotlib.cm.get_cmap,
#   removed in matplotlib 3.9, replaced by matplotlib.colormaps.get_cmap) and built against the
#   installed torch with --no-deps --no-build-isolation. Its runtime dependencies
#   (importlib_metadata, pysparkling, python-json-logger) are pinned in requirements.lock.
# - face-alignment 1.5.0 requires opencv-python, whose GUI build would share the `cv2` package
#   directory with the pinned opencv-python-headless: installed with --no-deps; its other
#   dependencies (numba, scikit-image, scipy, tqdm) are pinned in requirements.lock.
# facenet-pytorch 2.5.3 and torchreid 0.2.5 install normally from requirements.lock.
#
# Idempotent: a package already at the pinned version is left alone, so re-running costs seconds.
set -euo pipefail

PY=${1:-.venv/bin/python}
OPENPIFPAF_VERSION=0.13.11
FACE_ALIGNMENT_VERSION=1.5.0
SETUPTOOLS_VERSION=84.2.1

pip_() { "$PY" -m pip --disable-pip-version-check "$@"; }
installed() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
torch_versions() { "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"; }

before=$(torch_versions)

if ! installed face-alignment "$FACE_ALIGNMENT_VERSION"; then
    echo "install_evaluators: face-alignment $FACE_ALIGNMENT_VERSION (--no-deps)"
    pip_ install --quiet --no-deps "face-alignment==$FACE_ALIGNMENT_VERSION"
fi

if ! installed openpifpaf "$OPENPIFPAF_VERSION"; then
    echo "install_evaluators: building openpifpaf $OPENPIFPAF_VERSION from its sdist (a few minutes)"
    # A fresh Python 3.11 venv has setuptools 65 and no `wheel`, which cannot build a wheel
    # without build isolation; setuptools >= 70.1 builds wheels by itself.
    pip_ install --quiet "setuptools==$SETUPTOOLS_VERSION"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # --no-build-isolation: the sdist's build requirements pin torch==1.13.1; it builds against ours.
    pip_ download --quiet --no-deps --no-binary :all: --no-build-isolation \
        "openpifpaf==$OPENPIFPAF_VERSION" -d "$work"
    tar -xzf "$work/openpifpaf-$OPENPIFPAF_VERSION.tar.gz" -C "$work"
    src="$work/openpifpaf-$OPENPIFPAF_VERSION"
    grep -q "std=c++17" "$src/setup.py" || { echo "install_evaluators: setup.py has no -std=c++17 to patch" >&2; exit 1; }
    sed -i 's/std=c++17/std=c++20/; s#/std:c++17#/std:c++20#' "$src/setup.py"
    grep -rl "matplotlib\.cm\.get_cmap" "$src/src" | xargs -r sed -i 's/matplotlib\.cm\.get_cmap(/matplotlib.colormaps.get_cmap(/g'
    # Build against the torch that is installed; two compile jobs fit the 2-core machines.
    MAX_JOBS=${MAX_JOBS:-2} pip_ install --quiet --no-deps --no-build-isolation "$src"
fi

after=$(torch_versions)
if [ "$before" != "$after" ]; then
    echo "install_evaluators: torch/torchvision changed from $before to $after; reinstall them from requirements.lock" >&2
    exit 1
fi

# Every backend package imports, and openpifpaf's compiled extension loads.
"$PY" - <<'EOF'
import importlib.metadata as m

import face_alignment  # noqa: F401
import facenet_pytorch  # noqa: F401
import openpifpaf  # noqa: F401
import torchreid  # noqa: F401

names = ("openpifpaf", "face-alignment", "facenet-pytorch", "torchreid")
print("install_evaluators: ok " + ", ".join(f"{n} {m.version(n)}" for n in names))
EOF

#!/usr/bin/env bash
# The GPU check (tests/gpu/check.py): `bash tests/gpu/check.sh OUT_DIR [--dry] [--only a,b]`.
#
# It runs with the first Python that has what it needs: $PYTHON if set, else .venv/bin/python,
# else python3. When that one lacks a package the check imports, it installs:
#   - from wheels in .whl/ (carried to a machine with no package index), without an index;
#   - else, where an index is reachable, the pinned requirements.lock into .venv (as `make`).
# On a GPU machine whose image already has torch with CUDA, nothing is installed: that torch is
# used (the check reports its version), since the lock's CPU-only pins would replace it.
set -euo pipefail
cd "$(dirname "$0")/../.."

pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; elif [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi
}
PY=$(pick_python)
NEEDS="torch torchvision numpy pandas yaml jsonschema jinja2 tqdm cv2 PIL matplotlib numba scipy skimage imageio timm segment_anything pytest"

missing() {
    "$1" - "$NEEDS" <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1].split() if importlib.util.find_spec(m) is None))
PY
}

gone=$(missing "$PY")
if [ -n "$gone" ]; then
    echo "gpu-check: $PY lacks: $gone"
    if compgen -G ".whl/*.whl" > /dev/null; then
        echo "gpu-check: installing the carried wheels in .whl/ (no index)"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .whl/*.whl
        export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu-check: installing requirements.lock into .venv"
        test -x .venv/bin/python || python3 -m venv .venv
        .venv/bin/pip install --quiet -r requirements.lock
        .venv/bin/pip install --quiet --no-deps -e .
        PY=.venv/bin/python
    fi
    gone=$(missing "$PY")
    if [ -n "$gone" ]; then
        echo "gpu-check: still missing: $gone; carry their wheels in .whl/ (see tests/gpu/README.md)" >&2
        exit 2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m tests.gpu.check "$@"

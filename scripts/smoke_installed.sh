#!/usr/bin/env bash
# Installs altup-t5 as users do (a wheel, not editable) into a fresh virtual
# environment of another Python, then runs the README's main command from an
# unrelated directory (the quickstart, 20 steps) and a handful of tests against the
# installed package. CI runs it with Python 3.12 (the suite itself runs on 3.11).
#   usage: scripts/smoke_installed.sh [PYTHON]      (default: python3.12)
# Expected on 2 cores: about 6 min, most of it pip installing JAX and TensorFlow.
set -euo pipefail
checkout=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-python3.12}
if ! command -v "$python" >/dev/null 2>&1 || ! "$python" --version >/dev/null 2>&1; then
  # pyenv keeps other versions out of PATH unless asked for.
  found=$(ls -d "$(pyenv root 2>/dev/null || echo /root/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)
  if [ -z "$found" ]; then
    echo "smoke: SKIPPED: no $python on this machine"; exit 0
  fi
  python=$found
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "smoke: $("$python" --version) in $work"
"$python" -m venv "$work/venv"
. "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
# From a copy: an in-tree build writes build/ and the package's gin/ into the checkout,
# which CI's test suite is reading at the same time.
mkdir "$work/src"
tar -C "$checkout" --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./dist \
  -cf - . | tar -C "$work/src" -xf -
pip wheel -q --no-deps "$work/src" -w "$work/dist"
pip install -q "$work"/dist/altup_t5-*.whl pytest
cd "$work"   # nothing of the checkout on sys.path: the gin files come from the wheel
python -c "import jax, altup_t5, altup_t5.resources as r; print('smoke: jax', jax.__version__, 'gin files at', r.gin_dir())"
python -m altup_t5.train --gin_file=experiments/quickstart.gin --gin.MODEL_DIR="$work/run" \
  --gin.TRAIN_STEPS=20 --gin.EVAL_PERIOD=20 --gin.CHECKPOINT_PERIOD=20 --gin.EVAL_STEPS=2
test -f "$work/run/run_info.json"
python -m pytest -q -p no:cacheprovider --rootdir="$checkout" --basetemp="$work/pytest" \
  "$checkout/tests/test_layout.py" "$checkout/tests/test_altup.py" \
  "$checkout/tests/test_span_corruption.py" "$checkout/tests/test_metrics.py"
echo "smoke: passed"

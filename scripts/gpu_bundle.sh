#!/usr/bin/env bash
# Prepare what a lent GPU machine lacks, in git-ignored folders that travel with the checkout.
#
#   scripts/gpu_bundle.sh                    # .whl/ (hydra-core, omegaconf, antlr4 wheels) and .gpu_data/mnist
#
# For a GPU machine with no package registry (docs/gpu.md, "A GPU machine without Hydra or internet") that has
# torch, numpy, scipy, networkx, numba, matplotlib, tqdm, PyYAML and joblib but not Hydra. Hydra's three pure-Python
# wheels go to .whl/ (antlr4-python3-runtime 4.9.3 is on PyPI as a source archive only, so it is built into a wheel
# here); MNIST (12 MB, for the VAE) is copied from the data root into .gpu_data/mnist (NRI generates its own data).
# Send both folders with the checkout (about 12.5 MB) and start the command there with
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD SST_DATA_DIR=$PWD/.gpu_data
#
# Needs pip and the package registry here; the wheels' versions are requirements.txt's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
pin() { grep -E "^$1==" requirements.txt | head -n 1; }
hydra=$(pin hydra-core)
omegaconf=$(pin omegaconf)
[ -n "$hydra" ] && [ -n "$omegaconf" ] || { echo "requirements.txt pins no hydra-core or omegaconf" >&2; exit 1; }
rm -rf .whl
mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$hydra" "$omegaconf"
"$py" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"

root=${SST_DATA_DIR:-../shared/data}
[ -d "$root/mnist" ] || { echo "no MNIST under $root (set SST_DATA_DIR to the data root)" >&2; exit 1; }
rm -rf .gpu_data
mkdir -p .gpu_data
cp -r "$root/mnist" .gpu_data/mnist
du -sh .whl .gpu_data
echo "carry: [\".whl\", \".gpu_data\"]"

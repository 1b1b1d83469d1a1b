#!/usr/bin/env bash
# Fetch, into .whl/, the wheels that the course's plain-Python run needs on a GPU machine that has PyTorch,
# matplotlib, scipy, scikit-learn and tqdm but no Jupyter and no network (Python 3.12, x86-64 Linux), and copy
# MNIST into data/mnist (ignored by git). Run it here, where pip reaches the registry; then carry .whl and data
# to the device and run tools/device_full_run.sh there.
#
#   bash tools/device_wheels.sh [MNIST_DIR]        # MNIST_DIR defaults to $DGM_DATA_DIR, else ../shared/data/mnist
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${DEVICE_PYTHON_VERSION:-3.12}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# ipywidgets and IPython (the widgets module imports them), nbformat (the runner reads notebooks), and what each
# of them needs that the device lacks; one version of each.
PACKAGES=(ipywidgets widgetsnbextension jupyterlab_widgets comm traitlets
          ipython ipython_pygments_lexers decorator jedi parso matplotlib-inline pexpect ptyprocess prompt_toolkit
          wcwidth stack_data executing asttokens pure_eval
          nbformat fastjsonschema jsonschema jsonschema-specifications referencing rpds-py jupyter_core platformdirs)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    "${PLATFORMS[@]}" -d .whl "${PACKAGES[@]}"
src=${1:-${DGM_DATA_DIR:-../shared/data/mnist}}
mkdir -p data/mnist && cp "$src"/* data/mnist/
echo "$(ls .whl | wc -l) wheels in .whl ($(du -sh .whl | cut -f1)); MNIST in data/mnist ($(du -sh data/mnist | cut -f1))"

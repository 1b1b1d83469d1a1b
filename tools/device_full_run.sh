#!/usr/bin/env bash
# Run lectures headless on a lent GPU machine, as plain Python (no Jupyter there), several at once, and leave the
# results where they come back: $OUT/results/*.json, $OUT/logs/*.log and $OUT/table.md (the runner's table).
# Prepare with tools/device_wheels.sh and carry .whl and data. Interrupting it (or its time limit) loses nothing
# already finished: each lecture's results are written when it ends.
#
#   bash tools/device_full_run.sh [--mode full] [LECTURE ...]      # default: every lecture, full mode
#   JOBS=8 SECONDS_LIMIT=540 bash tools/device_full_run.sh 02 03 15
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} DGM_DATA_DIR=${DGM_DATA_DIR:-$PWD/data/mnist} TQDM_DISABLE=1
out=${OUT:-device-run}
mkdir -p "$out"
mode=full
if [ "${1:-}" = "--mode" ]; then mode=$2; shift 2; fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
timeout "${SECONDS_LIMIT:-560}" python3 -m dgm_course.run --plain --mode "$mode" --cold --force \
    --jobs "${JOBS:-15}" --results "$out/results" --out "$out/logs" "$@" | tee "$out/table.md"
status=${PIPESTATUS[0]}
ls "$out/results" 2> /dev/null
exit "$status"

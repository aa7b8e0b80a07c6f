#!/usr/bin/env bash
# One device call, run from the repository root (results/device/README.md has the calls it made):
# the label-efficiency runs and the beyond-the-exam runs, LANES at a time on one GPU,
# each a self-contained line of `contrastive.sh --list` / `beyond.sh --list`. At DEADLINE seconds the
# queue is stopped; only runs that finished and were evaluated are in results/, packed into $OUT.
set -u
START=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3} AVDIGITS_CACHE=/tmp/avcache MPLBACKEND=Agg OMP_NUM_THREADS=1
DEADLINE=${DEADLINE:-530}
LANES=${LANES:-14}
OUT=${OUT:-/tmp/out}
DATA=(${DATA:---data avdigits --data-root .devrun/data})
LOGS=/tmp/lanes; rm -rf "$LOGS"; mkdir -p "$LOGS" "$OUT"
{ nvidia-smi -L; nproc --all; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  git rev-parse HEAD 2>/dev/null || echo "no git"; } 2>&1 | tee "$LOGS/machine.txt"
"$PYTHON" - "${DATA[@]}" <<'PY' 2>&1 | tee -a "$LOGS/machine.txt"
import argparse, sys, time
from common.data.sources import add_data_flags, dataset_from_args
p = argparse.ArgumentParser(); add_data_flags(p)
t = time.time(); d = dataset_from_args(p.parse_known_args(sys.argv[1:])[0])
print("dataset", d.name, d.fingerprint[:12], f"built in {time.time() - t:.1f}s")
PY
if [[ -n "${BASELINE:-}" ]]; then  # the exam's models on this device, beside the beyond runs
    scripts/reproduce.sh --list --seeds "0 1 2" --models "image audio concat late" --runs-dir runs/gpu-baseline \
        --results results/gpu-baseline -- "${DATA[@]}" > "$LOGS/plan.txt"
else
# longest first: full-data runs (F = 1, then the beyond variants), then the small label fractions
contrastive=$(scripts/contrastive.sh --list -- "${DATA[@]}" | grep -v -- '--models contrastive')
{ grep -E -- '--tag f1(-pre)? ' <<< "$contrastive"
  scripts/beyond.sh --list -- "${DATA[@]}"
  grep -v -E -- '--tag f1(-pre)? ' <<< "$contrastive"; } > "$LOGS/plan.txt"
fi
wc -l "$LOGS/plan.txt"
( while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null \
    | sed "s/^/$(( $(date +%s) - START ))s /"; done >> "$LOGS/gpu.txt" ) &
MONITOR=$!
xargs -d '\n' -P "$LANES" -I{} bash -c '{} > '"$LOGS"'/run-$$.log 2>&1' < "$LOGS/plan.txt" &
QUEUE=$!
while kill -0 "$QUEUE" 2>/dev/null && (( $(date +%s) - START < DEADLINE )); do sleep 5; done
if kill -0 "$QUEUE" 2>/dev/null; then
    echo "deadline after $(( $(date +%s) - START ))s: stopping the queue and the runs in progress"
    kill "$QUEUE"; pkill -TERM -f 'train_(multimodal|audio)\.py'; pkill -TERM -f evaluate.py; sleep 8
fi
kill "$MONITOR" 2>/dev/null
grep -h "== kept" "$LOGS"/run-*.log | sort
tar czf "$OUT/results.tgz" results/beyond results/contrastive $(ls -d results/gpu-baseline 2>/dev/null)
tar czf "$OUT/logs.tgz" -C /tmp lanes
echo "done after $(( $(date +%s) - START ))s"

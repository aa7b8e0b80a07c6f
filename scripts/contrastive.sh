#!/usr/bin/env bash
# Problem 2 in training: the temperature sweep of both losses, then label efficiency from its best checkpoint.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/contrastive.sh [--runs-dir runs/contrastive] [--results results/contrastive] [--list]
                             [-- EXTRA...]

1. The sweep (seed 0): train_contrastive.py with NT-Xent and NT-Log at
   tau = 0.03, 0.1, 0.3, 1, 3, one --learn-tau run per loss (from tau = 0.1) and one
   NT-Log run with a learned tau and bias (SigLIP's form): 13 runs named
   contrastive-LOSS-tTAU-s0 / contrastive-LOSS-learn-s0 / contrastive-nt_log-learn-bias-s0.
   All share one budget: batch 128, SWEEP_EPOCHS epochs (default 10) with no early
   stopping (best.pt: the epoch of lowest validation loss), about an hour for the 13
   runs alone on 2 CPU cores. No early stopping, because these losses sit on a plateau
   near chance for the first epochs: with patience 3, runs at tau = 0.1 and 0.3 stopped
   at epoch 4-5 before leaving it, while tau = 0.03 left it at epoch 5.
2. The best of them: the highest validation accuracy of a linear probe on both frozen
   featurizers (the validation pairs, never the test split, choose it).
3. Label efficiency: concat fusion on a class-balanced share F of the labelled training
   pairs, from scratch and with both featurizers from that checkpoint (--init-from):
   F = 0.01 and 0.1 for seeds 0, 1, 2, and F = 1 for seed 0 (14 runs, named
   multimodal-concat-fF-sS and multimodal-concat-fF-pre-sS), each evaluated by evaluate.py.
   Each validates after at least 1,400 training pairs (--epoch-pairs 1400: ten passes per
   epoch at F = 0.01), so that early stopping's patience is about the same number of steps
   at every F below 1.
   If the chosen checkpoint is gone (a fresh machine: checkpoints are never kept) while a
   pre-trained run is still to do, that sweep run is trained again with its saved flags.

scripts/reproduce.sh does the work (its rules for skipping, resuming and keeping runs
apply); then python report.py RESULTS prints both tables and writes both figures.
--list prints one self-contained command per run instead (for xargs -P N) and exits: the
sweep's, then label efficiency's. Label efficiency needs the sweep finished and kept, and the
chosen checkpoint in place, so --list lists its runs only then.
EXTRA goes to every training script (e.g. -- --data avdigits --data-root ../shared/data).

environment:
  PYTHON                interpreter to use (default: python)
  SWEEP_EPOCHS          the sweep's epoch budget, every run trains all of it (default: 10)
EOF
}

RUNS_DIR="runs/contrastive"
RESULTS="results/contrastive"
LIST=()
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs-dir) [[ $# -ge 2 ]] || { echo "error: --runs-dir needs a value" >&2; exit 2; }
                    RUNS_DIR="$2"; shift 2 ;;
        --results) [[ $# -ge 2 ]] || { echo "error: --results needs a value" >&2; exit 2; }
                   RESULTS="$2"; shift 2 ;;
        --list) LIST=(--list); shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "error: unknown argument $1 (flags for the training scripts go after --)" >&2
           usage >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-python}"
REPRODUCE="$(dirname "${BASH_SOURCE[0]}")/reproduce.sh"
SWEEP=(--batch-size 128 --max-epochs "${SWEEP_EPOCHS:-10}" --patience "${SWEEP_EPOCHS:-10}")  # no early stop

SWEEP_LEFT=0  # sweep runs not kept in RESULTS yet
sweep_run() {  # sweep_run TAG FLAGS...
    local tag="$1"
    shift
    [[ -f "$RESULTS/contrastive-$tag-s0/metrics.json" ]] || SWEEP_LEFT=$((SWEEP_LEFT + 1))
    "$REPRODUCE" --seeds 0 --models contrastive --tag "$tag" --runs-dir "$RUNS_DIR" --results "$RESULTS" \
        --no-report ${LIST[@]+"${LIST[@]}"} -- "${SWEEP[@]}" "$@" ${EXTRA[@]+"${EXTRA[@]}"}
}
for loss in nt_xent nt_log; do
    for tau in 0.03 0.1 0.3 1 3; do
        sweep_run "$loss-t$tau" --loss "$loss" --tau "$tau"
    done
    sweep_run "$loss-learn" --loss "$loss" --tau 0.1 --learn-tau
done
sweep_run nt_log-learn-bias --loss nt_log --tau 0.1 --learn-tau --learn-bias

if [[ ${#LIST[@]} -gt 0 && $SWEEP_LEFT -gt 0 ]]; then
    echo "note: $SWEEP_LEFT sweep runs are not kept in $RESULTS yet; label efficiency is listed once they are" >&2
    exit 0
fi

# the sweep's best run, by validation probe accuracy on both featurizers
best=$("$PY" - "$RESULTS" <<'PY'
import glob, json, os, sys
scores = {}
for path in glob.glob(os.path.join(sys.argv[1], "contrastive-*-s0", "metrics.json")):
    with open(path) as f:
        scores[os.path.basename(os.path.dirname(path))] = json.load(f)["val"]["probe"]["both"]
if not scores:
    sys.exit("error: no finished contrastive run in " + sys.argv[1])
print(max(sorted(scores), key=scores.get))
PY
)
line="== best contrastive run (validation probe accuracy, both featurizers): $best"
if [[ ${#LIST[@]} -gt 0 ]]; then echo "$line" >&2; else echo "$line"; fi  # --list: stdout holds commands only
checkpoint="$RUNS_DIR/$best/checkpoints/best.pt"
pre_trained_left() {  # true while some pre-trained label-efficiency run is not kept yet
    local seed fraction
    for seed in 0 1 2; do
        for fraction in 0.01 0.1; do
            [[ -f "$RESULTS/multimodal-concat-f$fraction-pre-s$seed/metrics.json" ]] || return 0
        done
    done
    [[ ! -f "$RESULTS/multimodal-concat-f1-pre-s0/metrics.json" ]]
}
if [[ ! -f "$checkpoint" ]] && pre_trained_left; then
    if [[ ${#LIST[@]} -gt 0 ]]; then
        echo "error: --list: $checkpoint is gone; run scripts/contrastive.sh once without --list to train it again" >&2
        exit 1
    fi
    if [[ -e "$RUNS_DIR/$best" ]]; then
        echo "error: $RUNS_DIR/$best has no checkpoints/best.pt; remove that folder to train $best again" >&2
        exit 1
    fi
    # kept in RESULTS, but checkpoints are never kept: train it again, with its saved flags
    echo "== $checkpoint is gone (checkpoints are never kept): training $best again"
    tag="${best#contrastive-}"
    tag="${tag%-s0}"
    saved=$("$PY" -c 'import json, sys
a = json.load(open(sys.argv[1]))["args"]
print("--loss"); print(a["loss"]); print("--tau"); print(a["tau"])
for flag in ("learn_tau", "learn_bias"):
    if a.get(flag): print("--" + flag.replace("_", "-"))' "$RESULTS/$best/config.json")
    flags=()
    while IFS= read -r line; do flags+=("$line"); done <<< "$saved"
    "$REPRODUCE" --seeds 0 --models contrastive --tag "$tag" --runs-dir "$RUNS_DIR" --no-report -- \
        "${SWEEP[@]}" "${flags[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
fi

# Every label-efficiency run validates after at least EPOCH_PAIRS training pairs (--epoch-pairs), so
# that early stopping's patience is a comparable number of steps: one pass at F = 0.1 (about 1,405
# pairs) and at F = 1, ten passes at F = 0.01 (about 142 pairs). With one pass per epoch, F = 0.01 had
# 3 steps an epoch and patience 5 stopped it after 18 steps, at chance.
EPOCH_PAIRS=1400
efficiency_run() {  # efficiency_run SEED F: from scratch, then with both featurizers from the checkpoint
    local seed="$1" fraction="$2" tag init
    for tag in "f$fraction" "f$fraction-pre"; do
        init=()
        [[ "$tag" == *-pre ]] && init=(--init-from "$checkpoint")
        "$REPRODUCE" --seeds "$seed" --models concat --tag "$tag" --runs-dir "$RUNS_DIR" --results "$RESULTS" \
            --no-report ${LIST[@]+"${LIST[@]}"} -- --label-fraction "$fraction" --epoch-pairs "$EPOCH_PAIRS" \
            ${init[@]+"${init[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}
    done
}
for seed in 0 1 2; do
    efficiency_run "$seed" 0.01
    efficiency_run "$seed" 0.1
done
efficiency_run 0 1

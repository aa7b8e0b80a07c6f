#!/usr/bin/env bash
# Problem 2 in training: contrastive pre-training of both featurizers, then what it is worth with few labels.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/contrastive.sh [--study v2|v1] [--runs-dir DIR] [--results DIR] [--list] [-- EXTRA...]

--study v2 (the default): the second recipe, in runs/contrastive2, kept in results/contrastive2.
  Every run: batch 256, the mlp-bn projection head (BatchNorm, L2-normalised projections),
  featurizer dropout 0.1, AdamW 1e-3 with weight decay 1e-4 on weight matrices, one warm-up
  epoch then cosine decay over V2_EPOCHS epochs (default 24, no early stopping), view
  augmentation (--augment views), best.pt = the epoch of highest validation digit@1.
  1. The floors: evaluate_contrastive.py raw and random (RESULTS/floor-raw, floor-random).
  2. The runs, named contrastive-TAG-sS:
     nt_xent        NT-Xent, tau 0.1, seeds 0, 1, 2
     nt_log         NT-Log in SigLIP's form: learned tau from 0.1 and learned bias from
                    -ln(B - 1) = -ln 255, both at lr 1e-2 in their own group; seeds 0, 1, 2
     nt_xent-noaug  NT-Xent without the augmentation (seed 0): what it buys
     nt_log-b-10    NT-Log with the bias from SigLIP's -10 (seed 0)
     nt_xent-t0.05, nt_xent-t0.2   the temperature sweep around 0.1 (seed 0)
     nt_xent-mel, nt_log-mel       both losses with the log-mel audio front-end (seed 0)
     nt_xent-e48    NT-Xent over 48 epochs instead of 24 (seed 0): is the budget the limit?
  Each finished run is measured by evaluate_contrastive.py (probes.json: frozen linear probes at
  F = 0.01, 0.1, 1 of the labels, label seeds 0-2, selected on a validation subset no larger than
  the budget; test retrieval by noise regime) and kept. Last, contrastive-nt_xent-s0 and
  contrastive-nt_log-s0 are also fine-tuned (--finetune: linear probe, then fine-tuning at
  F = 0.01 and 0.1), as the random-init floor is, and kept again.
  About 7 minutes a run (24 epochs) on this project's 2-core CPU alone, 25 for a mel run (62-65 s an
  epoch), about 2 hours 15 minutes for the thirteen.

--study v1: the first recipe, kept as the record in results/contrastive: the temperature sweep
  of both losses (13 runs, batch 128, SWEEP_EPOCHS epochs, default 10), then label efficiency of
  concat fusion fine-tuned from the best of them (14 runs); docs/notes/contrastive.md says what is wrong
  with it.

scripts/reproduce.sh does the work (its rules for skipping, resuming and keeping runs apply);
then python report.py RESULTS prints the tables. --list prints one self-contained command per
run instead (for xargs -P N) and exits; in v2 the floors come first, as commands of their own.
EXTRA goes to every training script (e.g. -- --data avdigits --data-root ../shared/data).

environment:
  PYTHON                interpreter to use (default: python)
  V2_EPOCHS             the second recipe's epoch budget (default: 24)
  SWEEP_EPOCHS          the first recipe's epoch budget (default: 10)
EOF
}

STUDY="v2"
RUNS_DIR=""
RESULTS=""
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/lib.sh"
parse_flags "--study --runs-dir --results" "--list" "$@"
[[ "$STUDY" == v1 || "$STUDY" == v2 ]] || { echo "error: --study must be v1 or v2, got $STUDY" >&2; exit 2; }

PY="${PYTHON:-python}"
REPRODUCE="$(dirname "${BASH_SOURCE[0]}")/reproduce.sh"

if [[ $STUDY == v2 ]]; then
    RUNS_DIR="${RUNS_DIR:-runs/contrastive2}"
    RESULTS="${RESULTS:-results/contrastive2}"
    V2=(--recipe contrastive-v2 ${V2_EPOCHS:+--max-epochs "$V2_EPOCHS" --patience "$V2_EPOCHS"})  # common/flags.py
    XENT=(--recipe nt-xent)
    LOG=(--recipe nt-log)
    floor raw "$RESULTS/floor-raw/probes.json"
    floor random "$RESULTS/floor-random/probes.json" --finetune  # the tuned from-scratch baseline of fine-tuning
    v2_run() {  # v2_run TAG "SEEDS" FLAGS...
        local tag="$1" seeds="$2"
        shift 2
        "$REPRODUCE" --seeds "$seeds" --models contrastive --tag "$tag" --runs-dir "$RUNS_DIR" --results "$RESULTS" \
            --no-report ${LIST:+"$LIST"} -- "${V2[@]}" "$@" ${EXTRA[@]+"${EXTRA[@]}"}
    }
    v2_run nt_xent "0" "${XENT[@]}"
    v2_run nt_log "0" "${LOG[@]}"
    v2_run nt_xent-noaug "0" "${XENT[@]}" --augment none
    v2_run nt_xent "1 2" "${XENT[@]}"
    v2_run nt_log "1 2" "${LOG[@]}"
    v2_run nt_log-b-10 "0" "${LOG[@]}" --bias-init -10
    v2_run nt_xent-t0.05 "0" "${XENT[@]}" --tau 0.05
    v2_run nt_xent-t0.2 "0" "${XENT[@]}" --tau 0.2
    v2_run nt_xent-mel "0" "${XENT[@]}" --recipe mel
    v2_run nt_log-mel "0" "${LOG[@]}" --recipe mel
    v2_run nt_xent-e48 "0" "${XENT[@]}" --max-epochs 48 --patience 48
    # linear probe, then fine-tuning, for the first run of each loss (the random-init floor has its own above)
    for name in contrastive-nt_xent-s0 contrastive-nt_log-s0; do
        [[ -z $LIST ]] || continue
        if "$PY" "$ROOT/scripts/runs.py" has "$RESULTS/$name/probes.json" finetune; then
            echo "== skip fine-tuning $name: kept with it"
        elif [[ -f "$RUNS_DIR/$name/checkpoints/best.pt" ]]; then
            echo "== fine-tune $name"
            "$PY" "$ROOT/evaluate_contrastive.py" "$RUNS_DIR/$name" --finetune && \
                cp "$RUNS_DIR/$name/probes.json" "$RESULTS/$name/probes.json"
        else
            echo "warning: $name has no checkpoint here (checkpoints are never kept): train it again to fine-tune" >&2
        fi
    done
    exit 0
fi

# ---------------------------------------------------------------- the first recipe (--study v1)
RUNS_DIR="${RUNS_DIR:-runs/contrastive}"
RESULTS="${RESULTS:-results/contrastive}"
SWEEP=(--recipe contrastive-v1 ${SWEEP_EPOCHS:+--max-epochs "$SWEEP_EPOCHS" --patience "$SWEEP_EPOCHS"})  # no early stop

SWEEP_LEFT=0  # sweep runs not kept in RESULTS yet
sweep_run() {  # sweep_run TAG FLAGS...
    local tag="$1"
    shift
    [[ -f "$RESULTS/contrastive-$tag-s0/metrics.json" ]] || SWEEP_LEFT=$((SWEEP_LEFT + 1))
    "$REPRODUCE" --seeds 0 --models contrastive --tag "$tag" --runs-dir "$RUNS_DIR" --results "$RESULTS" \
        --no-report ${LIST:+"$LIST"} -- "${SWEEP[@]}" "$@" ${EXTRA[@]+"${EXTRA[@]}"}
}
for loss in nt_xent nt_log; do
    for tau in 0.03 0.1 0.3 1 3; do
        sweep_run "$loss-t$tau" --loss "$loss" --tau "$tau"
    done
    sweep_run "$loss-learn" --loss "$loss" --tau 0.1 --learn-tau
done
sweep_run nt_log-learn-bias --loss nt_log --tau 0.1 --learn-tau --learn-bias

if [[ -n $LIST && $SWEEP_LEFT -gt 0 ]]; then
    echo "note: $SWEEP_LEFT sweep runs are not kept in $RESULTS yet; label efficiency is listed once they are" >&2
    exit 0
fi

# the sweep's best run, by validation probe accuracy on both featurizers
best=$("$PY" "$ROOT/scripts/runs.py" best "$RESULTS" 'contrastive-*-s0' val.probe.both)
line="== best contrastive run (validation probe accuracy, both featurizers): $best"
if [[ -n $LIST ]]; then echo "$line" >&2; else echo "$line"; fi  # --list: stdout holds commands only
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
    if [[ -n $LIST ]]; then
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
    saved=$("$PY" "$ROOT/scripts/runs.py" flags "$RESULTS/$best" loss tau learn_tau learn_bias)
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
            --no-report ${LIST:+"$LIST"} -- --label-fraction "$fraction" --epoch-pairs "$EPOCH_PAIRS" \
            ${init[@]+"${init[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}
    done
}
for seed in 0 1 2; do
    efficiency_run "$seed" 0.01
    efficiency_run "$seed" 0.1
done
efficiency_run 0 1

#!/usr/bin/env bash
# The fusion map on unheard voices: leave-one-speaker-out with a validation speaker, every run with evaluate.py --grid.
set -euo pipefail

usage() {
    cat <<'EOF_USAGE'
usage: scripts/fusionmap.sh [--seeds "0"] [--speakers "george jackson lucas nicolas theo yweweler"]
                           [--runs-dir runs/fusionmap] [--results results/fusionmap] [--list] [-- EXTRA...]

One fold per test speaker NAME: --holdout-speaker NAME (every take of NAME out of training, the test
pairs NAME's alone) and --val-speaker NEXT, the next of FSDD's six speakers in alphabetical order
(george -> jackson -> ... -> yweweler -> george): NEXT's recordings make the validation pairs and no
training pair, so early stopping and best.pt are chosen on an unheard voice too. In each fold, once
per seed, nine runs and their fusion, each evaluated with evaluate.py --grid (scripts/reproduce.sh does the work;
its rules for skipping, resuming and keeping apply):

  image-fm-NAME-sS                                image only (its pairs change with the fold's draws)
  audio-fm-mel-lean-db40-NAME-sS                  audio only, --recipe mel-lean --recipe db40
  audio-fm-mel-lean-db40-speed0.15-NAME-sS        ... and --recipe speed
  multimodal-concat-fm-NAME-sS                    concat, raw waveform (the exam's network)
  multimodal-concat-fm-mel-lean-db40-NAME-sS      concat, --recipe mel-lean --recipe db40
  multimodal-concat-fm-mel-lean-db40-mdrop0.3-NAME-sS  ... and --recipe mdrop
  multimodal-concat-fm-mel-lean-db40-mdrop0.3-speed0.15-NAME-sS  ... and --recipe speed (is the fused
                                                  network's audio branch as good as the speed audio-only run?)
  multimodal-late-fm-mel-lean-db40-NAME-sS        late fusion, --recipe mel-lean --recipe db40
  multimodal-late-fm-mel-lean-db40-cal-NAME-sS    ... and --calibrate (per-head temperatures fitted on NEXT)
  experts-fm-NAME-sS                              combine.py: the image-only run and the speed-perturbed
                                                  audio-only run as late fusion's heads, temperatures fitted
                                                  on NEXT, a missing view left out
  experts-confidence-fm-NAME-sS                   ... with --gate confidence: each head weighed pair by pair
                                                  by its own entropy, fitted on NEXT's pairs re-noised

Then the fold's floors: evaluate_contrastive.py raw (logistic regressions on the raw pixels, a log-mel
summary and both, all labels) on the same build, into RESULTS/floor-raw-NAME/probes.json. Fold by
fold, so that a stopped session leaves whole folds. --list prints one self-contained command
per run instead and exits. EXTRA goes to every training script (e.g. -- --data avdigits
--data-root ../shared/data).

environment:
  PYTHON                interpreter to use (default: python)
EOF_USAGE
}

SEEDS="0"
RUNS_DIR="runs/fusionmap"
RESULTS="results/fusionmap"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SPEAKERS="${FSDD_SPEAKERS[*]}"
parse_flags "--seeds --speakers --runs-dir --results" "--list" "$@"
GRID=--grid
[[ -n "${SEEDS// /}" ]] || { echo "error: --seeds is empty" >&2; exit 2; }
check_speakers fsdd  # the rotation is FSDD's

next_speaker() {  # the validation speaker of a fold: the next of FSDD's six, round the end
    local i n=${#FSDD_SPEAKERS[@]}
    for i in "${!FSDD_SPEAKERS[@]}"; do
        [[ ${FSDD_SPEAKERS[$i]} == "$1" ]] && { echo "${FSDD_SPEAKERS[$(( (i + 1) % n ))]}"; return 0; }
    done
}

PY="${PYTHON:-python}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT=()  # combine.py rebuilds the runs' data: where it lives, if EXTRA says
for ((i = 0; i < ${#EXTRA[@]}; i++)); do [[ ${EXTRA[$i]} == --data-root ]] && DATA_ROOT=(--data-root "${EXTRA[$((i + 1))]-}"); done

# experts SEED NAME [GATE]: combine.py on the fold's image-only run and its audio-only run with speed perturbation
# (the better audio-only run on validation at every fold so far), with --gate GATE (default: temperature),
# evaluate.py --grid, kept like the others
experts() {
    local gate="${3:-temperature}" name="experts-fm-$2-s$1"
    [[ $gate == temperature ]] || name="experts-$gate-fm-$2-s$1"
    local image="$RUNS_DIR/image-fm-$2-s$1" audio="$RUNS_DIR/audio-fm-mel-lean-db40-speed0.15-$2-s$1"
    local combine=("$PY" "$ROOT/combine.py" "$image" "$audio" --name "$name" --runs-dir "$RUNS_DIR" ${DATA_ROOT[@]+"${DATA_ROOT[@]}"})
    [[ $gate == temperature ]] || combine+=(--gate "$gate")
    local evaluate=("$PY" "$ROOT/evaluate.py" "$RUNS_DIR/$name" --grid ${DATA_ROOT[@]+"${DATA_ROOT[@]}"})
    if [[ -f "$RESULTS/$name/metrics.json" ]]; then
        [[ -n $LIST ]] || echo "== skip $name: kept in $RESULTS/$name"
        return 0
    elif [[ -n $LIST ]]; then
        echo "$(list_line "${combine[@]}") && $(list_line "${evaluate[@]}")"
        return 0
    elif [[ ! -f "$image/checkpoints/best.pt" || ! -f "$audio/checkpoints/best.pt" ]]; then
        echo "warning: $name needs $image and $audio with their checkpoints; not combined" >&2
        return 0
    fi
    echo "== combine $name"
    [[ -f "$RUNS_DIR/$name/metrics.json" ]] || "${combine[@]}"
    [[ -f "$RUNS_DIR/$name/robustness.json" ]] || "${evaluate[@]}"
    mkdir -p "$RESULTS/$name"
    cp "$RUNS_DIR/$name/"{config.json,predictions_test.csv,robustness.json} "$RESULTS/$name/"
    cp "$RUNS_DIR/$name/metrics.json" "$RESULTS/$name/metrics.json"  # last: it marks the kept run done
    echo "== kept $name in $RESULTS/$name"
}

LEAN=(--recipe mel-lean --recipe db40)
for speaker in $SPEAKERS; do
    fold=(--holdout-speaker "$speaker" --val-speaker "$(next_speaker "$speaker")")
    for seed in $SEEDS; do
        variant "$seed" "image concat" "fm-$speaker" "${fold[@]}"
        variant "$seed" audio "fm-mel-lean-db40-$speaker" "${LEAN[@]}" "${fold[@]}"
        variant "$seed" "concat late" "fm-mel-lean-db40-$speaker" "${LEAN[@]}" "${fold[@]}"
        variant "$seed" concat "fm-mel-lean-db40-mdrop0.3-$speaker" "${LEAN[@]}" --recipe mdrop "${fold[@]}"
        variant "$seed" audio "fm-mel-lean-db40-speed0.15-$speaker" "${LEAN[@]}" --recipe speed "${fold[@]}"
        variant "$seed" concat "fm-mel-lean-db40-mdrop0.3-speed0.15-$speaker" "${LEAN[@]}" --recipe mdrop --recipe speed \
            "${fold[@]}"
        # the fusion meant never to hurt: late fusion's heads with temperatures fitted on the validation voice
        variant "$seed" late "fm-mel-lean-db40-cal-$speaker" "${LEAN[@]}" --calibrate "${fold[@]}"
        experts "$seed" "$speaker"  # ... and the dedicated single-view runs fused (combine.py)
        experts "$seed" "$speaker" confidence  # ... weighed pair by pair by each one's confidence
    done
    floor raw "$RESULTS/floor-raw-$speaker/probes.json" "${fold[@]}" --fractions 1 --label-seeds 0  # the fold's floors
done

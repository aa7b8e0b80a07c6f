#!/usr/bin/env bash
# Rebuild the study table: every model and fusion, for every seed, then report.py.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/reproduce.sh [--seeds "0"] [--models "image audio concat ..."] [--runs-dir runs/study]
                           [--tag TAG] [--results DIR] [--grid] [--list] [--no-report] [-- EXTRA...]

Trains image-only, audio-only and the multimodal network with every fusion,
once per seed, into RUNS_DIR/NAME (NAME = image-sS, audio-sS,
multimodal-FUSION-sS); right after each training, while its checkpoint
exists, evaluate.py measures its robustness (RUNS_DIR/NAME/robustness.json).
Then it writes RUNS_DIR/results.md with report.py and prints it.

A run whose folder already has metrics.json is skipped (if its config.json says it
was trained with the flags asked now, runtime ones like --max-epochs and --data-root
aside; else the script stops: give the variant its own --tag); one with
checkpoints/last.pt but no metrics.json is continued with --resume; a run
with no folder starts fresh; a folder with neither stops the script (remove
it to start that run again). A finished run without robustness.json is
evaluated; a run evaluate.py cannot measure (course data) gets a warning.
So the script can be stopped (Ctrl-C) and started again with the same
arguments.

options:
  --seeds "S1 S2 ..."   seeds to run (default: "0")
  --models "M1 M2 ..."  image, audio and fusion names (default: all = image, audio and all ten fusions),
                        or contrastive (train_contrastive.py, measured by evaluate_contrastive.py)
  --runs-dir DIR        folder for the run folders (default: runs/study)
  --tag TAG             name the runs NAME-TAG-sS (e.g. multimodal-concat-mel-s0): variants
                        trained with extra flags after -- keep their own folders
  --results DIR         keep each finished, evaluated run's config.json, metrics.json,
                        predictions_test.csv, robustness.json, probes.json and figures/curves.png in
                        DIR/NAME/ (never checkpoints or events), and skip any run whose
                        DIR/NAME/metrics.json exists: a fresh clone carries on from DIR
  --grid                evaluate each classifier with evaluate.py --grid too (the fusion map); a run
                        kept or evaluated without it is measured again
  --list                print the study as one self-contained command per run (for
                        xargs -P N or a Slurm job array) and exit
  --no-report           do not run report.py at the end
  -h, --help            show this help and exit
  -- EXTRA...           flags passed to every training script, e.g.
                        -- --data avdigits --data-root ../shared/data --limit 512 --max-epochs 1

environment:
  PYTHON                interpreter to use (default: python)
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"  # scripts are called by path; user paths stay relative to here
. "$ROOT/scripts/lib.sh"
SEEDS="0"
RUNS_DIR="runs/study"
MODELS="all"
RESULTS=""
TAG=""
parse_flags "--seeds --models --runs-dir --results --tag" "--list --no-report --grid" "$@"
PY="${PYTHON:-python}"
STUDY_MODELS="$("$PY" "$ROOT/scripts/runs.py" models)" || { echo "error: $PY cannot list the study's models" >&2; exit 2; }
[[ $MODELS != all ]] || MODELS="$STUDY_MODELS"
[[ -n "${SEEDS// /}" ]] || { echo "error: --seeds is empty" >&2; exit 2; }
[[ -n "${MODELS// /}" ]] || { echo "error: --models is empty" >&2; exit 2; }
[[ -n "$RUNS_DIR" ]] || { echo "error: --runs-dir is empty" >&2; exit 2; }
for word in ${EXTRA[@]+"${EXTRA[@]}"}; do  # the flags this script sets for each run are its own
    case "${word%%=*}" in
        --seed|--name|--runs-dir|--resume)
            echo "error: ${word%%=*} after -- would override what scripts/reproduce.sh sets for each run" \
                 "(use --seeds, --runs-dir, --tag)" >&2; exit 2 ;;
    esac
done
[[ -z "$TAG" || "$TAG" =~ ^[A-Za-z0-9._]+(-[A-Za-z0-9._]+)*$ ]] || \
    { echo "error: --tag $TAG: use letters, digits, '.', '_' and inner '-'" >&2; exit 2; }
for model in $MODELS; do
    case " $STUDY_MODELS contrastive " in
        *" $model "*) ;;
        *) echo "error: unknown model $model in --models (image, audio, contrastive or a fusion name)" >&2; exit 2 ;;
    esac
done

if [[ -n $LIST ]]; then  # one line per run: this script for that one run, without the final report
    for seed in $SEEDS; do
        for model in $MODELS; do
            line=("${BASH_SOURCE[0]}" --seeds "$seed" --models "$model" --runs-dir "$RUNS_DIR")
            [[ -n "$TAG" ]] && line+=(--tag "$TAG")
            [[ -n "$RESULTS" ]] && line+=(--results "$RESULTS")
            [[ -n "$GRID" ]] && line+=(--grid)
            line+=(--no-report)
            [[ ${#EXTRA[@]} -gt 0 ]] && line+=(-- "${EXTRA[@]}")
            list_line "${line[@]}"
        done
    done
    exit 0
fi

KEPT_FILES="config.json metrics.json predictions_test.csv robustness.json probes.json figures/curves.png figures/similarity_test.png"

# kept NAME: true when the results folder already holds this run (so nothing is trained or evaluated)
kept() {  # every file of the kept set is there and readable: a classifier's robustness.json too
    [[ -n "$RESULTS" && -f "$RESULTS/$1/metrics.json" ]] || return 1
    local files=(metrics.json config.json)
    [[ $1 == contrastive* ]] || files+=(robustness.json)
    "$PY" "$ROOT/scripts/runs.py" kept "$RESULTS/$1" "${files[@]}" || return 1
    [[ -z "$GRID" || $1 == contrastive* ]] || "$PY" "$ROOT/scripts/runs.py" has "$RESULTS/$1/robustness.json" grid
}

# keep NAME: copy a finished, evaluated run's kept files to RESULTS/NAME (metrics.json last: it marks "done");
# a contrastive run has no robustness.json to wait for
keep() {
    local name="$1" dir="$RUNS_DIR/$1"
    [[ -n "$RESULTS" ]] || return 0
    if [[ ! -f "$dir/metrics.json" || ( ! -f "$dir/robustness.json" && $name != contrastive* ) ]]; then
        echo "warning: $name is not finished and evaluated; nothing kept" >&2
        return 0
    fi
    local tmp
    tmp="$(mktemp -d "${RESULTS%/}.tmp-XXXXXX" 2>/dev/null || mktemp -d)"
    for f in $KEPT_FILES; do
        if [[ -f "$dir/$f" ]]; then
            mkdir -p "$tmp/$(dirname "$f")"
            cp "$dir/$f" "$tmp/$f"
        fi
    done
    mkdir -p "$RESULTS/$name/figures"
    for f in $KEPT_FILES; do
        [[ "$f" == metrics.json || ! -f "$tmp/$f" ]] || mv "$tmp/$f" "$RESULTS/$name/$f"
    done
    mv "$tmp/metrics.json" "$RESULTS/$name/metrics.json"
    rm -rf "$tmp"
    echo "== kept $name in $RESULTS/$name"
}

# same_flags RUN_DIR FLAGS...: a finished or kept run is skipped only if it trained what is asked now
# (FLAGS and EXTRA; the runtime flags aside): else the run folder's name is taken by another variant
same_flags() {
    local dir="$1"
    shift
    local rc=0
    "$PY" "$ROOT/scripts/runs.py" same "$dir" "$@" ${EXTRA[@]+"${EXTRA[@]}"} || rc=$?
    [[ $rc == 0 ]] && return 0
    if [[ $rc == 1 ]]; then
        echo "error: $dir holds a run with other flags under the name asked for; give this variant its own --tag" >&2
    else
        echo "error: cannot tell which flags $dir was trained with (see above); move it away or mend it" >&2
    fi
    exit 1
}

# train SCRIPT NAME [FLAGS...]: run one training script unless its run is already finished.
train() {
    local script="$1" name="$2"
    shift 2
    local dir="$RUNS_DIR/$name"
    local cmd=("$PY" "$ROOT/$script" --runs-dir "$RUNS_DIR" --name "$name" "$@" ${EXTRA[@]+"${EXTRA[@]}"})
    if [[ -f "$dir/metrics.json" ]]; then
        same_flags "$dir" "$@"
        echo "== skip $name: already finished ($dir/metrics.json)"
    elif [[ -f "$dir/checkpoints/last.pt" ]]; then
        echo "== resume $name from $dir/checkpoints/last.pt"
        "${cmd[@]}" --resume
    elif [[ -d "$dir" && -n "$(ls -A "$dir")" ]]; then
        echo "error: $dir exists but has neither metrics.json nor checkpoints/last.pt;" \
             "remove it to start $name again" >&2
        exit 1
    else
        echo "== start $name"
        "${cmd[@]}"
    fi
}

# evaluate NAME: robustness of a finished classifier run (a contrastive run: its frozen features at a
# few labels, probes.json), while its checkpoint is still there.
evaluate() {
    local name="$1" dir="$RUNS_DIR/$1"
    if [[ $name == contrastive* ]]; then
        if [[ -f "$dir/probes.json" ]]; then
            echo "== skip evaluating $name: $dir/probes.json exists"
        elif [[ -f "$dir/checkpoints/best.pt" ]]; then
            echo "== evaluate $name (frozen features, few labels)"
            "$PY" "$ROOT/evaluate_contrastive.py" "$dir" || echo "warning: evaluate_contrastive.py could not measure $name" >&2
        else
            echo "warning: $name has no checkpoints/best.pt, so no probes.json" >&2
        fi
        return 0
    fi
    if [[ -f "$dir/robustness.json" ]] && "$PY" "$ROOT/scripts/runs.py" current "$dir" &&
            { [[ -z "$GRID" ]] || "$PY" "$ROOT/scripts/runs.py" has "$dir/robustness.json" grid; }; then
        echo "== skip evaluating $name: $dir/robustness.json exists"
    elif [[ -f "$dir/checkpoints/best.pt" ]]; then
        echo "== evaluate $name"
        "$PY" "$ROOT/evaluate.py" "$dir" ${GRID:+--grid} || echo "warning: evaluate.py could not measure $name" >&2
    else
        echo "warning: $name has no checkpoints/best.pt, so no robustness.json" >&2
    fi
}

for seed in $SEEDS; do
    for model in $MODELS; do
        case "$model" in
            image|audio|contrastive) name="$model${TAG:+-$TAG}-s$seed"; script="train_$model.py"; flags=(--seed "$seed") ;;
            *) name="multimodal-$model${TAG:+-$TAG}-s$seed"; script=train_multimodal.py
               flags=(--fusion "$model" --seed "$seed") ;;
        esac
        if kept "$name"; then
            same_flags "$RESULTS/$name" "${flags[@]}"
            echo "== skip $name: kept in $RESULTS/$name"
            continue
        fi
        train "$script" "$name" "${flags[@]}"
        evaluate "$name"
        keep "$name"
    done
done
[[ -z $NO_REPORT ]] || exit 0

REPORT_DIR="${RESULTS:-$RUNS_DIR}"
"$PY" "$ROOT/report.py" "$REPORT_DIR" --out "$REPORT_DIR/results.md"
cat "$REPORT_DIR/results.md"

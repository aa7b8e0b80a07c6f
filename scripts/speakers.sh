#!/usr/bin/env bash
# Unseen voices: leave-one-speaker-out (--holdout-speaker) for four audio paths, through the study's machinery.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/speakers.sh [--seeds "0"] [--speakers "george jackson lucas nicolas theo yweweler"]
                          [--runs-dir runs/speakers] [--results results/speakers] [--list] [-- EXTRA...]

For each speaker left out (one fold: that speaker's every recording out of training, the test pairs
from that voice alone), trains four models once per seed, each evaluated by evaluate.py right after
training (scripts/reproduce.sh does the work; its rules for skipping, resuming and keeping apply):

  audio-spk-NAME-sS                              audio only, raw waveform
  audio-mel-lean-spk-NAME-sS                     audio only, --recipe mel-lean
  multimodal-concat-spk-NAME-sS                  concat, raw waveform
  multimodal-concat-mel-lean-mdrop0.3-spk-NAME-sS  concat, --recipe mel-lean --recipe mdrop

and, once per seed before the folds, the last of these on FSDD's own split (known speakers), the
one of the four that results/study and results/beyond do not hold:

  multimodal-concat-mel-lean-mdrop0.3-sS

Fold by fold, so that a stopped session leaves whole folds. --list prints one self-contained
command per run instead and exits. EXTRA goes to every training script (e.g. -- --data avdigits
--data-root ../shared/data). Then: python report.py results/study results/beyond RESULTS
--figures RESULTS gives each fold its table and the "Unseen voices" table beside the known speakers.

environment:
  PYTHON                interpreter to use (default: python)
EOF
}

SEEDS="0"
RUNS_DIR="runs/speakers"
RESULTS="results/speakers"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SPEAKERS="${FSDD_SPEAKERS[*]}"
parse_flags "--seeds --speakers --runs-dir --results" "--list" "$@"
[[ -n "${SEEDS// /}" ]] || { echo "error: --seeds is empty" >&2; exit 2; }
check_speakers

for seed in $SEEDS; do
    variant "$seed" concat mel-lean-mdrop0.3 --recipe mel-lean --recipe mdrop
done
for speaker in $SPEAKERS; do
    for seed in $SEEDS; do
        held=(--holdout-speaker "$speaker")
        variant "$seed" "audio concat" "spk-$speaker" "${held[@]}"
        variant "$seed" audio "mel-lean-spk-$speaker" --recipe mel-lean "${held[@]}"
        variant "$seed" concat "mel-lean-mdrop0.3-spk-$speaker" --recipe mel-lean --recipe mdrop "${held[@]}"
    done
done

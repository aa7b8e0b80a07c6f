#!/usr/bin/env bash
# Beyond the exam: modality dropout and the log-mel audio front-end, through the study's machinery.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/beyond.sh [--seeds "0 1 2"] [--runs-dir runs/beyond] [--results results/beyond] [--list]
                        [-- EXTRA...]

Trains the seven variants of the exam's networks, once per seed, each evaluated by
evaluate.py right after training (scripts/reproduce.sh does the work; its rules for
skipping, resuming and keeping runs apply):

  multimodal-concat-mdrop0.3-sS      concat, --modality-dropout 0.3
  multimodal-late-mdrop0.3-sS        late, --modality-dropout 0.3
  audio-mel-sS                       audio only, --audio-frontend mel
  multimodal-concat-mel-sS           concat, --audio-frontend mel
  multimodal-concat-mel-mdrop0.3-sS  concat, --audio-frontend mel --modality-dropout 0.3
  audio-mel-lean-sS                  audio only, --audio-frontend mel --mel-channels 8 16
  multimodal-concat-mel-lean-sS      concat, --audio-frontend mel --mel-channels 8 16

--list prints one self-contained command per run instead (for xargs -P N on a machine
that can train several at once) and exits.
EXTRA goes to every training script (e.g. -- --data avdigits --data-root ../shared/data).
Then: python report.py results/study RESULTS --figures RESULTS puts them beside the
study's rows, with the paired comparisons against the exam-architecture concat and late.

environment:
  PYTHON                interpreter to use (default: python)
EOF
}

SEEDS="0 1 2"
RUNS_DIR="runs/beyond"
RESULTS="results/beyond"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_flags "--seeds --runs-dir --results" "--list" "$@"

[[ -n "${SEEDS// /}" ]] || { echo "error: --seeds is empty" >&2; exit 2; }

# seed by seed, so that a stopped session leaves whole seeds of every variant
for seed in $SEEDS; do
    variant "$seed" "concat late" mdrop0.3 --modality-dropout 0.3
    variant "$seed" audio mel --audio-frontend mel
    variant "$seed" concat mel --audio-frontend mel
    variant "$seed" concat mel-mdrop0.3 --audio-frontend mel --modality-dropout 0.3
    # the mel front-end at a quarter of its conv channels: does a leaner CNN keep the accuracy?
    variant "$seed" audio mel-lean --audio-frontend mel --mel-channels 8 16
    variant "$seed" concat mel-lean --audio-frontend mel --mel-channels 8 16
done

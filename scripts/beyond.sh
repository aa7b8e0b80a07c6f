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

  multimodal-concat-mdrop0.3-sS      concat, --recipe mdrop (--modality-dropout 0.3)
  multimodal-late-mdrop0.3-sS        late, --recipe mdrop
  audio-mel-sS                       audio only, --recipe mel (--audio-frontend mel)
  multimodal-concat-mel-sS           concat, --recipe mel
  multimodal-concat-mel-mdrop0.3-sS  concat, --recipe mel --recipe mdrop
  audio-mel-lean-sS                  audio only, --recipe mel-lean (also --mel-channels 8 16)
  multimodal-concat-mel-lean-sS      concat, --recipe mel-lean

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
    variant "$seed" "concat late" mdrop0.3 --recipe mdrop
    variant "$seed" audio mel --recipe mel
    variant "$seed" concat mel --recipe mel
    variant "$seed" concat mel-mdrop0.3 --recipe mel --recipe mdrop
    # the mel front-end at a quarter of its conv channels: does a leaner CNN keep the accuracy?
    variant "$seed" audio mel-lean --recipe mel-lean
    variant "$seed" concat mel-lean --recipe mel-lean
done

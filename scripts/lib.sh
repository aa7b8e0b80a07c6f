# Shared by the shell scripts (sourced, never run): their flag parser, and quoting for the --list lines.

# sh_words WORD...: the words as one line that any POSIX sh reads back as the same words (plain words
# as they are, others in single quotes); bash's printf %q writes $'\t', which sh does not read.
sh_words() {
    local out="" word
    for word in "$@"; do
        if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
            out+="$word "
        else
            out+="'${word//\'/\'\\\'\'}' "
        fi
    done
    printf '%s\n' "${out% }"
}

# list_line WORD...: sh_words, with PYTHON=... in front when the caller set $PYTHON, so that the listed
# command runs with the same interpreter
list_line() {
    if [[ -n "${PYTHON:-}" ]]; then
        sh_words env "PYTHON=$PYTHON" "$@"
    else
        sh_words "$@"
    fi
}

# parse_flags "VALUE FLAGS" "SWITCHES" "$@": a script's own flags, the same way in every script.
# A value flag (--runs-dir DIR or --runs-dir=DIR) sets the variable of its name (RUNS_DIR); a switch
# (--no-report) sets its variable (NO_REPORT) to the flag itself, and is "" when not given, so that
# ${LIST:+"$LIST"} passes it on; -h / --help prints the script's `usage` and exits 0; "--" ends them,
# the rest go to EXTRA (flags for the training scripts); anything else is one error line and exit 2.
parse_flags() {
    local values=" $1 " switches=" $2 " flag var
    shift 2
    for flag in $switches; do var="${flag#--}"; var="${var//-/_}"; printf -v "${var^^}" '%s' ""; done
    EXTRA=()
    while [[ $# -gt 0 ]]; do
        flag="${1%%=*}"
        var="${flag#--}"; var="${var//-/_}"; var="${var^^}"
        if [[ $1 == -h || $1 == --help ]]; then
            usage; exit 0
        elif [[ $1 == -- ]]; then
            shift; EXTRA=("$@"); return 0
        elif [[ $values == *" $flag "* && $1 == *=* ]]; then
            printf -v "$var" '%s' "${1#*=}"; shift
        elif [[ $values == *" $flag "* ]]; then
            [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
            printf -v "$var" '%s' "$2"; shift 2
        elif [[ $switches == *" $1 "* ]]; then
            printf -v "$var" '%s' "$1"; shift
        else
            echo "error: unknown argument $1 (flags for the training scripts go after --)" >&2
            usage >&2; exit 2
        fi
    done
}

# variant SEED MODELS TAG FLAGS...: one tagged variant of the study at one seed, through reproduce.sh, into
# the caller's RUNS_DIR and RESULTS (and its --list, when LIST is set); FLAGS, then EXTRA, go to the scripts
variant() {
    local seed="$1" models="$2" tag="$3"
    shift 3
    "$(dirname "${BASH_SOURCE[0]}")/reproduce.sh" --seeds "$seed" --models "$models" --tag "$tag" \
        --runs-dir "$RUNS_DIR" --results "$RESULTS" --no-report ${LIST:+"$LIST"} ${GRID:+"$GRID"} \
        -- "$@" ${EXTRA[@]+"${EXTRA[@]}"}
}

# FSDD v1.0.10's six speakers, in the order the fusion map rotates its validation speaker
FSDD_SPEAKERS=(george jackson lucas nicolas theo yweweler)

# check_speakers [fsdd]: SPEAKERS (the --speakers value) is not empty and names only the data's speakers:
# FSDD's six, or with -- --data synthetic (unless "fsdd" is asked) also the synthetic set's spk0, spk1, ...;
# else one line, exit 2
check_speakers() {
    local speaker synthetic=""
    [[ -n "${SPEAKERS// /}" ]] || { echo "error: --speakers is empty" >&2; exit 2; }
    [[ ${1:-} != fsdd && ( " ${EXTRA[*]-} " == *" --data synthetic "* || " ${EXTRA[*]-} " == *" --data=synthetic "* ) ]] \
        && synthetic=1
    for speaker in $SPEAKERS; do
        [[ " ${FSDD_SPEAKERS[*]} " == *" $speaker "* || ( -n $synthetic && $speaker =~ ^spk[0-9]+$ ) ]] && continue
        echo "error: --speakers: $speaker is not one of FSDD's speakers (${FSDD_SPEAKERS[*]})" >&2
        exit 2
    done
}

# floor KIND OUT [FLAGS...]: evaluate_contrastive.py KIND (raw or random) into OUT, unless OUT exists, with the
# data flags of EXTRA (a floor trains nothing: the training flags are not for it), then FLAGS; with --list
# (LIST set) one line instead: OUT's folder made, then the floor
floor() {
    local kind="$1" out="$2" i=0 extra=(${EXTRA[@]+"${EXTRA[@]}"})
    shift 2
    local cmd=("${PYTHON:-python}" "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/evaluate_contrastive.py" "$kind"
               --out "$out")
    while (( i < ${#extra[@]} )); do
        case "${extra[$i]}" in
            --data|--data-root|--data-seed|--synthetic-size) cmd+=("${extra[$i]}" "${extra[$((i + 1))]-}"); i=$((i + 2)) ;;
            *) i=$((i + 1)) ;;
        esac
    done
    cmd+=("$@")
    if [[ -n ${LIST:-} ]]; then
        [[ -f "$out" ]] || echo "$(sh_words mkdir -p "$(dirname "$out")") && $(list_line "${cmd[@]}")"
    elif [[ -f "$out" ]]; then
        echo "== skip $(basename "$(dirname "$out")"): $out exists"
    else
        echo "== $(basename "$(dirname "$out")")"
        mkdir -p "$(dirname "$out")"
        "${cmd[@]}"
    fi
}

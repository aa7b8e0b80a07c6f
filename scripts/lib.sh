# Shared by the shell scripts (sourced, never run): quoting for the --list lines.

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

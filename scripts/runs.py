"""Questions the shell scripts ask of kept runs, answered through common/records.py (no torch).

  python scripts/runs.py best DIR PATTERN FIELD   the run folder under DIR matching PATTERN whose
                                                  metrics.json FIELD (dotted, e.g. val.probe.both)
                                                  is highest; ties go to the first name
  python scripts/runs.py flags RUN_DIR KEY...     the run's saved flags KEY as command-line flags,
                                                  one word per line (true booleans as bare flags)
"""
import fnmatch
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.records import RecordError, RunFolder  # noqa: E402


def best(folder, pattern, field):
    scores = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        run = RunFolder(os.path.join(folder, name))
        if not fnmatch.fnmatch(name, pattern) or not os.path.exists(run.metrics):
            continue
        value = run.read_metrics()
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[name] = value
    if not scores:
        raise RecordError(f"no finished run matching {pattern} with {field} in {folder}")
    return max(scores, key=scores.get)  # sorted names: the first of equal scores wins


def flags(run_dir, keys):
    args = RunFolder(run_dir).read_config().get("args", {})
    words = []
    for key in keys:
        value = args.get(key)
        if isinstance(value, bool):
            words += [f"--{key.replace('_', '-')}"] if value else []
        elif value is not None:
            words += [f"--{key.replace('_', '-')}", str(value)]
    return words


def main(argv):
    if len(argv) >= 4 and argv[0] == "best":
        print(best(argv[1], argv[2], argv[3]))
    elif len(argv) >= 2 and argv[0] == "flags":
        print("\n".join(flags(argv[1], argv[2:])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

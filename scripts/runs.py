"""Questions the shell scripts ask of kept runs, answered through common/runfolder.py (no torch).

  python scripts/runs.py best DIR PATTERN FIELD   the run folder under DIR matching PATTERN whose
                                                  metrics.json FIELD (dotted, e.g. val.probe.both)
                                                  is highest; ties go to the first name
  python scripts/runs.py flags RUN_DIR KEY...     the run's saved flags KEY as command-line flags,
                                                  one word per line (true booleans as bare flags)
  python scripts/runs.py current RUN_DIR           exit 0 when RUN_DIR's robustness.json measured its
                                                  current best weights, else 1 with the reason
  python scripts/runs.py has FILE KEY             exit 0 when the JSON file FILE has the top-level KEY
  python scripts/runs.py kept RUN_DIR FILE...      exit 0 when each FILE (a JSON file of the run) is
                                                  there and readable, else 1 with a note on stderr
  python scripts/runs.py same RUN_DIR FLAG...      exit 0 when the run was trained with these flags (the
                                                  runtime ones aside: --max-epochs, --data-root, ...),
                                                  else 1 with the differences on stderr
  python scripts/runs.py models                   the study's models in order: image, audio, then every
                                                  fusion (common/facts.py), late last
"""
import fnmatch
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.runfolder import RecordError, RunFolder, flags_differ, robustness_problem  # noqa: E402


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


def kept(run_dir, names):
    """True when every named JSON file of the run is present and readable."""
    for name in names:
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            return False
        try:
            from common.runfolder import read_json_object
            read_json_object(path)
        except RecordError as e:
            print(f"warning: {e}: not counted as kept", file=sys.stderr)
            return False
    return True


def main(argv):
    if len(argv) >= 4 and argv[0] == "best":
        print(best(argv[1], argv[2], argv[3]))
    elif len(argv) >= 2 and argv[0] == "flags":
        print("\n".join(flags(argv[1], argv[2:])))
    elif len(argv) == 2 and argv[0] == "current":
        problem = robustness_problem(RunFolder(argv[1]))
        if problem:
            print(f"note: {problem}", file=sys.stderr)
        return 1 if problem else 0
    elif len(argv) == 3 and argv[0] == "has":
        try:
            from common.runfolder import read_json_object
            return 0 if argv[2] in read_json_object(argv[1]) else 1
        except RecordError:
            return 1
    elif len(argv) >= 3 and argv[0] == "kept":
        return 0 if kept(argv[1], argv[2:]) else 1
    elif len(argv) >= 2 and argv[0] == "same":
        folder = RunFolder(argv[1])
        if not os.path.exists(folder.config):
            print(f"note: {folder.config} is missing: the run's flags cannot be checked", file=sys.stderr)
            return 0
        problems = flags_differ(folder.read_config(), argv[2:])
        if problems is None:
            print(f"note: {folder.config} records no command: the run's flags cannot be checked", file=sys.stderr)
        elif problems:
            print(f"{argv[1]} was trained with other flags than asked: {'; '.join(problems)}", file=sys.stderr)
        return 1 if problems else 0
    elif argv == ["models"]:
        from common.facts import FUSION_CHOICES
        print(" ".join(["image", "audio", *FUSION_CHOICES]))
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

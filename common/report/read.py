"""Reading: the run folders below each RUNS_DIR, as flat run dicts (classifier runs), contrastive
rows and probes.json entries, with everything the later steps need (predictions included), so
that grouping and statistics open no file. Files are read through common/runfolder.py."""
import os
import sys

from ..flags import resolve_recipes
from ..facts import NOISE_SWEEPS, REGIMES
from ..runfolder import (RECORDINGS_DIR, RecordError, RunFolder, read_json_object, read_test_recordings,
                         robustness_problem, run_args)
from .columns import COLUMNS
from .contrastive import contrastive_row
from .settings import FLOOR_VIEWS, MODELS, config_key, held_out_name
from .stats import is_number, sweep_curve


class ReportError(Exception):
    """A problem that ends the report with exit code 2."""


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def find_files(runs_dir, name):
    """Every file called `name` below runs_dir, in a stable order."""
    found = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs.sort()
        if name in files:
            found.append(os.path.join(folder, name))
    return found


def find_metrics(runs_dir):
    return find_files(runs_dir, "metrics.json")


def load_config_args(run_dir):
    """The args saved in config.json beside metrics.json, with the precision and device the run
    used ({} when absent; None when unreadable: such a run is left out, never read as the exam's)."""
    folder = RunFolder(run_dir)
    if not os.path.exists(folder.config):
        return {}
    try:
        args = run_args(folder.read_config())
        if not isinstance(args, dict):
            raise RecordError("its args are not a dict")
        return args
    except (RecordError, AttributeError, TypeError) as e:
        warn(f"leaving out the run of unreadable {folder.config}: {e}")
        return None


def read_robustness(run_dir, metrics=None):
    """robustness.json beside metrics.json, or None when absent, unreadable or measured on other
    weights than the run's best (a run trained on after its evaluation)."""
    folder = RunFolder(run_dir)
    try:
        result = folder.read_robustness()
    except RecordError as e:
        warn(f"ignoring unreadable {e}")
        return None
    stale = result is not None and robustness_problem(folder, metrics)
    if stale:
        warn(f"ignoring stale robustness: {stale}; run evaluate.py on it again")
        return None
    for sweep in NOISE_SWEEPS:
        rows = (result or {}).get(sweep.key)
        if rows is not None and sweep_curve(result, sweep.key) is None:
            warn(f"{folder.robustness}: its {sweep.key} does not hold a number for each of the levels "
                 f"{', '.join(f'{lv:g}' for lv in sweep.levels)}; left out of the robustness tables")
    return result


def read_runs(runs_dir):
    """Usable classifier runs as flat dicts, contrastive runs as rows of the sweep table, and
    {reason: count} of the runs skipped."""
    runs, contrastive, skipped = [], [], {}
    for path in find_metrics(runs_dir):
        try:
            m = read_json_object(path)
        except RecordError as e:
            warn(f"skipping corrupt {e}")
            skipped["corrupt"] = skipped.get("corrupt", 0) + 1
            continue
        test = m.get("test") if isinstance(m.get("test"), dict) else {}
        args = load_config_args(os.path.dirname(path))
        if args is None:
            skipped["unreadable config.json"] = skipped.get("unreadable config.json", 0) + 1
            continue
        if m.get("model") == "contrastive":
            row = contrastive_row(path, m, args)
            if row is not None:
                contrastive.append(row)
                continue
            reason = "contrastive run without test retrieval metrics"
        elif m.get("model") not in MODELS:
            reason = f"model {m.get('model')!r} is not image/audio/multimodal"
        elif not test.get("labeled") or not is_number(test.get("acc")) or not is_number(test.get("loss")):
            reason = "no labelled test metrics"
        elif not m.get("dataset"):
            reason = "no dataset name"
        else:
            reason = None
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        run_dir = os.path.dirname(path)
        regime_acc = test.get("per_regime_acc") or {}
        runs.append({
            "path": path,
            "model": m["model"], "fusion": m.get("fusion") if m["model"] == "multimodal" else None,
            "dataset": held_out_name(m["dataset"], args.get("holdout_speaker")),
            "holdout_speaker": args.get("holdout_speaker"), "synthetic": bool(m.get("synthetic")),
            "experts": args.get("experts"),  # combine.py's late fusion of two single-view runs: their names
            "gate": args.get("gate"),  # ... and how it weighs them (None: temperatures)
            "val_loss": (m.get("val") or {}).get("loss"),
            "fingerprint": m.get("fingerprint"), "limit": m.get("limit"),
            "seed": m.get("seed", args.get("seed")),
            "config": config_key(args),
            **{c.field: c.read(m) for c in COLUMNS},
            "device": args.get("device_used", "unknown"),
            "regime_acc": {r: 100.0 * regime_acc[r] if is_number(regime_acc.get(r)) else None for r in REGIMES},
            "regime_n": test.get("per_regime_n") or {},
            "robustness": read_robustness(run_dir, m),
            "predictions": RunFolder(run_dir).read_predictions(),
            "recordings": read_test_recordings(RunFolder(run_dir), m.get("fingerprint")),
            # the named recipes its flags make up, and the flags it set beyond them
            **dict(zip(("recipes", "beyond_recipes"), resolve_recipes(args, m["model"]))),
        })
    return runs, contrastive, skipped


def read_probes(runs_dirs):
    """[(dataset key, [(source name, probes.json), ...]), ...]: one few-label table per dataset."""
    by_key, seen = {}, set()
    for runs_dir in runs_dirs:
        for path in find_files(runs_dir, "probes.json"):
            if os.path.realpath(path) in seen:
                continue
            seen.add(os.path.realpath(path))
            try:
                probes = read_json_object(path)
                if not isinstance(probes.get("probes"), list):
                    raise RecordError(f"{path} is not a probes.json of evaluate_contrastive.py")
            except RecordError as e:
                warn(f"skipping corrupt {e}")
                continue
            key = (held_out_name(probes.get("dataset"), probes.get("holdout_speaker")), bool(probes.get("synthetic")),
                   probes.get("fingerprint"), probes.get("limit"))
            by_key.setdefault(key, []).append((os.path.basename(os.path.dirname(path)), probes))
    return sorted(by_key.items(), key=lambda kv: (kv[0][1], str(kv[0][0]), kv[0][3] is not None, str(kv[0][2])))


def read_floors(runs_dirs):
    """{dataset fingerprint: {"image" | "audio" | "both": accuracy %}}: the raw-input floors (a logistic
    regression on the noisy pixels, a log-mel summary, or both, on all the labels; evaluate_contrastive.py
    raw) kept in probes.json files under runs_dirs and the repository's results/, mean over label seeds."""
    floors, seen = {}, set()
    for runs_dir in list(runs_dirs) + [os.path.dirname(RECORDINGS_DIR)]:
        for path in find_files(runs_dir, "probes.json") if os.path.isdir(runs_dir) else []:
            if os.path.realpath(path) in seen:
                continue
            seen.add(os.path.realpath(path))
            try:
                probes = read_json_object(path)
            except RecordError:
                continue
            rows = probes.get("probes") if probes.get("kind") == "raw" else None
            if not isinstance(rows, list) or probes.get("limit") is not None:
                continue
            for features in FLOOR_VIEWS.values():
                accs = [r.get("test_acc") for r in rows if isinstance(r, dict) and r.get("fraction") == 1.0
                        and r.get("features") == features and is_number(r.get("test_acc"))]
                if accs:
                    floors.setdefault(probes.get("fingerprint"), {})[features] = 100.0 * sum(accs) / len(accs)
    return floors


def read_all(runs_dirs):
    """read_runs over several folders; a metrics.json reached from two of them counts once."""
    runs, contrastive, skipped, seen = [], [], {}, set()
    for runs_dir in runs_dirs:
        if not os.path.isdir(runs_dir):
            raise ReportError(f"runs directory {runs_dir} does not exist")
        found, found_contrastive, found_skipped = read_runs(runs_dir)
        for kept, new in ((runs, found), (contrastive, found_contrastive)):
            for run in new:
                real = os.path.realpath(run.path if kept is contrastive else run["path"])
                if real not in seen:
                    seen.add(real)
                    kept.append(run)
        for reason, count in found_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    return runs, contrastive, skipped

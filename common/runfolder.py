"""One run folder as a record to read: its layout, its JSON and CSV files, and the defaults of runs
made before a flag existed. No torch, no TensorBoard: report.py and the shell scripts' helpers
read runs through this module alone.

A run folder holds config.json (flags, data, versions), metrics.json (written last: a run is
finished when it is there), split_indices.json, predictions_test.csv, robustness.json
(evaluate.py), probes.json (evaluate_contrastive.py), checkpoints/{last,best}.pt and figures/.
"""
import base64
import csv
import hashlib
import json
import os
import re
from types import SimpleNamespace

from .facts import saved_precision
from .flags import NUMBER_NEUTRAL_FLAGS, OLD_RUN_DEFAULTS, RECIPES, RUNTIME_FLAGS, recipe_names  # noqa: F401

class RecordError(Exception):
    """A run file that is missing or cannot be read, in one line."""


class RunFolder:
    """The layout of one run's folder, and readers for its files."""

    def __init__(self, path):
        self.path = path
        self.config = os.path.join(path, "config.json")
        self.metrics = os.path.join(path, "metrics.json")
        self.split_indices = os.path.join(path, "split_indices.json")
        self.predictions = os.path.join(path, "predictions_test.csv")
        self.robustness = os.path.join(path, "robustness.json")
        self.probes = os.path.join(path, "probes.json")  # evaluate_contrastive.py's measures of a contrastive run
        self.last = os.path.join(path, "checkpoints", "last.pt")
        self.best = os.path.join(path, "checkpoints", "best.pt")
        self.started = None  # a resumed run's config.json, once read

    def figure(self, name):
        return os.path.join(self.path, "figures", f"{name}.png")

    def __str__(self):
        return self.path

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.path))

    def read_config(self):
        """config.json as a dict; RecordError when missing, unreadable or not an object."""
        return read_json_object(self.config)

    def read_metrics(self):
        return read_json_object(self.metrics)

    def read_robustness(self):
        """robustness.json, or None when there is none; RecordError when it is unreadable."""
        return read_json_object(self.robustness) if os.path.exists(self.robustness) else None

    def read_probes(self):
        return read_json_object(self.probes) if os.path.exists(self.probes) else None

    def read_indices(self):
        """{"train", "val", "test": [row, ...]} of split_indices.json."""
        saved = read_json_object(self.split_indices)
        try:
            return {k: [int(i) for i in saved[k]] for k in ("train", "val", "test") if k in saved}
        except (TypeError, ValueError):
            raise RecordError(f"{self.split_indices}: the indices are not integers") from None

    def read_predictions(self):
        """{test row id: correct?} from predictions_test.csv, or None when absent, unlabelled or unreadable."""
        try:
            with open(self.predictions, newline="") as f:
                rows = list(csv.DictReader(f))
            return {int(r["id"]): int(r["digit"]) == int(r["label"]) for r in rows}
        except (OSError, KeyError, ValueError, TypeError):
            return None


def pack_bits(flags):
    """Per-pair right/wrong as robustness.json's grid keeps it: base64 of numpy's packbits, pair order."""
    import numpy as np
    return base64.b64encode(np.packbits(np.asarray(flags, dtype=bool)).tobytes()).decode("ascii")


def unpack_bits(text, n):
    """pack_bits' inverse: a bool array of the first n pairs."""
    import numpy as np
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


RECORDINGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "recordings")


def read_test_recordings(folder, fingerprint):
    """{test row id: recording name} of a run: predictions_test.csv's recording column (runs since it
    was added), else the committed table of its dataset (results/recordings/<fingerprint[:12]>.csv,
    written by `python -m common.data recordings`); None when neither is there."""
    for path, column in ((folder.predictions, "recording"),
                         (os.path.join(RECORDINGS_DIR, f"{str(fingerprint)[:12]}.csv"), "recording")):
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and column in rows[0]:
                return {int(r["id"]): r[column] for r in rows}
        except (OSError, KeyError, ValueError, TypeError):
            continue
    return None


def file_digest(path, algorithm="sha256"):
    """The hex digest of a file's bytes, read a MiB at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path):
    """A checkpoint's identity: robustness.json records the SHA-256 of the best.pt it measured."""
    return file_digest(path, "sha256")


def robustness_problem(folder, metrics=None):
    """Why a run's robustness.json does not describe its current best weights, or None: it records
    the best epoch and the best.pt it measured (evaluate.py since that was added; older files record
    neither and cannot be checked)."""
    try:
        result = folder.read_robustness()
    except RecordError as e:
        return str(e)
    if result is None:
        return f"{folder.robustness} is missing"
    if metrics is None and os.path.exists(folder.metrics):
        try:
            metrics = folder.read_metrics()
        except RecordError:
            metrics = None
    measured = result.get("best_epoch")
    if measured is not None and metrics is not None and metrics.get("best_epoch") not in (None, measured):
        return (f"{folder.robustness} measured the weights of epoch {measured}, but the run's best epoch is now "
                f"{metrics['best_epoch']} (it was trained on after the evaluation)")
    if result.get("best_sha256") and os.path.exists(folder.best) and file_sha256(folder.best) != result["best_sha256"]:
        return f"{folder.robustness} measured another checkpoint than today's {folder.best}"
    return None


def read_json_object(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise RecordError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} is not a JSON object")
    return data


def run_args(config):
    """A run's flags as config.json saved them, with two facts of the run itself beside them:
    `precision`, the one it used (config.json's top level, not the flag, since --precision auto
    resolves per machine), and `device_used` (cpu, cuda, ...: where it trained)."""
    args = config.get("args", {})
    if not isinstance(args, dict):
        return {}
    used = saved_precision(config)
    args = {**args, "precision": used} if used else dict(args)
    if isinstance(config.get("device"), str):
        args["device_used"] = config["device"].split(":")[0]
    if config.get("init_from_source"):
        args["init_from_source"] = config["init_from_source"]
    return args


def checkpoint_run(path):
    """The RunFolder a checkpoint belongs to: runs/X/checkpoints/best.pt -> runs/X."""
    return RunFolder(os.path.dirname(os.path.dirname(os.path.abspath(path))))


def source_label(path):
    """The pre-training a checkpoint stands for, its seed dropped, so that the seeds of one
    pre-training share a row and different ones (NT-Xent, NT-Log) do not: the run folder's name
    without its "-s<seed>" ending, the seed read from the run's config.json where there is one."""
    run = checkpoint_run(path)
    try:
        seed = run.read_config()["args"]["seed"]
        return run.name[:-len(f"-s{seed}")] if run.name.endswith(f"-s{seed}") else run.name
    except (RecordError, KeyError, TypeError):
        return re.sub(r"-s\d+$", "", run.name)


def saved_data_args(config, data_root=None):
    """The data flags a run was trained with, from its config.json (data_root: where the raw data
    lives now, else where it lived then), as dataset_from_args takes them."""
    saved = config.get("args", {})
    return SimpleNamespace(data=config["dataset"]["name"], data_root=data_root or saved.get("data_root"),
                           data_seed=saved.get("data_seed", 0), synthetic_size=saved.get("synthetic_size"),
                           clean_views=saved.get("clean_views", False), holdout_speaker=saved.get("holdout_speaker"),
                           val_speaker=saved.get("val_speaker"))


def init_source(paths, recorded=None):
    """Which runs pre-loaded the featurizers, seeds dropped: runs/X-s3/checkpoints/best.pt -> "X".

    recorded: what train_multimodal.py wrote in config.json when the run started (init_from_source);
    runs from before it did so are read from the checkpoint paths' folder names, once, here.
    """
    if recorded:
        return recorded
    if not paths:
        return None
    if isinstance(paths, str):
        paths = [paths]
    names = []
    for p in paths:
        folder = os.path.dirname(os.path.dirname(os.path.normpath(p))) or p
        names.append(re.sub(r"-s\d+$", "", os.path.basename(folder)))
    return "+".join(sorted(names))


def command_flags(words):
    """{"--flag": (value, ...)} of a command line's words (anything before the first flag, the
    script, left out; --flag=value split)."""
    flags, current = {}, None
    for word in words:
        if word.startswith("--"):
            current, eq, value = word.partition("=")
            earlier = flags.get(current, ()) if current == "--recipe" else ()  # repeatable: in order
            flags[current] = earlier + ((value,) if eq else ())
        elif current is not None:
            flags[current] += (word,)
    return flags


def expand_recipes(flags):
    """command_flags' dict with --recipe replaced by the flags its recipes set, in order (a flag
    given explicitly wins), so that a command with recipe names and one with their flags agree."""
    flags = dict(flags)
    given = set(flags) - {"--recipe"}
    for name in recipe_names(flags.pop("--recipe", ())):
        for key, value in (RECIPES[name].flags if name in RECIPES else {}).items():
            word = "--" + key.replace("_", "-")
            if word not in given:
                flags[word] = _value_words(value)
    return flags


def _as_numbers(values):
    """Values as compared: numbers as numbers ("0.30" is "0.3", "1e-3" is "0.001"), a checkpoint path
    by its run folder and file (runs/X/checkpoints/best.pt wherever --runs-dir puts runs/)."""
    def one(word):
        try:
            return repr(float(word))
        except ValueError:
            parts = os.path.normpath(word).split(os.sep)
            return "/".join(parts[-3:]) if word.endswith(".pt") else word
    return None if values is None else tuple(one(str(v)) for v in values)


def flags_differ(config, asked):
    """How the command a run was trained with differs from the flags `asked` (a list of words), the
    RUNTIME_FLAGS (a resume may change those) and NUMBER_NEUTRAL_FLAGS aside: ["--flag: trained with
    X, asked Y", ...], [] when they agree, None when config.json recorded no command. --data is
    compared with the data the run found (its dataset name), and not at all when asked is auto or
    not given. A flag asked now that the command did not give agrees when the run's saved value (or,
    for a run older than the flag, OLD_RUN_DEFAULTS) is the value asked; a flag the command gave that
    is not asked now always counts as a difference (its default is the script's, unknown here)."""
    command = config.get("command")
    if not isinstance(command, str):
        return None
    runtime = {"--" + flag.replace("_", "-") for flag in RUNTIME_FLAGS} | set(NUMBER_NEUTRAL_FLAGS)
    saved, wanted = ({k: v for k, v in expand_recipes(command_flags(words)).items() if k not in runtime}
                     for words in (command.split(), asked))
    saved.pop("--data", None)
    data = wanted.pop("--data", ("auto",))
    found = (config.get("dataset") or {}).get("name")
    problems = [] if data == ("auto",) or data == (found,) else [f"--data: trained on {found}, asked {data[0]}"]

    def spell(values):
        return " ".join(values) if values else "(set)"
    args = config.get("args") or {}
    for flag in sorted(set(saved) | set(wanted)):
        if flag not in saved and _saved_value_words(args, flag) == _as_numbers(wanted[flag]):
            continue  # given now, left at that value then (its default, or a value from --recipe)
        if _as_numbers(saved.get(flag)) != _as_numbers(wanted.get(flag)):
            was = spell(saved[flag]) if flag in saved else "(not given)"
            now = spell(wanted[flag]) if flag in wanted else "(not given)"
            problems.append(f"{flag}: trained with {was}, asked {now}")
    return problems


def _saved_value_words(args, flag):
    """A flag's saved value (config.json args) as command_flags spells it; None when it has none."""
    key = flag[2:].replace("-", "_")
    return _as_numbers(_value_words(args.get(key, OLD_RUN_DEFAULTS.get(key))))


def _value_words(value):
    """A flag value as command_flags spells it: () for a switch that is on, None for one off or unset."""
    if value is True:
        return ()
    if value is None or value is False:
        return None
    return tuple(map(str, value if isinstance(value, list) else [value]))

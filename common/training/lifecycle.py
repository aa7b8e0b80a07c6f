"""One training run's bookkeeping: its folder, its set-up and resume, and the epoch tail.

Each train_*.py keeps its own loop: batches, forward, loss, backward, step,
validation, early stopping, the best checkpoint. What every loop needs around
that lives here, once:

- RunFolder (common/runfolder.py): where a run's files are, and their readers;
- start_run(): the run folder (new, or resumed with its saved flags), threads,
  device, precision and the dataset (checked against the run's fingerprint);
- Progress: config.json or the state of last.pt, the batch order of the epoch in
  progress (so a resume continues mid-epoch, exactly), the training-loss sums,
  the TensorBoard writer, best.pt and last.pt, the epoch line, and the
  save-and-exit on Ctrl-C or SIGTERM.
"""
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils.tensorboard import SummaryWriter

from tqdm import tqdm

from .cli import UsageError, check_flags, explicit_flags
from ..data import Dataset, batch_indices, class_balanced_subset, epoch_order, validation_split
from ..data.recipe import VAL_SPEAKER_SHARE
from ..data.sources import dataset_from_args
from ..facts import saved_precision
from ..flags import RECIPES, RUNTIME_FLAGS, recipe_names
from ..io import hold_lock, is_locked, output_dir_problem, save_json
from ..runfolder import RecordError, RunFolder
from .diagnostics import TRACE_FOLDER
from .loop import (TrainingError, load_checkpoint, pick_device, request_determinism, resolve_precision,
                   restore_training, save_checkpoint, training_checkpoint)



@dataclass
class RunSetup:
    """What start_run() settles before any model exists."""
    args: object
    kind: str          # image, audio, multimodal or contrastive: which script trains this run
    folder: RunFolder
    device: torch.device
    precision: str     # fp32 or bf16, as used (--precision auto resolved)
    dataset: Dataset
    determinism: dict = None  # what request_determinism() asked of the device


def check_output_dir(path, what):
    """Fail early, in one line, when `path` cannot become a writable folder (before any work is done)."""
    problem = output_dir_problem(path)
    if problem:
        raise UsageError(f"{what} {path}: {problem}")


def check_limit(args):
    """--limit must leave every split usable: at least 10 pairs each, and a whole batch to train on."""
    if getattr(args, "val_speaker", None) and args.val_fraction != VAL_SPEAKER_SHARE:
        raise UsageError(f"--val-fraction: a --val-speaker build fixes its validation share at {VAL_SPEAKER_SHARE} "
                         "when it is built")
    if args.limit is None:
        return
    n_val = int(round(args.limit * args.val_fraction))
    n_train = args.limit - n_val
    if n_train < max(args.batch_size, 10) or n_val < 10:
        raise UsageError(f"--limit {args.limit} leaves {n_train} training and {n_val} validation pairs; "
                         f"each split needs at least 10 and training at least one batch ({args.batch_size})")


def claim_path(runs_dir, name):
    """The claim file of runs_dir/name: .NAME.claim in the runs folder, resolved, so that two spellings
    of one folder (a symbolic link, a relative path) and two processes with their own TMPDIR (two Slurm
    jobs, two nodes sharing the folder) meet the same file."""
    return os.path.join(os.path.realpath(runs_dir), f".{name}.claim")


def claim_run_name(runs_dir, name):
    """Take the run folder runs_dir/name for this process, before anything is checked or written:
    an exclusive lock on its claim file (claim_path), held until the command ends. Two starts (or
    resumes) of one run at once: the second gets False at once, so nothing of its own reaches the
    folder. Claim files stay, empty (removing a lock file that others may hold is itself a race)."""
    path = claim_path(runs_dir, name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as e:
        raise UsageError(f"--runs-dir {runs_dir}: cannot claim {name} there ({e.strerror or e})") from None
    return hold_lock(path)


def _failed_start(run_dir):
    """True when run_dir holds only what a run writes before its first checkpoint, and no live
    process holds it: config.json, split_indices.json, TensorBoard event files, an empty checkpoints/."""
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name == TRACE_FOLDER:  # --log-diagnostics' first steps: event files only
            if not os.path.isdir(path) or os.path.islink(path) or \
                    any(not f.startswith("events.out.tfevents.") for f in os.listdir(path)):
                return False
        elif name == "checkpoints":  # empty, or only the temp file of a first save that never finished
            if not os.path.isdir(path) or os.path.islink(path) or \
                    any(not f.startswith(".tmp-") for f in os.listdir(path)):
                return False
        elif not (os.path.isfile(path) and not os.path.islink(path)
                  and (name in ("config.json", "split_indices.json") or name.startswith("events.out.tfevents."))):
            return False
    return not _held_by_a_live_run(run_dir)


def _held_by_a_live_run(run_dir):
    """True when a training process holds the run's lock (Progress takes it on config.json)."""
    return is_locked(os.path.join(run_dir, "config.json"))


def _nothing_left(folder, args):
    """A finished run with no epochs left under the flags now in force: --max-epochs reached, or
    --patience epochs without improvement (a larger --patience or --max-epochs lets it go on)."""
    try:
        with open(folder.metrics) as f:
            metrics = json.load(f)
        epochs_run, best_epoch = metrics["epochs_run"], metrics["best_epoch"]
        return epochs_run >= args.max_epochs or epochs_run - best_epoch >= args.patience
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no (readable) metrics.json: the run is not finished


def _spelled(value):
    """A flag's value as a command line gives it (a list as its words)."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _asked_flags(given, asked_recipes, saved_recipes):
    """The flags a resume command asks for: those it gives, and the flags of each recipe named on one
    side only (the command's or the run's), at the value the command's recipes give them. A recipe is
    judged by its flags, not its name: a run saved with the flags spelled out resumes under the recipe
    that names them, and `--recipe exam` on a stable run is refused for the flags stable set."""
    if "recipe" not in given:
        return set(given)
    asked = set(given) - {"recipe"}
    for name in set(recipe_names(asked_recipes)) ^ set(recipe_names(saved_recipes)):
        asked |= set(RECIPES[name].flags) if name in RECIPES else set()
    return asked


def prepare_run_dir(args, kind, default_name, parser):
    """Pick runs-dir/name, or reuse it for --resume; never overwrite a run silently.

    On --resume the saved flags replace the given ones, so a resumed run trains
    exactly what it started; only the runtime flags in RUNTIME_FLAGS may be
    changed, and only by giving them explicitly (e.g. a larger --max-epochs).
    A finished run with no epochs left is left alone unless --retest asks to test it again.
    """
    args.name = args.name or default_name
    check_output_dir(args.runs_dir, "--runs-dir")
    folder = RunFolder(os.path.join(args.runs_dir, args.name))
    run_dir = folder.path
    if not claim_run_name(args.runs_dir, args.name):
        raise UsageError(f"run folder {run_dir} is being started or trained by another process right now")
    if args.resume:
        if not os.path.exists(folder.last):
            raise UsageError(f"--resume: no checkpoints/last.pt in {run_dir}")
        if _held_by_a_live_run(run_dir):
            raise UsageError(f"--resume: {run_dir} is being trained by another process right now")
        try:
            config = folder.read_config()
            saved = config["args"]
            config["dataset"]["fingerprint"]
        except (RecordError, KeyError, TypeError):
            raise UsageError(f"--resume: {folder.config} is missing or unreadable") from None
        folder.started = config  # read once: the data check and the precision below use it too
        if config.get("model") != kind:
            script = f"train_{config.get('model')}.py" if config.get("model") else "the script that made it"
            raise UsageError(f"--resume: {run_dir} is a {config.get('model')!r} run, not {kind!r}; "
                             f"resume it with {script}")
        given = explicit_flags(parser)
        asked = _asked_flags(given, args.recipe, saved.get("recipe"))
        for key, value in saved.items():
            if not hasattr(args, key) or (key in RUNTIME_FLAGS and key in asked):
                continue
            if key == "recipe":  # runs made when --recipe took one name saved a string
                value = recipe_names(value) or ["exam"]
            elif key in asked and getattr(args, key) != value:
                changeable = ", ".join("--" + k.replace("_", "-") for k in RUNTIME_FLAGS
                                       if k not in ("resume", "retest", "runs_dir", "name", "list_recipes"))
                raise UsageError(f"--resume: --{key.replace('_', '-')} {_spelled(getattr(args, key))}"
                                 f"{'' if key in given else ' (from --recipe)'} differs from "
                                 f"the run's saved {_spelled(value)}; only {changeable} may change")
            setattr(args, key, value)
        for key in sorted(asked - set(saved) - set(RUNTIME_FLAGS)):  # flags newer than the run: it trained
            if getattr(args, key) != parser.get_default(key):         # with their defaults
                raise UsageError(f"--resume: {run_dir} was trained before --{key.replace('_', '-')} existed, "
                                 f"that is with its default {parser.get_default(key)!r}; it cannot change now")
        args.resume = True
        if _nothing_left(folder, args) and not args.retest:
            print(f"{run_dir} is finished (metrics.json; early stopping or --max-epochs reached): nothing to do. "
                  "Pass --retest with --resume to test its best.pt again, or a larger --max-epochs or "
                  "--patience to train on.")
            raise SystemExit(0)
    elif os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError(f"run folder {run_dir} exists and is a file")
    elif os.path.exists(run_dir) and os.listdir(run_dir):
        if _held_by_a_live_run(run_dir):
            raise UsageError(f"run folder {run_dir} is being trained by another process right now")
        if _failed_start(run_dir):
            print(f"note: {run_dir} never reached a checkpoint (an earlier start failed); starting it again")
            shutil.rmtree(run_dir)
        else:
            has_checkpoint = os.path.exists(folder.last)
            raise UsageError(f"run folder {run_dir} already exists"
                             + ("" if has_checkpoint else " and holds files of its own")
                             + "; pass --resume to continue it or --name to start a new one")
    # Nothing is created here: the folder appears with the first file written into it,
    # after the data and the model have been checked, so a bad flag leaves nothing behind.
    return folder


def load_run_data(args, folder):
    """The run's dataset, announced in one line; a resumed run must get the data it started with."""
    dataset = dataset_from_args(args)
    print(dataset.describe())
    if args.resume:
        started_on = folder.started["dataset"]["fingerprint"]
        if started_on != dataset.fingerprint:
            raise UsageError(f"--resume: {folder} was trained on data with fingerprint {started_on[:12]}, "
                             f"but --data/--data-root now give {dataset.fingerprint[:12]}")
    return dataset


def start_run(args, parser, kind, default_name):
    """Everything settled before the model is built: folder, threads, device, precision, data."""
    check_limit(args)
    folder = prepare_run_dir(args, kind, default_name, parser)
    check_flags(args, kind)  # what goes together: once, with a resumed run's saved flags in place
    for sub in ("checkpoints", "figures"):  # a link would write into another folder (another run's)
        if os.path.islink(os.path.join(folder.path, sub)):
            raise UsageError(f"{os.path.join(folder.path, sub)} is a symbolic link; a run writes only into its own "
                             "folder")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    determinism = request_determinism(device)  # before any CUDA work
    precision = resolve_precision(args.precision, device)
    if args.resume:  # the precision the run started with, not --precision auto resolved again here
        precision = saved_precision(folder.started) or precision
    dataset = load_run_data(args, folder)
    return RunSetup(args=args, kind=kind, folder=folder, device=device, precision=precision, dataset=dataset,
                    determinism=determinism)


def prepare_splits(setup):
    """Train/validation indices (seeded by --seed) and test indices, after --limit; saved to the run."""
    dataset, args = setup.dataset, setup.args
    if not dataset.train.labeled:
        raise TrainingError(f"the {dataset.name} training split has no labels")
    n_train = len(dataset.train) if args.limit is None else min(args.limit, len(dataset.train))
    n_test = len(dataset.test) if args.limit is None else min(args.limit, len(dataset.test))
    try:
        train_idx, val_idx = validation_split(dataset.train, n_train, args.val_fraction, args.seed)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if args.label_fraction < 1.0:  # fewer labelled pairs to train on; validation stays whole
        train_idx = class_balanced_subset(train_idx, dataset.train.label, args.label_fraction, args.seed)
    test_idx = torch.arange(n_test)
    save_json({"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist(),
               "note": "row numbers in the dataset's train split (train, val) and test split (test)"},
              setup.folder.split_indices)
    return train_idx, val_idx, test_idx


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_config(setup, extra=None):
    """Everything needed to know what a run did: flags, data, versions, commit, device, precision."""
    import numpy
    dataset = setup.dataset
    return {
        "model": setup.kind,
        "args": vars(setup.args),
        "dataset": {"name": dataset.name, "synthetic": dataset.is_synthetic,
                    "fingerprint": dataset.fingerprint, "info": dataset.info},
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "numpy": numpy.__version__},
        "git_commit": git_commit(),
        "device": str(setup.device),
        "precision": setup.precision,  # as used: --precision auto resolved on this machine
        **(setup.determinism or {}),
        **(extra or {}),
    }


def resume_command(args):
    """The shell command that continues this run, each word quoted for the shell (a runs folder with a
    space, or any other character a shell reads, comes back as the same word)."""
    script = os.path.basename(sys.argv[0])
    return shlex.join(["python", script, "--runs-dir", args.runs_dir, "--name", args.name, "--resume"])


SCALAR_TAGS = {"val_loss": "loss/val", "val_acc": "acc/val"}  # history field -> TensorBoard tag


class Progress:
    """A run between batches: what last.pt holds, and the bookkeeping of each epoch.

    Built after the model and the optimizer: a new run writes config.json, a resumed
    one loads last.pt into the model, the optimizer, the early stopping and every
    random generator. The loop then asks it for epochs() and batches(), reports each
    step with count(), saves an improvement with save_best(), and closes each epoch
    with end_epoch(), which logs it and writes last.pt.
    """

    def __init__(self, setup, model, optimizer, early, **config_extra):
        self.setup, self.args, self.folder = setup, setup.args, setup.folder
        self.model, self.optimizer, self.early = model, optimizer, early
        self.config = run_config(setup, config_extra)
        self.shuffle = torch.Generator().manual_seed(self.args.seed)  # batch order, apart from dropout's RNG
        self.epoch, self.history, self.train_seconds = 0, [], 0.0
        self.order, self.done_batches, self.loss_sum, self.n_seen = None, 0, 0.0, 0
        if self.args.resume:
            state = restore_training(load_checkpoint(self.folder.last), model, optimizer, early, self.shuffle)
            for key, value in state.items():
                setattr(self, key, value)
            if early.best_epoch:  # a missing, damaged or lagging best.pt would only show at the end
                self._mend_best()
            print(f"resuming {self.folder} after epoch {self.epoch}"
                  + (f", batch {self.done_batches}" if self.order is not None else ""))
        else:
            save_json(self.config, self.folder.config)
        # Held while this process trains the run: a second start or resume of it is refused, and a
        # live run is never taken for a failed start (released when the command ends).
        if not hold_lock(self.folder.config):
            raise UsageError(f"run folder {self.folder} is being trained by another process right now")
        # purge_step drops any events logged after the checkpoint, so a resumed curve has no duplicates
        self.writer = SummaryWriter(self.folder.path, purge_step=len(self.history) + 1 if self.args.resume else None)
        self._bar = None

    def epochs(self):
        """The epochs still to run; stops early when the early stopping says so."""
        self._bar = tqdm(range(self.epoch + 1, self.args.max_epochs + 1), desc="epochs", disable=None)
        for epoch in self._bar:
            if self.early.should_stop:
                break
            self.current, self._start, self._timed = epoch, time.time(), False
            yield epoch

    def batches(self, train_index):
        """The epoch's batches of training indices, in a seeded order (several passes when the
        training set is smaller than --epoch-pairs); a resumed half epoch continues its saved
        order after the batches already done."""
        if self.order is None:  # a fresh epoch
            # getattr: runs saved before --epoch-pairs existed trained one pass per epoch
            self.order = epoch_order(train_index, self.shuffle, getattr(self.args, "epoch_pairs", 0))
            self.done_batches, self.loss_sum, self.n_seen = 0, 0.0, 0
        batches = list(batch_indices(self.order, self.args.batch_size))
        for b in tqdm(range(self.done_batches, len(batches)), desc=f"epoch {self.current}", leave=False,
                      disable=None):
            yield batches[b]
        self.train_seconds += time.time() - self._start  # training time only: validation is not in it
        self._timed = True

    @property
    def batch(self):
        """1-based number of the batch in progress (for messages)."""
        return self.done_batches + 1

    def count(self, loss, n):
        """One training step done: its mean loss over n samples."""
        self.loss_sum += loss.item() * n
        self.n_seen += n
        self.done_batches += 1

    def _checkpoint(self, **state):
        save_checkpoint(self.folder.last, kind=self.setup.kind, **training_checkpoint(
            self.model, self.optimizer, self.early, self.shuffle, history=self.history,
            train_seconds=self.train_seconds, **state))

    def save_and_exit(self, stop):
        """Ctrl-C / SIGTERM: save the half epoch so --resume continues exactly; the exit code."""
        if not self._timed:
            self.train_seconds += time.time() - self._start
        self._checkpoint(epoch=self.current - 1, order=self.order, done_batches=self.done_batches,
                         loss_sum=self.loss_sum, n_seen=self.n_seen)
        print(f"\nstopped by signal {stop.signum} in epoch {self.current}; resume with:\n  {resume_command(self.args)}")
        return stop.exit_code

    def _mend_best(self):
        """On resume: best.pt must hold the best epoch. A run stopped between writing last.pt and
        best.pt (kill -9, a full disk) has an older best.pt, or none, while last.pt was written at
        the end of the best epoch itself: best.pt is written again from those weights."""
        try:
            saved = load_checkpoint(self.folder.best).get("epoch")
        except TrainingError:
            saved = None
        if saved == self.early.best_epoch:
            return
        if self.epoch != self.early.best_epoch or self.order is not None:
            raise TrainingError(f"{self.folder.best} does not hold the best epoch ({self.early.best_epoch}) and "
                                "last.pt was written after it: the best weights are gone; start the run again")
        self.save_best(epoch=self.epoch)
        print(f"note: best.pt held {'no checkpoint' if saved is None else f'epoch {saved}'}; written again from "
              f"last.pt, which ended the best epoch ({self.epoch})")

    def save_best(self, epoch=None):
        """The model of this epoch (or, after training, of the best `epoch` once more) is the best: best.pt."""
        select = getattr(self.args, "select", "val_loss")  # a score that rises is negated (training/loop.py)
        score = {"val_loss": self.early.best} if select == "val_loss" else {"select": select, "score": self.early.best}
        save_checkpoint(self.folder.best, model=self.model.state_dict(), epoch=epoch or self.current, **score,
                        kind=self.setup.kind, config=self.config)

    def end_epoch(self, val_loss, **fields):
        """Close the epoch: its history row, TensorBoard scalars, last.pt and the epoch line.

        fields: the run's other validation numbers (val_acc, tau, ...), kept in the history row.
        """
        epoch = self.current
        if not math.isfinite(val_loss):
            raise TrainingError(f"non-finite validation loss at epoch {epoch}; best.pt is untouched")
        seconds = time.time() - self._start
        row = {"epoch": epoch, "train_loss": self.loss_sum / self.n_seen, "val_loss": val_loss, **fields,
               "seconds": seconds, "train_samples": self.n_seen}
        self.history.append(row)
        scalars = [("loss/train", row["train_loss"])] + \
            [(SCALAR_TAGS.get(k, k), v) for k, v in row.items() if k in fields or k == "val_loss"] + \
            [("lr", self.optimizer.param_groups[0]["lr"]), ("time/epoch", seconds)]
        for tag, value in scalars:
            if value is not None:
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()
        self.order, self.epoch = None, epoch
        self._checkpoint(epoch=epoch)
        if self.early.best_epoch == epoch:  # after last.pt, so that last.pt always knows the best epoch
            self.save_best()
        shown = "".join(f"  {k.replace('_', ' ')} {100 * v:.2f}%" if k.endswith("_acc") else f"  {k} {v:.4g}"
                        for k, v in fields.items() if v is not None)
        self._bar.write(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}{shown}  "
                        f"{seconds:.1f}s" + ("  *best*" if self.early.best_epoch == epoch else ""))

    def restore_best(self):
        """Put the best validation weights back; the history row of that epoch."""
        self.model.load_state_dict(load_checkpoint(self.folder.best)["model"])
        return next(h for h in self.history if h["epoch"] == self.early.best_epoch)

"""Shared command-line flags, run-folder setup and the one-line error exit."""
import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import traceback

import torch

from .data import DataError
from .data.sources import add_data_flags, dataset_from_args
from .training import PRECISIONS, TrainingError

# Flags a resumed run may change: how long and where it trains, and where its data lives
# (the data itself is checked by fingerprint in load_run_data).
RUNTIME_FLAGS = ("max_epochs", "patience", "device", "num_threads", "resume", "runs_dir", "name", "data_root")


class UsageError(Exception):
    """A flag combination that cannot work; printed as one line."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def training_parser(description, default_lr=1e-3):
    """An argparse parser with every flag the training scripts share."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, dropout and batch order")
    p.add_argument("--val-fraction", type=fraction, default=0.2,
                   help="share of the training split held out for validation (seeded by --seed)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    p.add_argument("--lr", type=positive_float, default=default_lr, help="Adam learning rate")
    p.add_argument("--max-epochs", type=positive_int, default=100, help="upper bound on epochs")
    p.add_argument("--patience", type=positive_int, default=5,
                   help="stop after this many epochs without a lower validation loss")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N pairs of each split (smoke runs)")
    p.add_argument("--runs-dir", default="runs", help="folder that holds one folder per run")
    p.add_argument("--name", default=None, help="run folder name (None: <model>[-<fusion>]-s<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in runs-dir/name from checkpoints/last.pt "
                        "(its saved flags are reused; --max-epochs and --patience may change)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train; auto = cuda if available")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="forward-pass precision: bf16 autocast or fp32 (weights, optimizer, loss and metrics stay "
                        "fp32); auto = bf16 on a CPU with native bf16 (AVX512-BF16 / AMX) or a bf16 GPU, else fp32")
    p.add_argument("--num-threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch (None: PyTorch's choice)")
    return p


def explicit_flags(parser, argv=None):
    """Names of the flags given on the command line (not left at their defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            probe._add_action(copy.copy(action)).default = argparse.SUPPRESS
    return set(vars(probe.parse_known_args(argv)[0]))


def prepare_run_dir(args, default_name, parser):
    """Pick runs-dir/name, or reuse it for --resume; never overwrite a run silently.

    On --resume the saved flags replace the given ones, so a resumed run trains
    exactly what it started; only the runtime flags in RUNTIME_FLAGS may be
    changed, and only by giving them explicitly (e.g. a larger --max-epochs).
    """
    args.name = args.name or default_name
    run_dir = os.path.join(args.runs_dir, args.name)
    config_path = os.path.join(run_dir, "config.json")
    has_checkpoint = os.path.exists(os.path.join(run_dir, "checkpoints", "last.pt"))
    if args.resume:
        if not has_checkpoint:
            raise UsageError(f"--resume: no checkpoints/last.pt in {run_dir}")
        try:
            with open(config_path) as f:
                saved = json.load(f)["args"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"--resume: {config_path} is missing or unreadable") from None
        given = explicit_flags(parser)
        for key, value in saved.items():
            if not hasattr(args, key) or (key in RUNTIME_FLAGS and key in given):
                continue
            if key in given and getattr(args, key) != value:
                raise UsageError(f"--resume: --{key.replace('_', '-')} {getattr(args, key)} differs from the "
                                 f"run's saved {value}; only --max-epochs, --patience, --device, --num-threads, --data-root may change")
            setattr(args, key, value)
        args.resume = True
    elif os.path.exists(run_dir) and os.listdir(run_dir):
        why = "" if has_checkpoint else " (it has no checkpoint: an earlier start failed? delete it to start over)"
        raise UsageError(f"run folder {run_dir} already exists{why}; pass --resume to continue it "
                         "or --name to start a new one")
    # Nothing is created here: the folder appears with the first file written into it,
    # after the data and the model have been checked, so a bad flag leaves nothing behind.
    return run_dir


def load_run_data(args, run_dir):
    """The run's dataset, announced in one line; a resumed run must get the data it started with."""
    dataset = dataset_from_args(args)
    print(dataset.describe())
    if args.resume:
        with open(os.path.join(run_dir, "config.json")) as f:
            started_on = json.load(f)["dataset"]["fingerprint"]
        if started_on != dataset.fingerprint:
            raise UsageError(f"--resume: {run_dir} was trained on data with fingerprint {started_on[:12]}, "
                             f"but --data/--data-root now give {dataset.fingerprint[:12]}")
    return dataset


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_config(args, model_name, dataset, device, precision, extra=None):
    """Everything needed to know what a run did: flags, data, versions, commit, device."""
    import numpy
    return {
        "model": model_name,
        "args": vars(args),
        "dataset": {"name": dataset.name, "synthetic": dataset.is_synthetic,
                    "fingerprint": dataset.fingerprint, "info": dataset.info},
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "numpy": numpy.__version__},
        "git_commit": git_commit(),
        "device": str(device),
        "precision": precision,  # as used: --precision auto resolved on this machine
        **(extra or {}),
    }


def resume_command(args):
    """The shell command that continues this run."""
    script = os.path.basename(sys.argv[0])
    return f"python {script} --runs-dir {args.runs_dir} --name {args.name} --resume"


def run_main(main):
    """Call main(); turn user-facing errors into one line on stderr and exit code 2 (1 for training)."""
    try:
        code = main()
    except (DataError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    sys.exit(code or 0)

"""The training scripts' shared flags and the one-line error exit (the run folder is common/run.py's)."""
import argparse
import copy
import sys
import traceback

from .argtypes import (bounded_float, bounded_int, fraction, non_negative_float, positive_float, positive_int, run_name,
                       share)
from .augment import SPEED_STEP
from .data import DataError
from .data.sources import add_data_flags
from .io import release_locks
from .facts import MEL_CHANNELS, RECIPES
from .multimodal import AUDIO_FRONTENDS
from .training import CLASSIFIER_SELECTIONS, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainingError


MAX_EPOCH_PAIRS = 10_000_000  # pairs between two validations: 700 passes over the full training split
SPEED_CHANGES = tuple(round(i * SPEED_STEP, 2) for i in range(7))  # --speed-perturb R: 0, 0.05, ..., 0.3
MAX_MEL_CHANNELS = 1024  # conv widths of the mel CNN: at 1024 x 1024 its conv has 9.4 M weights, its fc 52 M


class UsageError(Exception):
    """A flag combination that cannot work; printed as one line."""


def training_parser(description, default_lr=1e-3):
    """An argparse parser with every flag the training scripts share."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, dropout and batch order")
    p.add_argument("--val-fraction", type=fraction, default=0.2,
                   help="share of the training split held out for validation (seeded by --seed)")
    p.add_argument("--label-fraction", type=share, default=1.0,
                   help="train on a class-balanced share of the labelled training pairs (seeded by --seed); "
                        "validation and test stay whole")
    p.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    p.add_argument("--lr", type=positive_float, default=default_lr, help="Adam learning rate")
    p.add_argument("--epoch-pairs", type=bounded_int(0, MAX_EPOCH_PAIRS), default=0, metavar="N",
                   help="an epoch trains on at least N pairs: a smaller training set (e.g. under --label-fraction) "
                        "is passed over several times, each pass in a fresh seeded order, between validations, so "
                        "that early stopping counts comparable numbers of steps; 0 = one pass per epoch")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                   help="adam: the exam's (one learning rate, no weight decay); adamw: decoupled weight decay on "
                        "weight matrices only (biases and norm scales never decay)")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="AdamW weight decay (--optimizer adamw)")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=0.0,
                   help="linear learning-rate warm-up from near 0 over this many epochs (fractions allowed); 0 = none")
    p.add_argument("--schedule", default="constant", choices=SCHEDULES,
                   help="learning rate after the warm-up: constant, or cosine decay to 0 at the --max-epochs the "
                        "run started with (a resume keeps that schedule)")
    p.add_argument("--clip-grad", type=non_negative_float, default=0.0, metavar="NORM",
                   help="clip the global gradient norm to NORM before each step; 0 = off")
    p.add_argument("--recipe", default="exam", choices=tuple(RECIPES),
                   help="exam: the flags above as given (the exam's Adam at a constant rate by default); stable: "
                        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPES["stable"].items())
                        + ", each unless given explicitly")
    p.add_argument("--max-epochs", type=positive_int, default=100, help="upper bound on epochs")
    p.add_argument("--patience", type=positive_int, default=5,
                   help="stop after this many epochs without a better validation score (--select: by default a "
                        "lower validation loss)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N pairs of each split (smoke runs)")
    p.add_argument("--runs-dir", default="runs", help="folder that holds one folder per run")
    p.add_argument("--name", type=run_name, default=None, help="run folder name (None: <model>[-<fusion>]-s<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in runs-dir/name from checkpoints/last.pt "
                        "(its saved flags are reused; --max-epochs and --patience may change); "
                        "a finished run is left as it is")
    p.add_argument("--retest", action="store_true",
                   help="with --resume on a finished run: test its best.pt again and rewrite its outputs")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train; auto = cuda if available")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="forward-pass precision: bf16 autocast or fp32 (weights, optimizer, loss and metrics stay "
                        "fp32); auto = bf16 on a CPU with native bf16 (AVX512-BF16 / AMX) or a bf16 GPU, else fp32")
    p.add_argument("--num-threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch (None: PyTorch's choice)")
    return p


def apply_recipe(args, parser, argv=None):
    """Fill in --recipe's flags (those not given on the command line); the resolved values are what
    config.json records. A resumed run keeps its saved flags: run.py puts them back afterwards."""
    given = explicit_flags(parser, argv)
    for key, value in RECIPES[args.recipe].items():
        if key not in given:
            setattr(args, key, value)
    return args


def add_diagnostics_flag(p):
    p.add_argument("--log-diagnostics", action="store_true",
                   help="log per-module gradient norms, the share of dead ReLU units and the attention entropy "
                        "to TensorBoard every epoch (diag/...) and at each of the first 250 steps (diag_step/...; "
                        "common/diagnostics.py); changes no number of the run")


def check_optimizer_flags(args, parser):
    """--recipe's flags filled in, then the optimizer flags that cannot work together (argparse has
    checked each value)."""
    apply_recipe(args, parser)
    if args.resume:  # the run's saved flags come back in start_run, which refuses any that would change
        return
    if args.weight_decay and args.optimizer != "adamw":
        raise UsageError("--weight-decay needs --optimizer adamw (the exam's Adam has none)")


def add_audio_frontend_flags(p):
    """--audio-frontend and --mel-channels, for the scripts that build an audio featurizer."""
    p.add_argument("--audio-frontend", default="raw", choices=AUDIO_FRONTENDS,
                   help="raw: the exam's 1-D CNN on the waveform; mel: log-mel features (64 bands, 25 ms windows, "
                        "10 ms hop) computed by the model from the same waveform, then a small 2-D CNN")
    p.add_argument("--mel-channels", type=bounded_int(1, MAX_MEL_CHANNELS), nargs=2, default=list(MEL_CHANNELS),
                   metavar=("C1", "C2"),
                   help="channels of the two conv layers of the mel front-end's CNN")
    p.add_argument("--mel-top-db", type=bounded_float(1.0, 200.0), default=None, metavar="DB",
                   help="floor each log-mel map DB below its loudest bin (e.g. 50), so that a clean recording's "
                        "silent padding looks like the mild noise floor training saw (default: no floor)")


def add_speed_perturb_flag(p):
    """--speed-perturb, for the classifier scripts that train on the waveforms."""
    p.add_argument("--speed-perturb", type=float, default=0.0, metavar="R", choices=SPEED_CHANGES,
                   help="speed perturbation of the training waveforms: at every step each one is resampled by a "
                        f"factor drawn from 1-R ... 1+R in steps of {SPEED_STEP:g}, R one of {SPEED_CHANGES[1]:g} ... "
                        f"{SPEED_CHANGES[-1]:g} (pitch and tempo change together, as between voices; "
                        "common/augment.py); e.g. 0.15; 0 is off and draws nothing")


def add_select_flag(p):
    """--select, for the classifier scripts (train_contrastive.py has choices of its own)."""
    p.add_argument("--select", default="val_loss", choices=CLASSIFIER_SELECTIONS,
                   help="which epoch's weights best.pt keeps, and what --patience waits on: the lowest validation "
                        "loss (the exam's rule) or the highest validation accuracy (a tie keeps the earlier epoch)")


def check_audio_frontend_flags(args):
    if args.resume:  # checked against the run's saved flags in start_run instead
        return
    if args.audio_frontend != "mel" and list(args.mel_channels) != list(MEL_CHANNELS):
        raise UsageError("--mel-channels needs --audio-frontend mel")
    if args.audio_frontend != "mel" and args.mel_top_db is not None:
        raise UsageError("--mel-top-db needs --audio-frontend mel")


def explicit_flags(parser, argv=None):
    """Names of the flags given on the command line (not left at their defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            probe._add_action(copy.copy(action)).default = argparse.SUPPRESS
    return set(vars(probe.parse_known_args(argv)[0]))


def run_main(main):
    """Call main(); turn user-facing errors into one line on stderr and exit code 2 (1 for training)."""
    try:
        code = main()
    except SystemExit as e:  # e.g. "nothing to do" on a finished run
        code = e.code
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
    finally:
        release_locks()  # a run's lock ends with its command, also inside a test process
    sys.exit(code or 0)

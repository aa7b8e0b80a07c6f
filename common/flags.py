"""Every flag of the training scripts, and the named recipes that bundle them: one table each, no torch.

A flag is one `Flag` entry: its name, type, default, help, the `--help` section it sits in, the
scripts that take it, whether a `--resume` may change it, whether it changes no number of a run,
the value runs made before it existed trained with, and what it needs of the other flags. The
parsers (common/training/cli.py), the resume rules (common/training/lifecycle.py), the kept-run comparisons
(common/runfolder.py) and the checks of what goes together (`check_flags`) are all made from it.

A recipe is a named bundle of flag values (`--recipe NAME`, repeatable, applied in order; a flag
given on the command line wins). config.json records the recipe names beside the resolved flags.
Adding a flag: one entry below plus its use; adding a recipe: one entry in RECIPES.
"""
import argparse
from dataclasses import dataclass, field

from .argtypes import (bounded_float, bounded_int, fraction, non_negative_float, non_negative_int,
                       positive_float, positive_int, probability, run_name, share, speaker_name)
from .facts import (AUDIO_FRONTENDS, AUGMENTATIONS, CLASSIFIER_SELECTIONS, CONTRASTIVE_SELECTIONS, FUSION_CHOICES,
                    MEL_CHANNELS, OPTIMIZERS, PRECISIONS, PROJECTION_HEADS, SCHEDULES, SIMILARITIES, SOURCES,
                    SPEED_CHANGES, SPEED_STEP, STAND_INS)

IMAGE, AUDIO, MULTIMODAL, CONTRASTIVE = "image", "audio", "multimodal", "contrastive"
SCRIPTS = (IMAGE, AUDIO, MULTIMODAL, CONTRASTIVE)  # train_<script>.py
CLASSIFIERS = (IMAGE, AUDIO, MULTIMODAL)
ALL = SCRIPTS
WAVEFORMS = (AUDIO, MULTIMODAL, CONTRASTIVE)  # the scripts that build an audio featurizer
GROUPS = ("recipe", "data", "model", "training", "run", "advanced")  # --help's sections, in order
GROUP_TITLES = {"recipe": "recipes (named bundles of the flags below)", "data": "data", "model": "model",
                "training": "training", "run": "the run folder", "advanced": "advanced (rarely changed)"}
NEW = object()  # Flag.old for a flag that every run has had
MAX_EPOCH_PAIRS = 10_000_000  # pairs between two validations: 700 passes over the full training split
MAX_MEL_CHANNELS = 1024  # conv widths of the mel CNN: at 1024 x 1024 its conv has 9.4 M weights, its fc 52 M
# the fusions that have each width (common/nets/fusions.py)
FUSION_WIDTHS = {"fused_dim": ("bilinear", "factorized", "attention-tokens"), "hidden_dim": ("factorized",),
                 "heads": ("attention", "attention-tokens")}


def bias_init(text):
    """--bias-init: a number from -100 to 100 (sigmoid saturates long before), or 'prior' for -ln(B - 1),
    the log-odds of a positive pair in a batch of B."""
    return text if text == "prior" else bounded_float(-100.0, 100.0)(text)


@dataclass(frozen=True)
class Flag:
    name: str                    # --like-this
    help: str
    group: str
    scripts: tuple = ALL
    default: object = None
    type: object = None
    choices: tuple = None
    nargs: object = None
    metavar: object = None
    action: str = None           # "store_true", "append"
    runtime: bool = False        # a --resume may change it (how long and where a run trains, not what)
    neutral: bool = False        # changes no number of the run: a kept run answers for a command with or without it
    old: object = NEW            # what runs made before the flag existed trained with
    defaults: dict = field(default_factory=dict)  # a script's own default, where it differs

    @property
    def dest(self):
        return self.name[2:].replace("-", "_")

    def default_for(self, script):
        if self.action == "store_true":
            return False
        return self.defaults.get(script, self.default)


FLAGS = (
    # recipes
    Flag("--recipe", "apply the named bundle of flags (repeatable, in order; a flag given explicitly wins); "
         "--list-recipes shows them", "recipe", action="append", metavar="NAME"),
    Flag("--list-recipes", "print every recipe with its flags and exit", "recipe", action="store_true",
         runtime=True),
    # data
    Flag("--data", "data source: avdigits (real MNIST + spoken digits), course (the course's .pth files), synthetic "
         "(offline stand-in), auto = the first of these found", "data", default="auto", choices=SOURCES),
    Flag("--data-root", "folder with mnist/ and fsdd/recordings/ or the course files (None: $AVDIGITS_DATA, "
         "else ./data)", "data", runtime=True),
    Flag("--holdout-speaker", "unseen voices: leave every recording of this FSDD speaker (e.g. jackson) out of "
         "training and make the test pairs from that speaker's recordings only (None: FSDD's split by take)",
         "data", type=speaker_name, metavar="NAME", old=None),
    Flag("--val-speaker", "with --holdout-speaker: a second speaker whose recordings make the validation pairs (a "
         "fixed 20%% of the training split) and no training pair, so early stopping and best.pt are chosen on an "
         "unheard voice too (None: validation shares the training voices)", "data", type=speaker_name,
         metavar="NAME", old=None),
    Flag("--data-seed", "seed of the pairing and noise recipe", "advanced", default=0, type=non_negative_int),
    Flag("--synthetic-size", "total pairs of the synthetic source, about 75%% train (None: the course's sizes)",
         "advanced", type=int),
    Flag("--clean-views", "pair as usual but add no noise to either view (a control: how hard are the clean "
         "views?)", "advanced", action="store_true", old=False),
    Flag("--val-fraction", "share of the training split held out for validation (seeded by --seed)", "advanced",
         default=0.2, type=fraction),
    Flag("--label-fraction", "train on a class-balanced share of the labelled training pairs (seeded by --seed); "
         "validation and test stay whole", "advanced", default=1.0, type=share, old=1.0),
    # model
    Flag("--fusion", "how the two 128-d feature vectors are fused (late = average of two unimodal heads)", "model",
         scripts=(MULTIMODAL,), default="concat", choices=tuple(FUSION_CHOICES)),
    Flag("--audio-frontend", "raw: the exam's 1-D CNN on the waveform; mel: log-mel features (64 bands, 25 ms "
         "windows, 10 ms hop) computed by the model from the same waveform, then a small 2-D CNN", "model",
         scripts=WAVEFORMS, default="raw", choices=AUDIO_FRONTENDS, old="raw"),
    Flag("--mel-channels", "channels of the two conv layers of the mel front-end's CNN", "model", scripts=WAVEFORMS,
         default=list(MEL_CHANNELS), type=bounded_int(1, MAX_MEL_CHANNELS), nargs=2, metavar=("C1", "C2"),
         old=list(MEL_CHANNELS)),
    Flag("--mel-top-db", "floor each log-mel map DB below its loudest bin (e.g. 50), so that a clean recording's "
         "silent padding looks like the mild noise floor training saw (default: no floor)", "advanced",
         scripts=WAVEFORMS, type=bounded_float(1.0, 200.0), metavar="DB", old=None),
    Flag("--modality-dropout", "modality dropout: each training pair loses one view (image or audio, even odds) with "
         "probability P; late fusion leaves the lost view's head out of the average instead", "model",
         scripts=(MULTIMODAL,), default=0.0, type=probability, metavar="P", old=0.0),
    Flag("--init-from", "load featurizer weights from this best.pt before training (repeatable: e.g. the image "
         "run's and the audio run's)", "model", scripts=(MULTIMODAL,), default=[], action="append",
         metavar="CHECKPOINT"),
    Flag("--calibrate", "late fusion: after training, fit one temperature per head on the validation pairs (with "
         "--val-speaker, an unheard voice) and divide each head's logits by it from then on, so that a head that "
         "is confidently wrong there counts for less (common/training/calibration.py)", "advanced",
         scripts=(MULTIMODAL,), action="store_true", old=False),
    Flag("--modality-dropout-fill", "what a view lost to --modality-dropout becomes (evaluate.py's two stand-ins for "
         "a missing view)", "advanced", scripts=(MULTIMODAL,), default="zeros", choices=STAND_INS, old="zeros"),
    Flag("--image-dim", "width of the image featurizer's output vector (the exam: 128)", "advanced",
         scripts=(MULTIMODAL,), default=128, type=positive_int),
    Flag("--audio-dim", "width of the audio featurizer's output vector (the exam: 128); add, mul, max, attention "
         "and gated need it equal to --image-dim", "advanced", scripts=(MULTIMODAL,), default=128, type=positive_int),
    Flag("--fused-dim", "output width of bilinear / factorized, token width of attention-tokens", "advanced",
         scripts=(MULTIMODAL,), default=128, type=positive_int),
    Flag("--hidden-dim", "hidden (rank) width h of factorized", "advanced", scripts=(MULTIMODAL,), default=256,
         type=positive_int),
    Flag("--heads", "attention heads of attention / attention-tokens", "advanced", scripts=(MULTIMODAL,), default=4,
         type=positive_int),
    Flag("--loss", "nt_xent: symmetric in-batch NT-Xent (CLIP); nt_log: all-pairs NT-Log (SigLIP)", "model",
         scripts=(CONTRASTIVE,), default="nt_xent", choices=("nt_xent", "nt_log")),
    Flag("--tau", "temperature (the initial one with --learn-tau, then within [0.01, 1])", "model",
         scripts=(CONTRASTIVE,), default=0.1, type=positive_float),
    Flag("--learn-tau", "learn the temperature (clamped 1/tau in [1, 100])", "model", scripts=(CONTRASTIVE,),
         action="store_true"),
    Flag("--learn-bias", "nt_log only: learn the bias b of sigmoid(s/tau + b), starting at --bias-init", "model",
         scripts=(CONTRASTIVE,), action="store_true"),
    Flag("--bias-init", "nt_log: the (initial, with --learn-bias) bias b; a number or 'prior' = -ln(batch - 1). "
         "None: -ln 127 when learned, else 0 (the exam's NT-Log)", "advanced", scripts=(CONTRASTIVE,),
         type=bias_init, metavar="B"),
    Flag("--similarity", "similarity of the projections in the loss and in retrieval", "advanced",
         scripts=(CONTRASTIVE,), default="cosine", choices=SIMILARITIES),
    Flag("--proj-dim", "output width of the projection heads", "advanced", scripts=(CONTRASTIVE,), default=64,
         type=positive_int),
    Flag("--probe-steps", "L-BFGS iterations of each linear probe", "advanced", scripts=(CONTRASTIVE,), default=100,
         type=positive_int),
    Flag("--head", "projection head: mlp = fc-ReLU-fc (the first recipe); mlp-bn = fc-BatchNorm-ReLU-fc then L2 "
         "norm", "advanced", scripts=(CONTRASTIVE,), default="mlp", choices=PROJECTION_HEADS),
    Flag("--feat-dropout", "dropout inside both featurizers during pre-training (the exam's 0.5)", "advanced",
         scripts=(CONTRASTIVE,), default=0.5, type=probability, metavar="P"),
    Flag("--own-lr", "--optimizer adamw: learning rate of the learned temperature and bias, in their own group "
         "without weight decay (None: --lr)", "advanced", scripts=(CONTRASTIVE,), type=positive_float, metavar="LR"),
    Flag("--augment", "views: independent extra pixel noise and white noise (half the pairs, random levels) and "
         "small shifts per view at every step (common/data/augment.py)", "advanced", scripts=(CONTRASTIVE,),
         default="none", choices=AUGMENTATIONS),
    # training
    Flag("--seed", "seed of initialisation, dropout and batch order", "training", default=0, type=int),
    Flag("--batch-size", "training batch size", "training", default=64, type=positive_int,
         defaults={CONTRASTIVE: 128}),  # more in-batch negatives; the learned NT-Log bias assumes 128
    Flag("--lr", "learning rate (Adam / AdamW)", "training", default=1e-3, type=positive_float),
    Flag("--max-epochs", "upper bound on epochs", "training", default=100, type=positive_int, runtime=True),
    Flag("--patience", "stop after this many epochs without a better validation score (--select: by default a "
         "lower validation loss)", "training", default=5, type=positive_int, runtime=True),
    Flag("--speed-perturb", "speed perturbation of the training waveforms: at every step each one is resampled by a "
         f"factor drawn from 1-R ... 1+R in steps of {SPEED_STEP:g}, R one of {SPEED_CHANGES[1]:g} ... "
         f"{SPEED_CHANGES[-1]:g} (pitch and tempo change together, as between voices; common/data/augment.py); "
         "e.g. 0.15; "
         "0 is off and draws nothing", "advanced", scripts=(AUDIO, MULTIMODAL), default=0.0, type=float,
         choices=SPEED_CHANGES, metavar="R", old=0.0),
    Flag("--select", "which epoch's weights best.pt keeps, and what --patience waits on: the lowest validation loss "
         "(the exam's rule) or the highest validation accuracy (a tie keeps the earlier epoch)", "advanced",
         scripts=CLASSIFIERS, default="val_loss", choices=CLASSIFIER_SELECTIONS, old="val_loss"),
    Flag("--select", "which epoch's weights best.pt keeps: the lowest validation loss, or the highest validation "
         "digit@1 (the mean of both directions; uses the validation labels)", "advanced", scripts=(CONTRASTIVE,),
         default="val_loss", choices=CONTRASTIVE_SELECTIONS, old="val_loss"),
    Flag("--epoch-pairs", "an epoch trains on at least N pairs: a smaller training set (e.g. under --label-fraction) "
         "is passed over several times, each pass in a fresh seeded order, between validations, so that early "
         "stopping counts comparable numbers of steps; 0 = one pass per epoch", "advanced", default=0,
         type=bounded_int(0, MAX_EPOCH_PAIRS), metavar="N", old=0),
    Flag("--optimizer", "adam: the exam's (one learning rate, no weight decay); adamw: decoupled weight decay on "
         "weight matrices only (biases and norm scales never decay)", "advanced", default="adam", choices=OPTIMIZERS,
         old="adam"),
    Flag("--weight-decay", "AdamW weight decay (--optimizer adamw)", "advanced", default=0.0, type=non_negative_float,
         old=0.0),
    Flag("--warmup-epochs", "linear learning-rate warm-up from near 0 over this many epochs (fractions allowed); "
         "0 = none", "advanced", default=0.0, type=non_negative_float, old=0.0),
    Flag("--schedule", "learning rate after the warm-up: constant, or cosine decay to 0 at the --max-epochs the run "
         "started with (a resume keeps that schedule)", "advanced", default="constant", choices=SCHEDULES,
         old="constant"),
    Flag("--clip-grad", "clip the global gradient norm to NORM before each step; 0 = off", "advanced", default=0.0,
         type=non_negative_float, metavar="NORM", old=0.0),
    Flag("--log-diagnostics", "log per-module gradient norms, the share of dead ReLU units and the attention entropy "
         "to TensorBoard every epoch (diag/...) and at each of the first 250 steps (diag_step/...; "
         "common/training/diagnostics.py); changes no number of the run, so a resume may switch it",
         "advanced", scripts=CLASSIFIERS, action="store_true", neutral=True, runtime=True),
    # the run folder
    Flag("--runs-dir", "folder that holds one folder per run", "run", default="runs", runtime=True),
    Flag("--name", "run folder name (None: <model>[-<fusion>]-s<seed>)", "run", type=run_name, runtime=True),
    Flag("--resume", "continue the run in runs-dir/name from checkpoints/last.pt (its saved flags are reused; "
         "--max-epochs and --patience may change); a finished run is left as it is", "run", action="store_true",
         runtime=True),
    Flag("--retest", "with --resume on a finished run: test its best.pt again and rewrite its outputs", "advanced",
         action="store_true", runtime=True),
    Flag("--limit", "use only the first N pairs of each split (smoke runs)", "run", type=positive_int),
    Flag("--device", "where to train; auto = cuda if available", "advanced", default="auto",
         choices=("auto", "cpu", "cuda"), runtime=True),
    Flag("--precision", "forward-pass precision: bf16 autocast or fp32 (weights, optimizer, loss and metrics stay "
         "fp32); auto = bf16 on a CPU with native bf16 (AVX512-BF16 / AMX) or a bf16 GPU, else fp32", "advanced",
         default="auto", choices=PRECISIONS),
    Flag("--num-threads", "CPU threads for PyTorch (None: PyTorch's choice)", "advanced", type=positive_int,
         runtime=True),
)


def flags_of(script):
    """The flags train_<script>.py takes, in the table's order."""
    return tuple(f for f in FLAGS if script in f.scripts)


def flag(dest, script=None):
    """The entry of a flag by its attribute name (the one of `script` where two share a name)."""
    return next(f for f in FLAGS if f.dest == dest and (script is None or script in f.scripts))


RUNTIME_FLAGS = tuple(dict.fromkeys(f.dest for f in FLAGS if f.runtime))
NUMBER_NEUTRAL_FLAGS = tuple(dict.fromkeys(f.name for f in FLAGS if f.neutral))
# What runs made before a flag existed did: their config.json lacks the flag, and they trained with this.
OLD_RUN_DEFAULTS = {f.dest: f.old for f in FLAGS if f.old is not NEW}


@dataclass(frozen=True)
class Recipe:
    help: str
    flags: dict                  # dest -> value, as config.json records it
    scripts: tuple = ALL
    parts: tuple = ()            # a recipe made of others: their names (it is read back as them)


def _made_of(help, *parts):
    """A recipe that is other recipes together: their flags, for the scripts all of them are for."""
    return Recipe(help, {k: v for p in parts for k, v in RECIPES[p].flags.items()},
                  tuple(s for s in ALL if all(s in RECIPES[p].scripts for p in parts)), parts)


RECIPES = {
    "exam": Recipe("the exam's setup: the defaults (Adam at a constant 1e-3, the raw-waveform audio CNN)", {}),
    "stable": Recipe("warm-up, cosine decay, AdamW and clipping: every seed of attention-tokens trains",
                     {"optimizer": "adamw", "weight_decay": 1e-4, "warmup_epochs": 1.0, "schedule": "cosine",
                      "clip_grad": 1.0}),
    "mel": Recipe("the log-mel audio front-end (32/64 channels)", {"audio_frontend": "mel"}, WAVEFORMS),
    "mel-lean": Recipe("the log-mel front-end at a quarter of its channels (8/16)",
                       {"audio_frontend": "mel", "mel_channels": [8, 16]}, WAVEFORMS),
    "db40": Recipe("with mel or mel-lean: floor each log-mel map 40 dB below its peak (clean audio no longer "
                   "falls off a cliff)", {"mel_top_db": 40.0}, WAVEFORMS),
    "mdrop": Recipe("modality dropout 0.3: each training pair loses one view with probability 0.3",
                    {"modality_dropout": 0.3}, (MULTIMODAL,)),
    "speed": Recipe("speed perturbation of the training waveforms, factors 0.85 ... 1.15",
                    {"speed_perturb": 0.15}, (AUDIO, MULTIMODAL)),
    "contrastive-v1": Recipe("the first contrastive recipe's temperature sweep: batch 128, ten epochs, no early stop",
                             {"batch_size": 128, "max_epochs": 10, "patience": 10}, (CONTRASTIVE,)),
    "contrastive-v2": Recipe("the second contrastive recipe: BatchNorm head, AdamW with warm-up and cosine decay, "
                             "augmented views, best.pt by validation digit@1, 24 epochs",
                             {"batch_size": 256, "head": "mlp-bn", "feat_dropout": 0.1, "optimizer": "adamw",
                              "weight_decay": 1e-4, "warmup_epochs": 1.0, "schedule": "cosine",
                              "select": "val_digit1", "max_epochs": 24, "patience": 24, "augment": "views"},
                             (CONTRASTIVE,)),
    "nt-xent": Recipe("NT-Xent at tau 0.1", {"loss": "nt_xent", "tau": 0.1}, (CONTRASTIVE,)),
    "nt-log": Recipe("NT-Log with a learned temperature and bias (from the prior), their own learning rate 1e-2",
                     {"loss": "nt_log", "tau": 0.1, "learn_tau": True, "learn_bias": True, "bias_init": "prior",
                      "own_lr": 1e-2}, (CONTRASTIVE,)),
}
RECIPES["recommended"] = _made_of("for your own photos and voice (predict.py): mel-lean, db40 and mdrop together, "
                                  "the fusion map's pick on unheard voices (docs/RESULTS.md)",
                                  "mel-lean", "db40", "mdrop")


def spell(dest, value):
    """A flag and its value as a command line spells them."""
    name = "--" + dest.replace("_", "-")
    if value is True:
        return name
    if isinstance(value, (list, tuple)):
        return " ".join([name] + [f"{v:g}" if isinstance(v, float) else str(v) for v in value])
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def recipes_text(script=None):
    """--list-recipes: each recipe (of `script`, when given) with its help and its flags."""
    lines = []
    for name, recipe in RECIPES.items():
        if script is None or script in recipe.scripts:
            flags = " ".join(spell(k, v) for k, v in recipe.flags.items()) or "(no flags: the defaults)"
            lines += [f"{name:16s} {recipe.help}", f"{'':16s}   {flags}"]
    return "\n".join(lines)


def recipe_names(value):
    """The recipe names a config.json records: a list (or, for runs made when --recipe took one name,
    a string); each entry may hold several names joined by commas."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [name for v in values for name in str(v).split(",") if name]


def resolve_recipes(args, script):
    """(recipe names, other flags): a run's flags (config.json's args, a dict) as the recipes that
    explain them plus the flags it set beyond them (runtime, number-neutral and data flags aside).
    The recorded recipe names come first; for runs made before a recipe existed, each recipe whose
    every flag the run has (at a non-default value) is taken, in the table's order."""
    def value(dest):
        return args.get(dest, OLD_RUN_DEFAULTS.get(dest, _default(dest, script)))

    names = [part for n in recipe_names(args.get("recipe")) if n in RECIPES for part in RECIPES[n].parts or (n,)]
    explained = {k: v for n in names for k, v in RECIPES[n].flags.items()}
    larger_first = sorted(RECIPES.items(), key=lambda item: -len(item[1].flags))  # mel-lean before mel
    for name, recipe in larger_first:
        if name in names or script not in recipe.scripts or not recipe.flags or recipe.parts:
            continue
        if all(_same(value(k), v) for k, v in recipe.flags.items()) \
                and any(not _same(v, _default(k, script)) for k, v in recipe.flags.items()) \
                and not all(k in explained and _same(explained[k], v) for k, v in recipe.flags.items()):
            names.append(name)
            explained.update(recipe.flags)
    names.sort(key=list(RECIPES).index)
    explained = {}
    for name in names:
        explained.update(RECIPES[name].flags)
    others = {}
    for f in flags_of(script):
        dest = f.dest
        if f.runtime or f.neutral or f.group in ("recipe", "data") or dest in ("seed", "limit", "precision") \
                or dest not in args:
            continue
        wanted = explained.get(dest, f.default_for(script))
        if not _same(args[dest], wanted) and not (f.action == "append" and not args[dest] and not wanted):
            others[dest] = args[dest]
    return [n for n in names if n != "exam"] or ["exam"], others


def _default(dest, script):
    try:
        return flag(dest, script).default_for(script)
    except StopIteration:
        return None


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def config_problem(config):
    """Why a run's config.json cannot describe a model this code builds, or None: a model kind it does
    not know, args that are not a dict, or a saved flag value the flag itself would refuse (an unknown
    fusion, mel channels of a million, a null where a number belongs), checked by the table's own
    types and choices."""
    script = config.get("model") if isinstance(config, dict) else None
    args = config.get("args") if isinstance(config, dict) else None
    if script not in SCRIPTS:
        return f"its model {script!r} is none of {', '.join(SCRIPTS)}"
    if not isinstance(args, dict):
        return "its args are not a dict of flags"
    for f in flags_of(script):
        if f.dest not in args or f.runtime or f.action == "append" or f.group == "recipe":
            continue
        value = args[f.dest]
        if f.action == "store_true":
            ok = isinstance(value, bool)
        elif value is None:
            ok = f.default_for(script) is None
        else:
            ok = isinstance(value, list) == bool(f.nargs) and (not f.nargs or len(value) == f.nargs)
            values = value if f.nargs else [value]
            try:
                values = [f.type(str(v)) if f.type else v for v in values] if ok else values
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                ok = False
            ok = ok and (f.choices is None or all(v in f.choices for v in values))
        if not ok:
            return f"its {f.name} {value!r} is not a value that flag takes"
    return None


# ---------------------------------------------------------------- what needs what

def _given(args, dest, script):
    """True when a flag is set away from its default (however it got there)."""
    return not _same(getattr(args, dest, None), _default(dest, script))


def flag_problems(args, script):
    """Every combination of flags that cannot work, or that would be silently ignored, as one-line
    messages: checked once, after a recipe and a resumed run's saved flags are in place."""
    problems = []

    def need(ok, message):
        if not ok:
            problems.append(message)

    get = lambda dest: getattr(args, dest, None)  # noqa: E731
    need(not _given(args, "weight_decay", script) or get("optimizer") == "adamw",
         "--weight-decay needs --optimizer adamw (the exam's Adam has none)")
    if script in WAVEFORMS:
        need(get("audio_frontend") == "mel" or not _given(args, "mel_channels", script),
             "--mel-channels needs --audio-frontend mel")
        need(get("audio_frontend") == "mel" or get("mel_top_db") is None, "--mel-top-db needs --audio-frontend mel")
    need(not get("retest") or get("resume"), "--retest needs --resume (it tests a finished run's best.pt again)")
    need(get("synthetic_size") is None or get("data") in ("synthetic", "auto"),
         "--synthetic-size needs --data synthetic (it sizes the synthetic source only)")
    need(get("val_speaker") is None or get("holdout_speaker") is not None,
         "--val-speaker needs --holdout-speaker (validation on one unheard voice, test on another)")
    need(get("val_speaker") is None or get("val_speaker") != get("holdout_speaker"),
         "--val-speaker must be another speaker than --holdout-speaker")
    if script == MULTIMODAL:
        fusion = get("fusion")
        for dest, fusions in FUSION_WIDTHS.items():
            need(fusion in fusions or not _given(args, dest, script),
                 f"--{dest.replace('_', '-')} has no effect on {fusion} fusion (only on {', '.join(fusions)})")
        need(not get("calibrate") or fusion == "late", "--calibrate needs --fusion late (it weighs late fusion's two "
             "heads)")
        need(get("modality_dropout_fill") == "zeros" or (get("modality_dropout") and fusion != "late"),
             "--modality-dropout-fill needs --modality-dropout above 0 and a fusion other than late (late fusion "
             "leaves the lost view's head out instead of filling the view)")
    if script == CONTRASTIVE:
        need(get("label_fraction") == 1.0, "--label-fraction is for the classifiers: contrastive pre-training uses no "
             "labels")
        need(get("own_lr") is None or get("optimizer") == "adamw", "--own-lr needs --optimizer adamw")
        need(get("bias_init") is None or get("loss") == "nt_log",
             "--bias-init needs --loss nt_log (NT-Xent has no bias)")
        need(not get("learn_bias") or get("loss") == "nt_log", "--learn-bias needs --loss nt_log (NT-Xent has no bias)")
    return problems

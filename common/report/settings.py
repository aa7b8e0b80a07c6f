"""Which runs share a row of the results table, and which rows were trained as the exam did.

A row groups the runs that differ only in their seed: same data, model, fusion and every flag in
CONFIG_KEYS (missing flags of older runs read as records.OLD_RUN_DEFAULTS).
"""
from ..flags import RECIPES
from ..runfolder import OLD_RUN_DEFAULTS, init_source

MODELS = ("image", "audio", "multimodal")
FLOOR_VIEWS = {"image": "image", "audio": "audio", "multimodal": "both"}  # a model's views, as a floor names them
# config.json args that change what a run trains; runs differing in any of them never share a row.
CSV_CONFIG_KEYS = ("lr", "batch_size", "max_epochs", "patience", "val_fraction",
                   "image_dim", "audio_dim", "fused_dim", "hidden_dim", "heads", "init_from", "precision",
                   "label_fraction", "epoch_pairs", "modality_dropout", "modality_dropout_fill", "audio_frontend",
                   "mel_channels")
# the optimizer recipe's flags (common/training/cli.py): part of a row's identity, not CSV columns of their own
RECIPE_KEYS = ("optimizer", "weight_decay", "warmup_epochs", "schedule", "clip_grad")
CONFIG_KEYS = CSV_CONFIG_KEYS + RECIPE_KEYS + ("mel_top_db", "speed_perturb", "select", "calibrate", "experts",
                                                "gate")
# what a row may differ in from the exam's row of the same model to be paired with it as a recipe: the
# optimizer recipe's flags and the rule that picks best.pt (--select)
PAIRED_RECIPE_KEYS = RECIPE_KEYS + ("select",)
KEY_DEFAULTS = OLD_RUN_DEFAULTS  # what runs from before a flag existed did
# the exam's own training and network: the rows that get the exam's numbers beside them and serve as
# the baselines of the paired comparisons (the beyond-the-exam variants differ in one of these)
EXAM_SETTINGS = {"label_fraction": 1.0, "epoch_pairs": 0, "init_from": None, "modality_dropout": 0.0,
                 "audio_frontend": "raw", "optimizer": "adam", "weight_decay": 0.0, "warmup_epochs": 0.0,
                 "schedule": "constant", "clip_grad": 0.0, "speed_perturb": 0.0, "select": "val_loss",
                 "calibrate": False, "experts": False, "gate": None}
EXAM_DEFAULT_ARGS = {"lr": 0.001, "batch_size": 64, "max_epochs": 100, "patience": 5, "val_fraction": 0.2,
                     "image_dim": 128, "audio_dim": 128, "fused_dim": 128, "hidden_dim": 256, "heads": 4}
BEYOND_KEYS = ("label_fraction", "epoch_pairs", "init_from", "modality_dropout", "modality_dropout_fill",
               "audio_frontend", "mel_channels", "mel_top_db", "speed_perturb", "select", "calibrate",
               "experts", "gate") + RECIPE_KEYS


# The exam's single-run test numbers (its Table 1 and Problems 1a/1b), on its own data: (loss, accuracy %).
EXAM = {("image", None): (0.437, 88.2), ("audio", None): (0.923, 71.5),
        ("multimodal", "concat"): (0.278, 94.5), ("multimodal", "add"): (0.276, 94.9),
        ("multimodal", "mul"): (0.464, 88.9), ("multimodal", "max"): (0.312, 92.7),
        ("multimodal", "attention"): (0.210, 94.0), ("multimodal", "gated"): (0.237, 94.0),
        ("multimodal", "bilinear"): (0.449, 86.0), ("multimodal", "factorized"): (0.213, 94.0)}


def held_out_name(dataset, speaker):
    """A dataset's name as the tables show it: a held-out-speaker build (--holdout-speaker) says so."""
    return f"{dataset}, speaker {speaker} unseen" if speaker else dataset


def config_key(args):
    """The training configuration as a hashable tuple of (name, value) pairs."""
    key = []
    for name in CONFIG_KEYS:
        value = args.get(name, KEY_DEFAULTS.get(name))
        if name == "init_from":
            value = init_source(value, args.get("init_from_source"))
        elif name == "experts":  # the two runs combine.py fused: which ones is the fold's, not the row's
            value = bool(value)
        elif isinstance(value, list):
            value = tuple(value)
        key.append((name, value))
    return tuple(key)


def is_exam_setup(group):
    """True for a row trained as the exam did: the scripts' default training flags and widths (None: the
    flag does not apply to this model), all labels, no pre-training, no modality dropout, raw audio."""
    config = dict(group["config"])
    if any(config.get(k) not in (None, v) for k, v in EXAM_DEFAULT_ARGS.items()):
        return False
    return all(config.get(k, KEY_DEFAULTS.get(k)) == v for k, v in EXAM_SETTINGS.items())


def training_setup(group):
    """What a late-fusion row must share with a row to be its reference: every training flag but the
    fusion widths, which late fusion does not have."""
    return tuple((k, v) for k, v in group["config"] if k not in ("fused_dim", "hidden_dim", "heads", "image_dim",
                                                                   "audio_dim"))


def recipe_name(config):
    """The named recipe (--recipe, facts.RECIPES) that a row's optimizer flags make up, or None: flags
    set one by one that match no bundle."""
    flags = {k: config.get(k, KEY_DEFAULTS.get(k)) for k in RECIPE_KEYS}
    for name, recipe in RECIPES.items():
        if set(recipe.flags) - set(RECIPE_KEYS):  # a recipe of other flags than the optimizer's
            continue
        if flags == {k: recipe.flags.get(k, KEY_DEFAULTS[k]) for k in RECIPE_KEYS}:
            return name
    return None


def _beyond_the_exam(config):
    """The settings of a row that depart from the exam's setup, always shown in its name."""
    shown = [k for k, v in EXAM_SETTINGS.items() if config.get(k, KEY_DEFAULTS.get(k)) != v]
    if "modality_dropout" in shown and config.get("modality_dropout_fill") != KEY_DEFAULTS["modality_dropout_fill"]:
        shown.append("modality_dropout_fill")
    if "audio_frontend" in shown and list(config.get("mel_channels") or ()) != KEY_DEFAULTS["mel_channels"]:
        shown.append("mel_channels")
    if "audio_frontend" in shown and config.get("mel_top_db") is not None:
        shown.append("mel_top_db")
    return shown

"""The study's facts that both the training side and the reading side need, without torch.

report.py (and anything else that only reads run folders) imports these instead of the modules
that define the models and the data, so reading results never loads the model stack. The modules
that train re-export them from here: one definition each.
"""
from dataclasses import dataclass

REGIMES = ("image_noisy", "audio_noisy", "both_mild")  # the recipe's noise regime of a pair, by index
# the fusions of common/nets/fusions.py, in its registry's order (fusion.py checks the two agree), and late fusion
FUSION_NAMES = ("concat", "add", "mul", "max", "attention", "gated", "bilinear", "factorized", "attention-tokens")
FUSION_CHOICES = list(FUSION_NAMES) + ["late"]
MEL_CHANNELS = (32, 64)  # the mel front-end's default conv widths (the exam's Conv2Net widths)
# The choices of the flags (common/flags.py), defined here without torch; the modules that act on
# them import them from here.
SOURCES = ("auto", "avdigits", "course", "synthetic")  # --data (common/data/sources.py)
AUDIO_FRONTENDS = ("raw", "mel")  # raw: the exam's Conv1Net on the waveform; mel: common/nets/mel.py
STAND_INS = ("zeros", "train_mean")  # what a missing view becomes (common/nets/models.py)
PROJECTION_HEADS = ("mlp", "mlp-bn")  # contrastive projection heads (common/nets/models.py)
SIMILARITIES = ("dot", "cosine")  # of the contrastive projections (common/nets/losses.py)
AUGMENTATIONS = ("none", "views")  # contrastive --augment (common/data/augment.py)
SPEED_STEP = 0.05  # speed factors are multiples of this, so each is an exact ratio of small integers (17/20, ...)
SPEED_CHANGES = tuple(round(i * SPEED_STEP, 2) for i in range(7))  # --speed-perturb R: 0, 0.05, ..., 0.3
PRECISIONS = ("auto", "fp32", "bf16")  # common/training/loop.py
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
CLASSIFIER_SELECTIONS = ("val_loss", "val_acc")  # the classifiers' --select
CONTRASTIVE_SELECTIONS = ("val_loss", "val_digit1")  # train_contrastive.py's --select
@dataclass(frozen=True)
class AudioFrontend:
    """The audio featurizer's input stage, one value through every model builder: raw (the exam's
    Conv1d stack on the waveform) or mel (a log-mel spectrogram and 2-D convs `channels` wide;
    top_db: its floor, that many dB below each utterance's loudest bin; None: none but 1e-6)."""
    kind: str = "raw"
    channels: tuple = MEL_CHANNELS
    top_db: float = None

    @classmethod
    def of(cls, args):
        """From parsed flags (a Namespace) or a saved config's args (a dict); a run from before the
        flags existed used the raw waveform."""
        get = args.get if isinstance(args, dict) else (lambda key: getattr(args, key, None))
        return cls(get("audio_frontend") or "raw", tuple(get("mel_channels") or MEL_CHANNELS), get("mel_top_db"))


IMAGE_P_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # pixel replacement probability
AUDIO_SNR_LEVELS = (30.0, 20.0, 10.0, 0.0, -5.0, -10.0, -15.0, -20.0, -30.0)  # dB against the utterance
MILD_P, MILD_SNR_DB = 0.1, 20.0  # the other view while one is swept or missing

# evaluate.py --grid: the test pairs at every pair of these levels (the fusion map). A level of the
# sweeps above is rendered as that sweep renders it (MILD_P and MILD_SNR_DB as the held view is), so
# the grid's row at p = MILD_P is the audio sweep and its column at MILD_SNR_DB the image sweep.
MISSING, CLEAN = "missing", "clean"  # a view replaced by zeros; the audio with no noise at all
GRID_IMAGE_P = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, MISSING)
GRID_AUDIO_SNR = (CLEAN, 30.0, 20.0, 10.0, 0.0, -10.0, MISSING)


@dataclass(frozen=True)
class NoiseSweep:
    """One noise sweep of evaluate.py: the key of its list in robustness.json, the view it corrupts,
    the key of each row's level, the levels, and how the held view is described."""
    key: str
    view: str
    level_key: str
    levels: tuple
    level_name: str   # the swept quantity, as a table names it
    axis_label: str   # ... and as a figure's axis does
    held_view: str    # the other view, held at its mild level
    held_level: str   # that level, in words
    span: str         # the range of levels in words: str.format(first=, last=)
    summary: str      # evaluate.py's summary of the first and last level: str.format(first=, last=)
    invert: bool      # the levels get worse downwards (SNR): figures turn the axis so worse is to the right
    clean_key: str = None  # the key of one more measurement with no noise at all on this view (none: no key)

    @property
    def held(self):
        return f"{self.held_view} at {self.held_level}"


NOISE_SWEEPS = (
    NoiseSweep("image_sweep", "image", "p", IMAGE_P_LEVELS, "pixel replacement p", "pixel replacement probability p",
               "audio", f"{MILD_SNR_DB:g} dB", "p from {first:g} to {last:g}", "image p {first:g}->{last:g}",
               invert=False),
    NoiseSweep("audio_sweep", "audio", "snr_db", AUDIO_SNR_LEVELS, "audio SNR (dB)", "audio SNR, dB",
               "image", f"p = {MILD_P:g}", "SNR from {first:+g} to {last:+g} dB", "audio {first:+g}->{last:+g} dB",
               invert=True, clean_key="audio_clean"),
)


def area_under(levels, accs):
    """Mean accuracy over a sweep, by the trapezoid rule over the level axis, normalised by its span."""
    import numpy as np  # here, so that reading a run's files needs nothing beyond the standard library
    x, y = np.asarray(levels, float), np.asarray(accs, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def saved_precision(config):
    """The precision a run's config.json says it used (fp32 or bf16); None when it says nothing.
    Configs written before --precision existed say "float32"."""
    used = config.get("precision")
    return {"float32": "fp32"}.get(used, used)

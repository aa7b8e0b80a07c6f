"""Robustness of a trained classifier: noise sweeps, a missing view, a fresh draw of the test split.

Every noisy input here is made by the recipe's own `render_pairs` (one
definition of the corruption): the run's test pairs (same images, same
recordings, same offsets) are rendered again with the noise of one view set
to a controlled level for every pair, and the other view held mild. Each
level draws its noise from its own seeded stream, so an evaluation repeats
exactly.
"""
import numpy as np
import torch
from torch import nn

from .data.recipe import RECIPE_VERSION, build_split, render_pairs, split_generators, drawn_test_pairs
from .reporting import classification_metrics
from .training import evaluate

IMAGE_P_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # pixel replacement probability
AUDIO_SNR_LEVELS = (30.0, 20.0, 10.0, 0.0, -5.0, -10.0, -15.0, -20.0, -30.0)  # dB against the utterance
MILD_P, MILD_SNR_DB = 0.1, 20.0  # the other view while one is swept or missing
FRESH_SEED_OFFSET = 1000  # default fresh draw: the run's data seed + 1000
SWEEPS = ("fresh", "image", "audio", "missing")
_STREAMS = {"image": 1, "audio": 2, "mild": 3, "clean": 4}  # noise streams, apart from the recipe's own
EVAL_BATCH = 512


def noise_rng(data_seed, stream, level_index=0):
    return np.random.default_rng(np.random.SeedSequence([RECIPE_VERSION, int(data_seed), 0xE7A1,
                                                         _STREAMS[stream], level_index]))


def render_at(raw_test, pairs, p, snr_db, rng):
    """The drawn pairs rendered with every image at replacement probability p and every
    recording at snr_db (+inf: no audio noise)."""
    n = len(pairs["label"])
    levels = dict(pairs, p=np.full(n, p, np.float32), snr_db=np.full(n, snr_db, np.float32))
    return render_pairs(raw_test, levels, rng)


class SurvivingHead(nn.Module):
    """Late fusion judged on one head alone: the logits of the view that is still there."""

    def __init__(self, late_model, view):
        super().__init__()
        self.late_model, self.view = late_model, view

    def forward(self, image, audio):
        image_logits, audio_logits = self.late_model.branch_logits(image, audio)
        return image_logits if self.view == "image" else audio_logits


def _score(model, split, index, views, device, precision, per_regime=False):
    logits = evaluate(model, split, index, views, EVAL_BATCH, device, precision)["logits"]
    m = classification_metrics(logits, split, index)
    out = {"acc": m["acc"], "loss": m["loss"]}
    if per_regime:
        out.update(per_regime_acc=m.get("per_regime_acc"), per_regime_n=m.get("per_regime_n"))
    return out


def _subset_pairs(pairs, index):
    idx = index.numpy()
    return {k: v[idx] for k, v in pairs.items()}


def robustness(model, views, raw, test_size, test_index, data_seed, train_split, train_index, device, precision,
               sweeps=SWEEPS, fresh_seed=None, log=None):
    """Every measurement of one run, as a JSON-able dict.

    raw: the run's RawSources; test_size: pairs in its test split; test_index: the test rows it
    used (after --limit); data_seed: the seed its test split was drawn with; train_split /
    train_index: its training pairs (for the training-mean stand-in of a missing view).
    """
    log = log or (lambda msg: None)
    result = {"views": list(views), "precision": precision, "n_test": len(test_index),
              "mild": {"image_p": MILD_P, "audio_snr_db": MILD_SNR_DB}}
    pairs = _subset_pairs(drawn_test_pairs(raw, test_size, data_seed), test_index)
    rows = torch.arange(len(test_index))

    def score(split, **kw):
        return _score(model, split, rows, views, device, precision, **kw)

    if "fresh" in sweeps:
        seed = data_seed + FRESH_SEED_OFFSET if fresh_seed is None else fresh_seed
        log(f"fresh draw of the test split at data seed {seed}")
        fresh = build_split(raw.test, test_size, split_generators(seed)[1]).subset(test_index)
        result["fresh"] = {"data_seed": seed, **score(fresh, per_regime=True)}
    if "image" in sweeps and "image" in views:
        log("image sweep")
        result["image_sweep"] = [
            {"p": p, **score(render_at(raw.test, pairs, p, MILD_SNR_DB, noise_rng(data_seed, "image", k)))}
            for k, p in enumerate(IMAGE_P_LEVELS)]
    if "audio" in sweeps and "audio" in views:
        log("audio sweep")
        result["audio_sweep"] = [
            {"snr_db": snr, **score(render_at(raw.test, pairs, MILD_P, snr, noise_rng(data_seed, "audio", k)))}
            for k, snr in enumerate(AUDIO_SNR_LEVELS)]
        # no audio noise at all: must equal a --clean-views evaluation of the audio
        clean_audio = render_at(raw.test, pairs, MILD_P, np.inf, noise_rng(data_seed, "clean"))
        result["audio_clean"] = score(clean_audio)
    if "missing" in sweeps and len(views) == 2:
        log("missing view")
        mild = render_at(raw.test, pairs, MILD_P, MILD_SNR_DB, noise_rng(data_seed, "mild"))
        train_mean = {v: getattr(train_split, v)[train_index].mean(0, keepdim=True) for v in views}
        missing = {"both_mild": score(mild)}
        for gone in views:
            for fill in ("zeros", "train_mean"):
                split = mild.subset(rows)
                stand_in = torch.zeros_like(train_mean[gone]) if fill == "zeros" else train_mean[gone]
                setattr(split, gone, stand_in.expand_as(getattr(split, gone)).contiguous())
                missing[f"{gone}_{fill}"] = score(split)
            if hasattr(model, "branch_logits"):
                survivor = "audio" if gone == "image" else "image"
                head = SurvivingHead(model, survivor)
                missing[f"{gone}_surviving_head"] = _score(head, mild, rows, views, device, precision)
        result["missing"] = missing
    return result


def area_under(levels, accs):
    """Mean accuracy over a sweep, by the trapezoid rule over the level axis, normalised by its span."""
    x, y = np.asarray(levels, float), np.asarray(accs, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def summary_line(name, result):
    """One line per run for stdout."""
    parts = [name]
    if "fresh" in result:
        parts.append(f"fresh draw {100 * result['fresh']['acc']:.2f}%")
    if "image_sweep" in result:
        s = result["image_sweep"]
        parts.append(f"image p {s[0]['p']:g}->{s[-1]['p']:g}: {100 * s[0]['acc']:.1f}%->{100 * s[-1]['acc']:.1f}%")
    if "audio_sweep" in result:
        s = result["audio_sweep"]
        parts.append(f"audio {s[0]['snr_db']:+g}->{s[-1]['snr_db']:+g} dB: "
                     f"{100 * s[0]['acc']:.1f}%->{100 * s[-1]['acc']:.1f}%")
    if "missing" in result:
        m = result["missing"]
        parts.append(f"no image {100 * m['image_zeros']['acc']:.1f}%, no audio {100 * m['audio_zeros']['acc']:.1f}% "
                     "(zeros)")
    return "; ".join(parts)

"""Robustness of a trained classifier: noise sweeps, a missing view, a fresh draw of the test split.

Every noisy input here is made by the recipe's own functions (corrupt_images,
place_utterances, add_noise_at_snr, standardise: one definition of the
corruption): the run's test pairs (same images, same recordings, same
offsets) are rendered again with the noise of one view set to a controlled
level for every pair, and the other view held mild. Each level draws its
noise from its own seeded stream, so an evaluation repeats exactly.
"""
import copy
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from ..data import Split
from ..data.recipe import (CHUNK, RECIPE_VERSION, add_noise_at_snr, build_split, corrupt_images, drawn_test_pairs,
                           place_utterances, split_generators, standardise)
from ..facts import (AUDIO_SNR_LEVELS, CLEAN, GRID_AUDIO_SNR, GRID_IMAGE_P, IMAGE_P_LEVELS, MILD_P, MILD_SNR_DB,
                     MISSING, NOISE_SWEEPS)
from ..nets.models import STAND_INS, missing_view_stand_in
from ..runfolder import pack_bits
from ..training.loop import autocast, classification_metrics, evaluate

FRESH_SEED_OFFSET = 1000  # default fresh draw: the run's data seed + 1000
SWEEPS = ("fresh",) + tuple(sweep.view for sweep in NOISE_SWEEPS) + ("missing",)  # what evaluate.py --sweeps names
GRID = "grid"  # evaluate.py --grid: the fusion map (opt-in, after the sweeps)
MEASURES = SWEEPS + (GRID,)
GRID_AXES = {"image": ("p", GRID_IMAGE_P), "audio": ("snr_db", GRID_AUDIO_SNR)}  # view -> (key, levels)
_STREAMS = {"image": 1, "audio": 2, "mild": 3, "clean": 4}  # noise streams, apart from the recipe's own
# Waveforms re-noised at once: the float64 temporaries stay small (1.3 s -> 0.8 s a level here).
# add_noise_at_snr draws a chunk's noise in one call from the level's stream: the chunking changes nothing.
AUDIO_CHUNK = 256
EVAL_BATCH = 128  # featurizer batches: measured 1.2-1.5x faster than 512 for the audio forward pass here (cache)
HEAD_BATCH = 1024  # fusion and head batches, on precomputed features


def noise_rng(data_seed, stream, level_index=0):
    return np.random.default_rng(np.random.SeedSequence([RECIPE_VERSION, int(data_seed), 0xE7A1,
                                                         _STREAMS[stream], level_index]))


class CleanViews:
    """Drawn pairs before any noise (a run's test pairs, or its validation pairs for combine.py): images
    in [0, 1] and utterances placed in their second.

    Computed once per run; each noise level then re-noises one view with the recipe's own
    corrupt_images / add_noise_at_snr / standardise, chunk by chunk."""

    def __init__(self, raw_split, pairs):
        self.images = raw_split.images[pairs["image_index"]].astype(np.float32) / 255.0
        self.placed, self.starts, self.lengths = place_utterances(
            [raw_split.recordings[j] for j in pairs["recording_index"]], pairs["offsets_u"])
        self.label = torch.from_numpy(pairs["label"].astype(np.int64))

    def __len__(self):
        return len(self.label)

    def image_at(self, p, rng):
        """[N,1,28,28]: every pixel replaced with probability p (p = 0: the clean images)."""
        out = np.empty_like(self.images)
        for lo in range(0, len(self), CHUNK):
            hi = min(lo + CHUNK, len(self))
            out[lo:hi] = corrupt_images(self.images[lo:hi], np.full(hi - lo, p, np.float32), rng)
        return torch.from_numpy(out).unsqueeze(1)

    def audio_at(self, snr_db, rng):
        """[N,1,8000]: white noise at snr_db against each utterance (+inf: none), then standardised."""
        out = np.empty((len(self), self.placed.shape[1]), np.float32)
        for lo in range(0, len(self), AUDIO_CHUNK):
            hi = min(lo + AUDIO_CHUNK, len(self))
            noisy = add_noise_at_snr(self.placed[lo:hi], self.starts[lo:hi], self.lengths[lo:hi],
                                     np.full(hi - lo, snr_db, np.float32), rng)
            out[lo:hi] = standardise(noisy)[0]
        return torch.from_numpy(out).unsqueeze(1)

    def at_random_levels(self, copies, rng):
        """`copies` renderings of every pair, each view at its own level drawn uniformly over its sweep's range
        (image p in [0, 0.95]; audio SNR in [-30, 40] dB, where above the sweep's 30 dB means no noise at
        all): a Split of copies x N pairs, rows copy by copy. The views are drawn independently, so every
        combination of a clean, a noisy and a ruined view is in it (combine.py --gate confidence)."""
        images, audio = [], []
        high_snr = max(AUDIO_SNR_LEVELS)
        for _ in range(copies):
            p = rng.uniform(min(IMAGE_P_LEVELS), max(IMAGE_P_LEVELS), len(self)).astype(np.float32)
            snr = rng.uniform(min(AUDIO_SNR_LEVELS), high_snr + 10.0, len(self))
            snr[snr > high_snr] = np.inf
            image_out = np.empty_like(self.images)
            audio_out = np.empty((len(self), self.placed.shape[1]), np.float32)
            for lo in range(0, len(self), AUDIO_CHUNK):
                hi = min(lo + AUDIO_CHUNK, len(self))
                image_out[lo:hi] = corrupt_images(self.images[lo:hi], p[lo:hi], rng)
                noisy = add_noise_at_snr(self.placed[lo:hi], self.starts[lo:hi], self.lengths[lo:hi],
                                         snr[lo:hi].astype(np.float32), rng)
                audio_out[lo:hi] = standardise(noisy)[0]
            images.append(torch.from_numpy(image_out).unsqueeze(1))
            audio.append(torch.from_numpy(audio_out).unsqueeze(1))
        return Split(image=torch.cat(images), audio=torch.cat(audio), label=self.label.repeat(copies))


class _Precomputed(nn.Module):
    """Stands in for a featurizer whose outputs on a fixed view were computed once: it returns its
    input, so the 'view' handed to the model is that featurizer's output. Eval mode only."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Identity()

    def forward(self, x):
        return x

    def feature_map(self, x):
        return x


def with_precomputed(model, views):
    """A shallow copy of model (sharing every other module and parameter) whose featurizers of
    `views` return their input: it is fed those featurizers' precomputed outputs. A model that reads
    its views themselves (reads_raw_views) is fed them: it is returned as it is."""
    if getattr(model, "reads_raw_views", False):
        return model
    fixed = copy.copy(model)
    fixed._modules = {**model._modules, **{f"{v}_featurizer": _Precomputed() for v in views}}
    return fixed


@torch.inference_mode()
def featurizer_outputs(model, view, inputs, device, precision):
    """`view`'s featurizer outputs on `inputs` (its conv map for a token fusion), in the dtype the
    featurizer gave (bf16 under bf16), so that logits from them are the model's own; for a model that
    reads its views themselves, the inputs."""
    if getattr(model, "reads_raw_views", False):
        return inputs
    featurizer = getattr(model, f"{view}_featurizer")
    featurizer.eval()
    outs = []
    for lo in range(0, len(inputs), EVAL_BATCH):
        x = inputs[lo:lo + EVAL_BATCH].to(device)
        with autocast(precision, device):
            outs.append(featurizer.feature_map(x) if getattr(model, "uses_tokens", False) else featurizer(x))
    return torch.cat(outs).cpu()


def with_fixed_view(model, view, inputs, device, precision):
    """(model', features): model with `view`'s featurizer replaced by its precomputed outputs on
    `inputs`, so sweeping the other view does not run the fixed one's featurizer again."""
    return with_precomputed(model, [view]), featurizer_outputs(model, view, inputs, device, precision)


class SurvivingHead(nn.Module):
    """Late fusion judged on one head alone: the logits of the view that is still there."""

    def __init__(self, late_model, view):
        super().__init__()
        self.late_model, self.view = late_model, view

    def forward(self, image, audio):
        image_logits, audio_logits = self.late_model.branch_logits(image, audio)
        return image_logits if self.view == "image" else audio_logits


def _score(model, split, views, device, precision, per_regime=False):
    index = torch.arange(len(split.label))  # len(split) reads the image, which an audio-only run lacks
    net, inputs, batch = model, split, EVAL_BATCH
    if len(views) == 2 and not getattr(model, "uses_tokens", False):
        # vector fusions: featurizers in small batches (their convolutions are faster so), then
        # fusion and head in large ones (bilinear fusion is 2x faster per pair at 1024); a token
        # fusion's [B, 149, d] activations are faster in the featurizers' small batches too
        for view in views:
            featurizer = getattr(net, f"{view}_featurizer", None)  # None: a SurvivingHead, fed features
            if featurizer is not None and not isinstance(featurizer, _Precomputed):
                net, features = with_fixed_view(net, view, getattr(inputs, view), device, precision)
                inputs = Split(**{**{v: getattr(inputs, v) for v in views}, view: features}, label=split.label)
        batch = HEAD_BATCH
    logits = evaluate(net, inputs, index, views, batch, device, precision)["logits"]
    m = classification_metrics(logits, split, index)
    out = {"acc": m["acc"], "loss": m["loss"]}
    if per_regime:
        out.update(per_regime_acc=m.get("per_regime_acc"), per_regime_n=m.get("per_regime_n"))
    return out


def rendered_ahead(renders):
    """Yield render(level, rng) for each (render, level, rng) in order, rendering the next level
    on a second thread while the caller scores the current one: the noise is single-threaded
    numpy (which releases the GIL) and the forward pass is torch, so the two overlap. Each level
    has its own seeded stream, so the results do not depend on the timing."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(*renders[0]) if renders else None
        for k in range(len(renders)):
            current = pending.result()
            pending = pool.submit(*renders[k + 1]) if k + 1 < len(renders) else None
            yield current


def _subset_pairs(pairs, index):
    idx = index.numpy()
    return {k: v[idx] for k, v in pairs.items()}


def robustness(model, views, raw, test_size, test_index, data_seed, train_split, train_index, device, precision,
               sweeps=SWEEPS, fresh_seed=None, log=None):
    """Every measurement of one run, as a JSON-able dict.

    raw: the run's RawSources; test_size: pairs in its test split; test_index: the test rows it
    used (after --limit); data_seed: the seed its test split was drawn with; train_split /
    train_index: its training pairs (for the training-mean stand-in of a missing view).
    While one view is swept the other is held at its mild level, rendered once: only the swept
    view changes from level to level, and the fixed view's featurizer outputs are computed once.
    """
    log = log or (lambda msg: None)
    model.eval()
    result = {"views": list(views), "precision": precision, "n_test": len(test_index),
              "mild": {"image_p": MILD_P, "audio_snr_db": MILD_SNR_DB}}
    clean = CleanViews(raw.test, _subset_pairs(drawn_test_pairs(raw, test_size, data_seed), test_index))
    both = len(views) == 2
    mild = Split(image=clean.image_at(MILD_P, noise_rng(data_seed, "mild", 0)) if "image" in views else None,
                 audio=clean.audio_at(MILD_SNR_DB, noise_rng(data_seed, "mild", 1)) if "audio" in views else None,
                 label=clean.label)

    def score(net, image=None, audio=None, **kw):
        split = Split(image=mild.image if image is None else image, audio=mild.audio if audio is None else audio,
                      label=clean.label)
        return _score(net, split, views, device, precision, **kw)

    if "fresh" in sweeps:
        seed = data_seed + FRESH_SEED_OFFSET if fresh_seed is None else fresh_seed
        log(f"fresh draw of the test split at data seed {seed}")
        fresh = build_split(raw.test, test_size, split_generators(seed)[1]).subset(test_index)
        result["fresh"] = {"data_seed": seed, **_score(model, fresh, views, device, precision, per_regime=True)}
    # While one view changes, the other stays at its mild rendering: run its featurizer once.
    fixed_nets = {}

    def fixed(view):  # the model with `view`'s featurizer outputs on the mild rendering precomputed
        if view not in fixed_nets:
            fixed_nets[view] = with_fixed_view(model, view, getattr(mild, view), device, precision)
        return fixed_nets[view]

    for sweep in NOISE_SWEEPS:  # one view at each level of its sweep, the other held at its mild rendering
        if sweep.view not in sweeps or sweep.view not in views:
            continue
        log(f"{sweep.view} sweep")
        net, held = fixed(sweep.held_view) if both else (model, None)
        render = getattr(clean, f"{sweep.view}_at")
        jobs = [(render, level, noise_rng(data_seed, sweep.view, k)) for k, level in enumerate(sweep.levels)]
        if sweep.clean_key:  # no noise at all on this view, which must equal a --clean-views evaluation
            jobs.append((render, np.inf, noise_rng(data_seed, "clean")))
        scores = [score(net, **{sweep.view: rendered, sweep.held_view: held}) for rendered in rendered_ahead(jobs)]
        result[sweep.key] = [{sweep.level_key: level, **s} for level, s in zip(sweep.levels, scores)]
        if sweep.clean_key:
            result[sweep.clean_key] = scores[-1]
    if GRID in sweeps:
        log("grid")
        result[GRID] = grid(model, views, clean, mild, data_seed, train_split, train_index, device, precision)
    if "missing" in sweeps and both:
        log("missing view")
        net, audio = fixed("audio")
        missing = {"both_mild": score(net, audio=audio)}
        for gone in views:
            kept = "audio" if gone == "image" else "image"
            net, kept_features = fixed(kept)
            for fill in STAND_INS:
                stand_in = missing_view_stand_in(train_split, train_index, gone, fill)
                # the stand-in is one input for every pair: its features are computed once, on one row
                both_fixed, stand_in_features = with_fixed_view(net, gone, stand_in, device, precision)
                inputs = {kept: kept_features, gone: stand_in_features.expand(len(clean), *stand_in_features.shape[1:])}
                missing[f"{gone}_{fill}"] = score(both_fixed, **inputs)
            if hasattr(model, "branch_logits"):  # late fusion: the surviving head alone (the other's is unused)
                missing[f"{gone}_surviving_head"] = score(SurvivingHead(both_fixed, kept), **inputs)
        result["missing"] = missing
    return result


def grid_input(clean, mild, view, level, data_seed, train_split, train_index):
    """One view's input at one grid level, rendered exactly as the sweeps render that level: the
    mild level as the held view's rendering, "clean" as the audio sweep's no-noise measurement,
    "missing" as the zeros stand-in (one row, for every pair)."""
    if level == MISSING:
        return missing_view_stand_in(train_split, train_index, view, "zeros")
    if view == "image":
        return mild.image if level == MILD_P else \
            clean.image_at(level, noise_rng(data_seed, "image", IMAGE_P_LEVELS.index(level)))
    if level == CLEAN:
        return clean.audio_at(np.inf, noise_rng(data_seed, "clean"))
    return mild.audio if level == MILD_SNR_DB else \
        clean.audio_at(level, noise_rng(data_seed, "audio", AUDIO_SNR_LEVELS.index(level)))


@torch.inference_mode()
def grid(model, views, clean, mild, data_seed, train_split, train_index, device, precision):
    """The fusion map: accuracy on the run's test pairs at every combination of its views' grid
    levels (GRID_IMAGE_P x GRID_AUDIO_SNR for a multimodal run, one axis for a unimodal one), with
    each pair's correctness (packed) so that a reader can pair cells across runs (an oracle that
    picks the better view per pair) and resample recordings. Each view's featurizer runs once per
    level; the fusion and head run once per cell on those features."""
    levels = {view: GRID_AXES[view][1] for view in views}
    label = clean.label
    if len(views) == 2:
        features = {}
        for view in views:
            features[view] = []
            for level in levels[view]:
                x = grid_input(clean, mild, view, level, data_seed, train_split, train_index)
                f = featurizer_outputs(model, view, x, device, precision)
                features[view].append(f.expand(len(clean), *f.shape[1:]) if level == MISSING else f)
        net = with_precomputed(model, views)  # both featurizers' outputs are given: the fusion and head alone
        score_inputs = lambda ks: Split(**{v: features[v][k] for v, k in zip(views, ks)}, label=label)
        batch = HEAD_BATCH
    else:
        (view,) = views
        rendered = []
        for level in levels[view]:
            x = grid_input(clean, mild, view, level, data_seed, train_split, train_index)
            rendered.append(x.expand(len(clean), *x.shape[1:]) if level == MISSING else x)
        net, batch = model, EVAL_BATCH
        score_inputs = lambda ks: Split(**{"image": None, "audio": None, view: rendered[ks[0]]}, label=label)
    cells = []
    for ks in itertools.product(*(range(len(levels[v])) for v in views)):
        scored = evaluate(net, score_inputs(ks), torch.arange(len(label)), views, batch, device, precision)
        correct = scored["logits"].argmax(1) == label
        cells.append({**{GRID_AXES[v][0]: levels[v][k] for v, k in zip(views, ks)}, "acc": scored["acc"],
                      "loss": scored["loss"], "correct": pack_bits(correct.numpy())})
    return {"views": list(views), **{f"{v}_levels": list(levels[v]) for v in views}, "n": len(label),
            "correct_bits": "base64 of numpy.packbits over the test pairs in order", "cells": cells}


def summary_line(name, result):
    """One line per run for stdout."""
    parts = [name]
    if "fresh" in result:
        parts.append(f"fresh draw {100 * result['fresh']['acc']:.2f}%")
    for sweep in NOISE_SWEEPS:
        if sweep.key in result:
            s = result[sweep.key]
            parts.append(sweep.summary.format(first=s[0][sweep.level_key], last=s[-1][sweep.level_key])
                         + f": {100 * s[0]['acc']:.1f}%->{100 * s[-1]['acc']:.1f}%")
    if GRID in result:
        worst = min(result[GRID]["cells"], key=lambda c: c["acc"])
        parts.append(f"grid: {len(result[GRID]['cells'])} cells, worst {100 * worst['acc']:.1f}% at "
                     + ", ".join(f"{k} {worst[k]}" for k in ("p", "snr_db") if k in worst))
    if "missing" in result:
        m = result["missing"]
        parts.append(f"no image {100 * m['image_zeros']['acc']:.1f}%, no audio {100 * m['audio_zeros']['acc']:.1f}% "
                     "(zeros)")
    return "; ".join(parts)

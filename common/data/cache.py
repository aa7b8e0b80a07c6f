"""Cache of built datasets, keyed by everything that determines their content.

The cache lives outside the data root, which may be read-only:
AVDIGITS_CACHE, else $XDG_CACHE_HOME/avdigits, else ~/.cache/avdigits.
Files are written to a temp name and renamed, and read with weights_only=True;
anything unreadable or inconsistent is rebuilt, never trusted.
"""
import hashlib
import json
import os

import torch

from ..io import atomic_path
from .dataset import Dataset, Split, fingerprint_splits


def cache_dir():
    if os.environ.get("AVDIGITS_CACHE"):
        return os.environ["AVDIGITS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "avdigits")


def cache_key(params):
    """Short hash of a JSON-able dict of build parameters."""
    blob = json.dumps(params, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cache_path(name, params):
    return os.path.join(cache_dir(), f"{name}-{cache_key(params)}.pt")


def meta_digest(*splits):
    """sha256 over everything a split holds besides image, audio and label (which the fingerprint
    covers): the per-pair metadata (regimes, noise levels, indices, validation marks) and the
    recording names. Kept apart from the fingerprint, so that the fingerprints of kept runs stand."""
    h = hashlib.sha256()
    for split in splits:
        for key in sorted(split.meta):
            t = split.meta[key].contiguous()
            h.update(key.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode() + t.numpy().tobytes())
        h.update(json.dumps(list(split.recording_names)).encode())
    return h.hexdigest()


def load_cached(path, params):
    """The cached Dataset at `path`, or None if absent, unreadable, built from other
    params, or damaged (its tensors no longer hash to the fingerprint stored with them, or its
    metadata to the digest stored beside it)."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, weights_only=True, mmap=True)
        if state.get("params") != json.loads(json.dumps(params)):
            return None
        train, test = Split.from_state(state["train"]), Split.from_state(state["test"])
        if fingerprint_splits(train, test) != state["fingerprint"] or meta_digest(train, test) != state["meta_sha256"]:
            return None  # a cache from before the digest (no meta_sha256) is rebuilt once
        return Dataset(name=state["name"], train=train, test=test, fingerprint=state["fingerprint"],
                       info=state["info"])
    except Exception:  # a corrupt or foreign file: rebuild rather than trust it
        return None


def save_cached(path, params, dataset):
    """Write atomically: a half-written cache file never carries the final name."""
    state = {"params": json.loads(json.dumps(params)), "name": dataset.name,
             "train": dataset.train.to_state(), "test": dataset.test.to_state(),
             "fingerprint": dataset.fingerprint, "meta_sha256": meta_digest(dataset.train, dataset.test),
             "info": dataset.info}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)

"""Seeded train/validation split and batch iteration over in-memory tensors."""
import math

import torch


def train_val_split(n, val_fraction, seed):
    """(train_indices, val_indices) of range(n): a seeded permutation, val gets round(n*f)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val fraction must be in (0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"cannot split {n} samples with val fraction {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def validation_split(train, n, val_fraction, seed):
    """(train_indices, val_indices) of the first n rows of a training split: a validation-speaker
    build's own validation pairs (meta["val"], fixed when it was built), else train_val_split."""
    if "val" in train.meta:
        is_val = train.meta["val"][:n]
        return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()
    return train_val_split(n, val_fraction, seed)


def class_balanced_subset(indices, labels, fraction, seed):
    """A seeded subset of `indices` that keeps the same share of every class: for each class c with
    n_c of the indices, round(fraction * n_c) of them (at least one), in the original order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return indices
    g = torch.Generator().manual_seed(seed)
    shuffled = indices[torch.randperm(len(indices), generator=g)]
    keep = []
    for c in labels[indices].unique().tolist():
        of_class = shuffled[labels[shuffled] == c]
        keep.append(of_class[:max(1, int(round(fraction * len(of_class))))])
    return torch.cat(keep).sort().values


def shuffle_order(indices, generator):
    """`indices` in a random order drawn from `generator` (one epoch's order)."""
    return indices[torch.randperm(len(indices), generator=generator)]


def epoch_order(indices, generator, min_pairs=0):
    """One epoch's order: a seeded pass over `indices`, repeated in fresh orders until the
    epoch holds at least `min_pairs` (one pass when min_pairs <= len(indices))."""
    passes = max(1, math.ceil(min_pairs / len(indices))) if len(indices) else 1
    return torch.cat([shuffle_order(indices, generator) for _ in range(passes)])


def batch_indices(indices, batch_size, shuffle=False, generator=None):
    """Yield index tensors of at most batch_size; the order is drawn from `generator` when shuffling."""
    if shuffle:
        indices = shuffle_order(indices, generator)
    for lo in range(0, len(indices), batch_size):
        yield indices[lo:lo + batch_size]


def epoch_length(n_indices, min_pairs=0):
    """Pairs in one epoch of epoch_order(indices, ..., min_pairs): whole passes over the indices."""
    passes = max(1, math.ceil(min_pairs / n_indices)) if n_indices else 1
    return passes * n_indices


def steps_per_epoch(n_indices, batch_size, min_pairs=0):
    """Optimizer steps in one epoch of epoch_order(indices, ..., min_pairs) cut into batch_size batches."""
    return math.ceil(epoch_length(n_indices, min_pairs) / batch_size)

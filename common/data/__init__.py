"""The data layer: sources, the avdigits recipe, caching, splits and batches.

Use `load_dataset(...)` for a Dataset of two in-memory Splits; `python -m
common.data {fetch,info,show,wav}` is the command-line face of this package.
"""
from .batching import (batch_indices, class_balanced_subset, epoch_order, shuffle_order, train_val_split,
                       validation_split)
from .dataset import REGIMES, Dataset, Split, fingerprint_splits
from .errors import DataError
from .sources import SOURCES, dataset_from_args, load_dataset, resolve_data_root

__all__ = ["REGIMES", "SOURCES", "DataError", "Dataset", "Split", "batch_indices", "class_balanced_subset",
           "dataset_from_args", "epoch_order", "fingerprint_splits",
           "load_dataset", "resolve_data_root", "shuffle_order", "train_val_split", "validation_split"]

"""Reader for MNIST's IDX files (gzip-compressed or plain), with strict checks."""
import gzip
import os
import zlib

import numpy as np

from .errors import DataError

# (magic number, number of dimensions after the count) for images and labels
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
EXPECTED_COUNTS = {"train": 60_000, "t10k": 10_000}
FILES = {
    split: (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
    for split in EXPECTED_COUNTS
}


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":  # gzip magic
                with gzip.open(f) as g:
                    return g.read()
            return f.read()
    except FileNotFoundError:
        raise DataError(f"missing MNIST file: {path}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"corrupt MNIST file {path}: {e}") from None


def read_idx(path, expected_magic, expected_count=None):
    """Return the array stored in an IDX file, checking its header against its size."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(f"corrupt MNIST file {path}: only {len(data)} bytes")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise DataError(f"corrupt MNIST file {path}: magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"corrupt MNIST file {path}: header cut short")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [28, 28]:
        raise DataError(f"corrupt MNIST file {path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    if expected_count is not None and dims[0] != expected_count:
        raise DataError(f"corrupt MNIST file {path}: {dims[0]} items, expected {expected_count}")
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise DataError(f"corrupt MNIST file {path}: {len(data) - header} data bytes, header says {size}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_split(mnist_dir, split):
    """Images uint8 [N,28,28] and labels int64 [N] of 'train' or 't10k'."""
    image_file, label_file = FILES[split]
    count = EXPECTED_COUNTS[split]
    images = read_idx(os.path.join(mnist_dir, image_file), IMAGE_MAGIC, count)
    label_path = os.path.join(mnist_dir, label_file)
    labels = read_idx(label_path, LABEL_MAGIC, count).astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"corrupt MNIST file {label_path}: labels outside 0-9")
    return images, labels

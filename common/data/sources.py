"""Which data a run uses: the source registry, the data root, and `--data auto`."""
import hashlib
import os
import sys

import numpy as np
from tqdm import tqdm

from ..argtypes import non_negative_int, speaker_name
from ..facts import SOURCES
from . import cache
from .course import course_files_present, load_course
from .errors import DataError
from .fsdd import list_recordings, load_recordings
from .mnist import FILES as MNIST_FILES, load_mnist_split
from .raw import RawSources, RawSplit, hold_out_speaker
from .recipe import DEFAULT_SIZES, RECIPE_VERSION, build_dataset, recipe_params

GET_DATA_HINT = ("get the real data with `python -m common.data fetch --data-root DIR` "
                 "(or point --data-root / AVDIGITS_DATA at a folder holding mnist/ and fsdd/recordings/)")


def log_stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def resolve_data_root(data_root=None):
    """--data-root, else $AVDIGITS_DATA, else ./data."""
    return data_root or os.environ.get("AVDIGITS_DATA") or "data"


def avdigits_files_present(root):
    mnist_ok = all(os.path.exists(os.path.join(root, "mnist", f))
                   for pair in MNIST_FILES.values() for f in pair)
    rec_dir = os.path.join(root, "fsdd", "recordings")
    return mnist_ok and os.path.isdir(rec_dir) and any(f.endswith(".wav") for f in os.listdir(rec_dir))


def course_folder(root):
    """The folder holding the course files: the data root itself or its `course/` subfolder."""
    for folder in (root, os.path.join(root, "course")):
        if course_files_present(folder):
            return folder
    return None


def resolve_source(name, root, log=log_stderr):
    """The concrete source for `name`; `auto` picks avdigits, else course, else synthetic."""
    if name != "auto":
        return name
    if avdigits_files_present(root):
        log(f"data auto: using avdigits (real MNIST + spoken digits) from {root}")
        return "avdigits"
    if course_folder(root):
        log(f"data auto: using the course tensor files in {course_folder(root)}")
        return "course"
    log(f"data auto: no real data under {root!r}, using the SYNTHETIC source; {GET_DATA_HINT}")
    return "synthetic"


def _hash_files(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.basename(p).encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def avdigits_raw_fingerprint(root):
    """Hash of the raw files' bytes: the cache key changes whenever the raw data does."""
    mnist = [os.path.join(root, "mnist", f) for pair in MNIST_FILES.values() for f in pair]
    rec_dir = os.path.join(root, "fsdd", "recordings")
    wavs = [os.path.join(rec_dir, name + ".wav") for name, *_ in list_recordings(rec_dir)]
    for p in mnist:
        if not os.path.exists(p):
            raise DataError(f"missing MNIST file: {p}")
    return _hash_files(mnist + wavs)


def load_avdigits_raw(root, fingerprint):
    mnist_dir = os.path.join(root, "mnist")
    splits = {}
    for split, mnist_split in (("train", "train"), ("test", "t10k")):
        images, labels = load_mnist_split(mnist_dir, mnist_split)
        splits[split] = [images, labels]
    recordings = load_recordings(os.path.join(root, "fsdd", "recordings"))
    for split in splits:
        recs, rec_labels, names = recordings[split]
        splits[split] = RawSplit(splits[split][0], splits[split][1], recs, rec_labels, names)
    return RawSources(name="avdigits", train=splits["train"], test=splits["test"], fingerprint=fingerprint)


def load_raw_sources(name, data_root=None, data_seed=0, synthetic_size=None, raw_fingerprint=None,
                     holdout_speaker=None):
    """The raw pools (images and recordings before pairing and noise) of a recipe-built source.
    raw_fingerprint: the hash of the raw files when already known (a loaded dataset's info has it);
    holdout_speaker: one speaker's voice out of training, and the test recordings all theirs."""
    raw = _raw_sources(name, data_root, data_seed, synthetic_size, raw_fingerprint)
    return hold_out_speaker(raw, holdout_speaker) if holdout_speaker else raw


def _raw_sources(name, data_root, data_seed, synthetic_size, raw_fingerprint):
    if name == "avdigits":
        root = resolve_data_root(data_root)
        if not avdigits_files_present(root):
            raise DataError(f"no avdigits raw files under {root!r} (need mnist/*.gz and fsdd/recordings/*.wav); "
                            + GET_DATA_HINT)
        return load_avdigits_raw(root, raw_fingerprint or avdigits_raw_fingerprint(root))
    if name == "synthetic":
        from .synthetic import synthetic_raw_sources
        sizes = dict(DEFAULT_SIZES) if synthetic_size is None else synthetic_sizes(synthetic_size)
        return synthetic_raw_sources(sizes["train"], sizes["test"], data_seed)
    raise DataError(f"the {name} source is not built by the recipe from raw pools "
                    "(only avdigits and synthetic are): its views cannot be re-noised")


def synthetic_sizes(total):
    """Split a total pair count like the course does: about 75% train, 25% test."""
    if total < 20:
        raise DataError(f"--synthetic-size must be at least 20 pairs, got {total}")
    n_train = int(round(total * DEFAULT_SIZES["train"] / sum(DEFAULT_SIZES.values())))
    return {"train": n_train, "test": total - n_train}


def _build_with_cache(name, sizes, seed, raw_fingerprint, make_raw, log, clean_views=False, holdout_speaker=None,
                      val_speaker=None):
    """The built dataset from the cache, or built from make_raw() (the raw pools, already held out by
    holdout_speaker: that, like every other build parameter, is in the cache key) and cached."""
    params = recipe_params(sizes, seed, clean_views, holdout_speaker, val_speaker)
    params.update(source=name, raw_fingerprint=raw_fingerprint)
    path = cache.cache_path(name, params)
    dataset = cache.load_cached(path, params)
    if dataset is not None:
        return dataset
    raw = make_raw()  # reads and checks the raw files first, so bad input fails before any progress output
    held = f", speaker {holdout_speaker} held out" if holdout_speaker else ""
    held += f", speaker {val_speaker} validates" if val_speaker else ""
    log(f"building {name} (recipe v{RECIPE_VERSION}, data seed {seed}{held}); cached afterwards in {path}")
    with tqdm(total=sum(sizes.values()), desc=f"build {name}", unit="pair", disable=None,
              file=sys.stderr) as bar:
        dataset = build_dataset(raw, sizes, seed, progress=bar, clean_views=clean_views,
                                holdout_speaker=holdout_speaker, val_speaker=val_speaker)
    try:
        cache.save_cached(path, params, dataset)
    except OSError as e:  # a read-only cache folder costs time, not correctness
        log(f"warning: could not write the dataset cache ({e}); the next run rebuilds")
    return dataset


def load_dataset(source="auto", data_root=None, data_seed=0, synthetic_size=None, clean_views=False,
                 log=log_stderr, holdout_speaker=None, val_speaker=None):
    """The Dataset a run asked for. Raises DataError with a one-line message on bad data."""
    root = resolve_data_root(data_root)
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose from {', '.join(SOURCES)}")
    if val_speaker and not holdout_speaker:
        raise DataError("--val-speaker needs --holdout-speaker (validation on one unheard voice, test on another)")
    name = resolve_source(source, root, log)
    if name == "avdigits":
        if not avdigits_files_present(root):
            raise DataError(f"no avdigits raw files under {root!r} (need mnist/*.gz and fsdd/recordings/*.wav); "
                            + GET_DATA_HINT)
        fingerprint = avdigits_raw_fingerprint(root)
        return _build_with_cache("avdigits", dict(DEFAULT_SIZES), data_seed, fingerprint,
                                 lambda: load_raw_sources("avdigits", root, raw_fingerprint=fingerprint,
                                                          holdout_speaker=holdout_speaker),
                                 log, clean_views, holdout_speaker, val_speaker)
    if name == "course":
        folder = course_folder(root)
        if folder is None:
            raise DataError(f"no course files (training_images.pth, ...) in {root!r} or {root!r}/course")
        if clean_views or holdout_speaker:
            raise DataError(f"{'--clean-views' if clean_views else '--holdout-speaker'} needs a source built by "
                            "the recipe (avdigits or synthetic); the course files come already paired and corrupted")
        return load_course(folder, log)
    from .synthetic import SYNTHETIC_VERSION
    sizes = dict(DEFAULT_SIZES) if synthetic_size is None else synthetic_sizes(synthetic_size)
    raw_fp = f"synthetic-v{SYNTHETIC_VERSION}"
    return _build_with_cache("synthetic", sizes, data_seed, raw_fp,
                             lambda: load_raw_sources("synthetic", data_seed=data_seed, synthetic_size=synthetic_size,
                                                      holdout_speaker=holdout_speaker),
                             log, clean_views, holdout_speaker, val_speaker)


def add_data_flags(parser):
    """The data flags every command shares."""
    parser.add_argument("--data", default="auto", choices=SOURCES,
                        help="data source: avdigits (real MNIST + spoken digits), course (the course's .pth "
                             "files), synthetic (offline stand-in), auto = the first of these found")
    parser.add_argument("--data-root", default=None,
                        help="folder with mnist/ and fsdd/recordings/ or the course files "
                             "(None: $AVDIGITS_DATA, else ./data)")
    parser.add_argument("--data-seed", type=non_negative_int, default=0, help="seed of the pairing and noise recipe")
    parser.add_argument("--synthetic-size", type=int, default=None,
                        help="total pairs of the synthetic source, about 75%% train (None: the course's sizes)")
    parser.add_argument("--clean-views", action="store_true",
                        help="pair as usual but add no noise to either view (a control: how hard are the clean views?)")
    parser.add_argument("--holdout-speaker", type=speaker_name, default=None, metavar="NAME",
                        help="unseen voices: leave every recording of this FSDD speaker (e.g. jackson) out of training "
                             "and make the test pairs from that speaker's recordings only (None: FSDD's split by take)")
    parser.add_argument("--val-speaker", type=speaker_name, default=None, metavar="NAME",
                        help="with --holdout-speaker: a second speaker whose recordings make the validation pairs "
                             "(a fixed 20%% of the training split) and no training pair, so early stopping and "
                             "best.pt are chosen on an unheard voice too (None: validation shares the training voices)")


def dataset_from_args(args, log=log_stderr):
    return load_dataset(args.data, args.data_root, args.data_seed, args.synthetic_size, args.clean_views, log,
                        getattr(args, "holdout_speaker", None), getattr(args, "val_speaker", None))


def class_counts(labels):
    return np.bincount(labels.numpy(), minlength=10).tolist()

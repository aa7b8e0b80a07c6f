"""python -m common.data {fetch,info,show,wav,recordings}: get, inspect, look at and listen to the data, and
write which recording each test pair holds."""
import argparse
import json
import os
import sys

import numpy as np
import torch

from ..argtypes import positive_int
from ..io import atomic_path
from .dataset import REGIMES
from .fetch import FSDD_URL, MNIST_URL
from .errors import DataError
from .sources import add_data_flags, class_counts, dataset_from_args, log_stderr, resolve_data_root


def split_summary(split):
    out = {"n": len(split), "labeled": split.labeled}
    out["class_counts"] = class_counts(split.label) if split.labeled else None
    if "regime" in split.meta:
        counts = np.bincount(split.meta["regime"].numpy(), minlength=len(REGIMES))
        out["regime_counts"] = dict(zip(REGIMES, counts.tolist()))
    return out


def cmd_info(args):
    ds = dataset_from_args(args)
    summary = {"name": ds.name, "synthetic": ds.is_synthetic, "fingerprint": ds.fingerprint,
               "info": ds.info, "splits": {"train": split_summary(ds.train), "test": split_summary(ds.test)}}
    if args.json:
        print(json.dumps(summary))
        return
    print(ds.describe())
    print(f"full fingerprint: {ds.fingerprint}")
    if ds.info.get("holdout_speaker"):
        print(f"speaker {ds.info['holdout_speaker']} held out: not in the training pairs, the only voice of the test pairs")
    for name, s in summary["splits"].items():
        print(f"{name}: {s['n']} pairs, {'labelled' if s['labeled'] else 'unlabelled'}")
        if s["class_counts"] is not None:
            print("  class counts: " + " ".join(f"{d}:{c}" for d, c in enumerate(s["class_counts"])))
        if "regime_counts" in s:
            print("  regimes: " + " ".join(f"{k}:{v}" for k, v in s["regime_counts"].items()))


def _pick(split, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(split), generator=g)[:n].tolist()


def check_out(path, is_file):
    """A bad --out ends in one line before the dataset loads."""
    from ..io import output_dir_problem, output_file_problem
    problem = output_file_problem(path) if is_file else output_dir_problem(path)
    if problem:
        raise DataError(f"--out {path}: {problem}")


FIGURE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")  # what matplotlib writes; picked by the extension


def cmd_show(args):
    from ..io import save_figure
    from ..figures import pairs_grid
    check_out(args.out, is_file=True)
    if os.path.splitext(args.out)[1].lower() not in FIGURE_FORMATS:
        raise DataError(f"--out {args.out}: a figure file needs one of the extensions {', '.join(FIGURE_FORMATS)}")
    ds = dataset_from_args(args)
    split = getattr(ds, args.split)
    title = f"{ds.describe()} | {args.split} split, random pairs (seed {args.seed})"
    save_figure(pairs_grid(split, _pick(split, args.n, args.seed), title), args.out)
    print(f"wrote {args.out}")


def cmd_wav(args):
    from .fsdd import write_wav
    check_out(args.out, is_file=False)
    ds = dataset_from_args(args)
    split = getattr(ds, args.split)
    os.makedirs(args.out, exist_ok=True)
    for i in _pick(split, args.n, args.seed):
        x = split.audio[i, 0].numpy()
        pcm = np.round(x / (np.abs(x).max() + 1e-8) * 0.9 * 32767).astype(np.int16)
        regime = REGIMES[int(split.meta["regime"][i])] if "regime" in split.meta else "unknown"
        label = "x" if split.label is None else int(split.label[i])
        path = os.path.join(args.out, f"{ds.name}_{args.split}_{i}_digit{label}_{regime}.wav")
        write_wav(path, pcm)
        print(f"wrote {path}")


def cmd_fetch(args):
    from .fetch import fetch_all

    root = resolve_data_root(args.data_root)
    fetch_all(root, mnist_base_url=args.mnist_url, fsdd_url=args.fsdd_url)
    print(f"data ready under {root}; use --data-root {root} or export AVDIGITS_DATA={root}")


def test_recordings(split):
    """The recording (digit_speaker_take) of each pair of a split, in row order."""
    return [split.recording_names[i] for i in split.meta["recording_index"].tolist()]


def cmd_recordings(args):
    """The test split's recording of each row, as DIR/<fingerprint[:12]>.csv (id,recording): the table
    the report resamples recordings with for runs whose predictions_test.csv has no recording column."""
    ds = dataset_from_args(args)
    if "recording_index" not in ds.test.meta:
        raise DataError(f"the {ds.name} test split does not name its recordings")
    path = os.path.join(args.out, f"{ds.fingerprint[:12]}.csv")
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("id,recording\n")
        f.writelines(f"{i},{name}\n" for i, name in enumerate(test_recordings(ds.test)))
    print(f"wrote {path}: {len(ds.test)} test rows of dataset {ds.fingerprint[:12]}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="download MNIST and the Free Spoken Digit Dataset into the data root")
    p.add_argument("--data-root", default=None, help="destination (None: $AVDIGITS_DATA, else ./data)")
    p.add_argument("--mnist-url", default=MNIST_URL, help="base URL of an MNIST mirror (the MD5 sums still apply)")
    p.add_argument("--fsdd-url", default=FSDD_URL, help="URL of the spoken-digit archive (.tar.gz)")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("info", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="sizes, class and regime counts, fingerprint")
    add_data_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("show", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write a PNG grid of random pairs (image above, waveform below)")
    add_data_flags(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="train", choices=("train", "test"), help="which split")
    p.add_argument("--n", type=positive_int, default=8, help="number of pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of pairs")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("wav", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write the audio of a few random pairs as .wav files to listen to")
    add_data_flags(p)
    p.add_argument("--out", required=True, help="folder for the .wav files")
    p.add_argument("--split", default="train", choices=("train", "test"), help="which split")
    p.add_argument("--n", type=positive_int, default=5, help="number of pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of pairs")
    p.set_defaults(func=cmd_wav)
    p = sub.add_parser("recordings", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="write the recording of each test row (for intervals that resample recordings)")
    add_data_flags(p)
    p.add_argument("--out", default="results/recordings", help="folder for <fingerprint>.csv")
    p.set_defaults(func=cmd_recordings)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DataError as e:
        log_stderr(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Robustness of finished runs: noise sweeps, a missing view, and a fresh draw of the test split.

For each RUN_DIR (a finished or stopped image, audio or multimodal run), loads
config.json and checkpoints/best.pt, rebuilds the run's data and measures on
its test pairs:

- fresh draw: the test split drawn again at another data seed (same MNIST test
  images and FSDD test takes; new pairing, regimes, noise and offsets),
  accuracy and loss overall and per regime; it must match the run's own test
  accuracy within seed noise, or something leaks;
- image sweep: every pixel replaced with probability p in {0, 0.1, ..., 0.9,
  0.95}, the audio held mild (SNR 20 dB);
- audio sweep: SNR in {+30, +20, +10, 0, -5, -10, -15, -20, -30} dB, the image
  held mild (p = 0.1), plus the audio with no noise at all;
- missing view (multimodal runs): the image or the audio replaced by zeros or
  by the training mean, the other view mild; late fusion also with the
  surviving head alone;
- grid (opt-in, --grid): the fusion map, every image level (p 0 ... 0.9,
  missing) with every audio level (clean, +30 ... -10 dB, missing), each
  cell with its accuracy and each test pair's correctness.

Unimodal runs sweep their own view only. The noise comes from the recipe's own
functions, from seeded streams: the same command gives the same numbers.
Writes RUN_DIR/robustness.json and RUN_DIR/figures/robustness.png and prints
one line per run.

Examples:
  python evaluate.py runs/multimodal-concat-s0
  python evaluate.py runs/study/* --sweeps image audio
"""
import argparse
import os

import torch

from common.argtypes import non_negative_int, positive_int
from common.data.sources import dataset_from_args, load_raw_sources
from common.evaluation.malloc import keep_freed_memory
from common.evaluation.robustness import GRID, MEASURES, SWEEPS, robustness, summary_line
from common.facts import PRECISIONS, saved_precision
from common.figures import robustness_figure
from common.flags import config_problem
from common.io import output_file_problem, save_figure, save_json
from common.nets.models import build_from_config
from common.runfolder import RecordError, RunFolder, file_sha256, saved_data_args
from common.training.cli import UsageError, run_main
from common.training.loop import TrainingError, load_checkpoint, pick_device, resolve_precision

CLASSIFIERS = ("image", "audio", "multimodal")
VIEWS = {"image": ("image",), "audio": ("audio",), "multimodal": ("image", "audio")}


def read_run(run_dir):
    """config.json and the checks that need no data: a classifier run with a best.pt."""
    folder = RunFolder(run_dir)
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir} is not a run folder")
    try:
        config = folder.read_config()
        if "data" not in config["args"]:  # not a config of this project
            raise KeyError("data")
    except (RecordError, KeyError, TypeError):
        raise UsageError(f"{run_dir}: config.json is missing or unreadable; is it a run folder?") from None
    problem = config_problem(config) if config.get("model") in CLASSIFIERS else None
    if problem:
        raise UsageError(f"{run_dir}: config.json cannot be this code's run: {problem}")
    if config.get("model") not in CLASSIFIERS:
        raise UsageError(f"{run_dir} is a {config.get('model')!r} run; evaluate.py measures classifiers "
                         f"({', '.join(CLASSIFIERS)} runs)")
    best = folder.best
    if not os.path.exists(best):
        raise UsageError(f"{run_dir} has no checkpoints/best.pt (it never finished an epoch, or its "
                         "checkpoints were deleted); nothing to evaluate")
    test_acc = None  # the run's own test accuracy, beside the fresh draw; read now, before any work
    if os.path.exists(folder.metrics):
        try:
            test_acc = (folder.read_metrics().get("test") or {}).get("acc")
        except RecordError as e:
            raise UsageError(f"{run_dir}: {e}") from None
    for path in (folder.robustness, folder.figure("robustness")):  # what the work will write, checked first
        problem = output_file_problem(path)
        if problem:
            raise UsageError(f"{run_dir}: cannot write {os.path.relpath(path, run_dir)}: {problem}")
    return config, best, test_acc


def with_earlier_measures(folder, result):
    """A partial evaluation (--sweeps fresh, say) of the same best.pt keeps what an earlier one of it
    measured; an earlier file of other weights is replaced whole."""
    try:
        previous = folder.read_robustness()
    except RecordError:
        previous = None
    if not previous or previous.get("best_sha256") != result["best_sha256"]:
        return result
    merged = {**previous, **result}
    merged["sweeps"] = [s for s in MEASURES if s in set(previous.get("sweeps", [])) | set(result["sweeps"])]
    return merged


def check_indices(run_dir, indices, n_train, n_test):
    """split_indices.json must name rows of the splits it indexes: no negative or out-of-range row."""
    for name, index, size in (("train", indices[0], n_train), ("test", indices[1], n_test)):
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
            raise UsageError(f"{run_dir}: split_indices.json names {name} rows outside 0..{size - 1} "
                             f"(from {int(index.min())} to {int(index.max())}); it does not belong to this data")


def read_indices(run_dir):
    try:
        saved = RunFolder(run_dir).read_indices()
        return torch.tensor(saved["train"], dtype=torch.long), torch.tensor(saved["test"], dtype=torch.long)
    except (RecordError, KeyError):
        raise UsageError(f"{run_dir}: split_indices.json is missing or unreadable") from None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders to evaluate")
    p.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=SWEEPS, metavar="SWEEP",
                   help=f"what to measure, any of: {', '.join(SWEEPS)} (default: all)")
    p.add_argument("--grid", action="store_true",
                   help="also the fusion map: the test pairs at every pair of image levels (p 0 ... 0.9, missing) "
                        "and audio levels (clean, +30 ... -10 dB, missing), each pair's correctness kept, in "
                        "robustness.json's grid (opt-in: 49 cells)")
    p.add_argument("--data-seed", type=non_negative_int, default=None,
                   help="data seed of the fresh draw (default: the run's data seed + 1000); never the run's own")
    p.add_argument("--data-root", default=None,
                   help="where the run's raw data lives now (default: as saved in the run, else $AVDIGITS_DATA)")
    p.add_argument("--precision", default="run", choices=("run",) + PRECISIONS,
                   help="forward-pass precision; run = the precision the run trained at")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to evaluate")
    p.add_argument("--num-threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch (None: PyTorch's choice)")
    args = p.parse_args()
    if args.grid:
        args.sweeps = list(args.sweeps) + [GRID]
    keep_freed_memory()  # thousands of same-sized activations: reuse their pages instead of faulting new ones in
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)

    runs = [(run_dir, *read_run(run_dir)) for run_dir in args.run_dirs]  # every check before any work
    for run_dir, config, _, _ in runs:
        if args.data_seed is not None and args.data_seed == config["args"].get("data_seed", 0):
            raise UsageError(f"--data-seed {args.data_seed} is {run_dir}'s own data seed: that draw is its test "
                             "split, not a fresh one; give another")
    sources = {}  # one dataset and raw pool per data configuration, shared by runs that used it
    for run_dir, config, best_path, test_acc in runs:
        saved = config["args"]
        data_args = saved_data_args(config, args.data_root)
        key = tuple(sorted(vars(data_args).items(), key=lambda kv: kv[0]))
        if key not in sources:
            if data_args.data == "course":
                raise UsageError(f"{run_dir} was trained on the course files, which come already corrupted: "
                                 "their views cannot be re-noised (evaluate avdigits or synthetic runs)")
            dataset = dataset_from_args(data_args)
            raw = load_raw_sources(dataset.name, data_args.data_root, data_args.data_seed, data_args.synthetic_size,
                                   raw_fingerprint=dataset.info.get("raw_fingerprint"),
                                   holdout_speaker=data_args.holdout_speaker)
            sources[key] = (dataset, raw)
        dataset, raw = sources[key]
        if dataset.fingerprint != config["dataset"]["fingerprint"]:
            raise UsageError(f"{run_dir} was trained on data with fingerprint {config['dataset']['fingerprint'][:12]}, "
                             f"but its data now builds to {dataset.fingerprint[:12]}")
        train_index, test_index = read_indices(run_dir)
        check_indices(run_dir, (train_index, test_index), len(dataset.train), len(dataset.test))
        if not len(test_index):
            raise UsageError(f"{run_dir}: split_indices.json names no test pairs; there is nothing to measure")
        model = build_from_config(config)
        ckpt = load_checkpoint(best_path)
        measured = {"best_epoch": ckpt.get("epoch"), "best_sha256": file_sha256(best_path)}  # which weights
        try:
            model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            raise TrainingError(f"{best_path} does not fit the run's model: {str(e).splitlines()[0]}") from None
        model = model.to(device)
        precision = (saved_precision(config) or "fp32") if args.precision == "run" else \
            resolve_precision(args.precision, device)
        views = VIEWS[config["model"]]
        result = robustness(model, views, raw, len(dataset.test), test_index, data_args.data_seed,
                            dataset.train, train_index, device, precision, sweeps=args.sweeps,
                            fresh_seed=args.data_seed)
        name = os.path.basename(os.path.normpath(run_dir))
        folder = RunFolder(run_dir)
        result = {"run": name, "model": config["model"], "fusion": saved.get("fusion") if config["model"] ==
                  "multimodal" else None, "seed": saved.get("seed"), "dataset": dataset.name,
                  "synthetic": dataset.is_synthetic, "fingerprint": dataset.fingerprint,
                  "data_seed": data_args.data_seed, "test_acc": test_acc, **measured, "sweeps": args.sweeps, **result}
        result = with_earlier_measures(folder, result)
        save_json(result, folder.robustness)
        if "image_sweep" in result or "audio_sweep" in result:
            save_figure(robustness_figure(result, f"{name} [{dataset.name}]: robustness"), folder.figure("robustness"))
        print(summary_line(name, result))
    return 0


if __name__ == "__main__":
    run_main(main)

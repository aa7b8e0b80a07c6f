"""Late fusion of two finished single-view runs: a fusion that falls back on the better model of
each view instead of on a fused model's weaker branch.

  python combine.py runs/image-s0 runs/audio-s0 --name experts-s0
  python evaluate.py runs/experts-s0 --grid

The image-only run's network and the audio-only run's network, trained on their own, become the two
heads of a late fusion (common/nets/models.py, LateFusionNet): nothing is trained again. How the two
heads are weighed is fitted on the validation pairs (common/training/calibration.py; with --val-speaker
an unheard voice), by --gate:

  temperature   one temperature per head, fitted on the validation pairs as built (their noise mix)
  confidence    per pair: each head's logits times exp(a + b * entropy of its own softmax), (a, b) per
                head fitted on the validation pairs rendered four times over, each view at a level drawn
                over its sweep's whole range, so a ruined view is seen and learnt to be turned down
                (needs the raw data the runs were built from: avdigits or synthetic)

A view that is all zeros (evaluate.py's missing view, predict.py's stand-in for a view not given)
leaves the average, so that without it the fused run answers exactly as the other view's run does.
The two runs must share their data build and split.

Writes RUNS_DIR/NAME as a multimodal run (late fusion, --calibrate, config.json's "experts" naming
the two runs): config.json, checkpoints/best.pt, split_indices.json, predictions_test.csv and
metrics.json (written last), into a temporary folder renamed at the end; evaluate.py, report.py and
predict.py read it like any run.
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
import torch

from common.data.errors import DataError
from common.data.recipe import drawn_train_pairs
from common.data.sources import dataset_from_args, load_raw_sources
from common.evaluation.robustness import CleanViews
from common.facts import saved_precision
from common.flags import flags_of
from common.io import save_json
from common.nets.featurizers import count_parameters
from common.nets.models import build_from_config
from common.runfolder import RecordError, RunFolder, saved_data_args
from common.training.calibration import branch_logits, fit_confidence_gate, fit_view_temperatures
from common.training.cli import UsageError, run_main
from common.training.finish import METRICS_ORDER, write_predictions
from common.training.lifecycle import git_commit
from common.training.loop import (classification_metrics, evaluate, load_checkpoint, pick_device, resolve_precision,
                                  save_checkpoint)

VIEWS = ("image", "audio")
EVAL_BATCH = 512
GATES = ("temperature", "confidence")
CALIBRATION_COPIES = 4  # --gate confidence: renderings of the validation pairs at random levels
CALIBRATION_STREAM = 0xCA1  # their noise's seeded stream, apart from the recipe's and evaluate.py's


def read_single_view_run(run_dir, kind):
    folder = RunFolder(run_dir)
    try:
        config = folder.read_config()
        indices = folder.read_indices()
    except RecordError as e:
        raise UsageError(f"{run_dir} is not a finished run folder: {e}") from None
    if config.get("model") != kind:
        raise UsageError(f"{run_dir} is a {config.get('model')!r} run; give an {kind}-only run there")
    if not os.path.exists(folder.best):
        raise UsageError(f"{run_dir} has no checkpoints/best.pt (results/ keeps none): train it, then combine")
    return folder, config, indices


def calibration_pairs(dataset, data_args, val_index, seed):
    """--gate confidence's calibration set: the validation pairs (rows val_index of the training split),
    rendered CALIBRATION_COPIES times with each view at a random level of its sweep's range."""
    try:
        raw = load_raw_sources(dataset.name, data_args.data_root, data_args.data_seed, data_args.synthetic_size,
                               dataset.info.get("raw_fingerprint"), data_args.holdout_speaker)
    except DataError as e:  # a source the recipe does not build (the course's .pt files)
        raise UsageError(f"--gate confidence re-noises the validation pairs: {e}") from None
    pairs = drawn_train_pairs(raw.train, len(dataset.train), data_args.data_seed, data_args.val_speaker)
    pairs = {k: v[val_index.numpy()] for k, v in pairs.items()}
    if not np.array_equal(pairs["label"], dataset.train.label[val_index].numpy()):
        raise UsageError("the validation pairs do not draw again as they were built: the runs' data differs")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), CALIBRATION_STREAM]))
    return CleanViews(raw.train, pairs).at_random_levels(CALIBRATION_COPIES, rng)


def combined_config(image, audio, names, device, precision, gate, name, runs_dir):
    """The fused run's config.json: train_multimodal.py's defaults, the image run's flags (its data among
    them), the audio run's audio flags and recipes, late fusion with --calibrate, the two runs it is
    made of, its own name and runs dir and, for --gate confidence, the gate."""
    args = {f.dest: f.default_for("multimodal") for f in flags_of("multimodal")}
    args.update({k: v for k, v in image["args"].items() if k in args})
    args.update({k: v for k, v in audio["args"].items() if k in args and k.startswith(("audio_", "mel_", "speed_"))})
    args.update(fusion="late", calibrate=True, experts=names, recipe=audio["args"].get("recipe", ["exam"]),
                name=name, runs_dir=runs_dir)
    if gate != "temperature":  # the kept runs before --gate have none: temperatures
        args["gate"] = gate
    return {"model": "multimodal", "args": args, "dataset": image["dataset"],
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                         "numpy": np.__version__},
            "git_commit": git_commit(), "device": str(device), "precision": precision}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_run", metavar="IMAGE_RUN", help="a finished image-only run (train_image.py)")
    p.add_argument("audio_run", metavar="AUDIO_RUN", help="a finished audio-only run (train_audio.py) on the same data")
    p.add_argument("--name", required=True, help="the fused run's folder name under --runs-dir")
    p.add_argument("--runs-dir", default="runs", help="where the fused run goes (default: runs)")
    p.add_argument("--data-root", default=None, help="where the raw data lives now (default: as the runs saved it)")
    p.add_argument("--gate", default="temperature", choices=GATES,
                   help="how the heads are weighed (see above; default: temperature)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the two networks")
    args = p.parse_args()
    image_folder, image, image_split = read_single_view_run(args.image_run, "image")
    audio_folder, audio, audio_split = read_single_view_run(args.audio_run, "audio")
    if image["dataset"].get("fingerprint") != audio["dataset"].get("fingerprint"):
        raise UsageError(f"{args.image_run} and {args.audio_run} trained on different data builds "
                         f"({str(image['dataset'].get('fingerprint'))[:12]} and "
                         f"{str(audio['dataset'].get('fingerprint'))[:12]}): give runs of the same build")
    if any(image_split.get(k) != audio_split.get(k) for k in ("val", "test")):
        raise UsageError(f"{args.image_run} and {args.audio_run} have different validation or test pairs "
                         "(another --seed or --limit): give runs with the same split")
    out = os.path.join(args.runs_dir, args.name)
    if os.path.lexists(out):
        raise UsageError(f"{out} exists; give another --name")
    os.makedirs(args.runs_dir, exist_ok=True)

    names = [image_folder.name, audio_folder.name]
    device = pick_device(args.device)
    precision = saved_precision(image) or resolve_precision("auto", device)
    config = combined_config(image, audio, names, device, precision, args.gate, args.name, args.runs_dir)
    model = build_from_config(config)
    image_weights = load_checkpoint(image_folder.best)["model"]
    audio_weights = load_checkpoint(audio_folder.best)["model"]
    state = model.state_dict()  # the single-view nets' featurizer and fc, as the late heads
    for view, weights in (("image", image_weights), ("audio", audio_weights)):
        for key, value in weights.items():
            part, rest = key.split(".", 1)
            state[f"{view}_{part}.{rest}"] = value
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(f"the two runs' networks do not make a late fusion: {str(e).splitlines()[0]}") from None
    model = model.to(device)
    dataset = dataset_from_args(saved_data_args(image, args.data_root))
    if dataset.fingerprint != image["dataset"]["fingerprint"]:
        raise UsageError(f"the runs' data now builds to {dataset.fingerprint[:12]}, not the "
                         f"{image['dataset']['fingerprint'][:12]} they trained on")
    val_index, test_index = torch.tensor(image_split["val"]), torch.tensor(image_split["test"])
    if args.gate == "confidence":
        calibration_set = calibration_pairs(dataset, saved_data_args(image, args.data_root), val_index,
                                            image["args"].get("seed", 0))
        logits = branch_logits(model, calibration_set, torch.arange(len(calibration_set.label)), device, precision)
        calibration = {**fit_confidence_gate(*logits, calibration_set.label), "pairs": len(calibration_set.label)}
        model.view_gate.copy_(torch.tensor(calibration["view_gate"]))
    else:
        calibration = fit_view_temperatures(model, dataset.train, val_index, device, precision)
    val = evaluate(model, dataset.train, val_index, VIEWS, EVAL_BATCH, device, precision)
    test = evaluate(model, dataset.test, test_index, VIEWS, EVAL_BATCH, device, precision)

    tmp = tempfile.mkdtemp(prefix=f".{args.name}.", dir=args.runs_dir)
    try:
        folder = RunFolder(tmp)
        os.makedirs(os.path.dirname(folder.best))
        save_json(config, folder.config)
        shutil.copyfile(image_folder.split_indices, folder.split_indices)
        save_checkpoint(folder.best, model=model.state_dict(), epoch=None)
        write_predictions(folder.predictions, test_index, test["logits"], dataset.test)
        saved = image["args"]
        metrics = {"model": "multimodal", "fusion": "late", "dataset": dataset.name,
                   "synthetic": dataset.is_synthetic, "fingerprint": dataset.fingerprint, "seed": saved.get("seed"),
                   "data_seed": saved.get("data_seed"), "limit": saved.get("limit"), "best_epoch": None,
                   "epochs_run": 0, "stopped_early": False, "val": {"loss": val["loss"], "acc": val["acc"]},
                   "test": classification_metrics(test["logits"], dataset.test, test_index),
                   "params": count_parameters(model), "calibration": calibration}
        save_json({k: metrics[k] for k in METRICS_ORDER if k in metrics}, folder.metrics)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    t = metrics["test"]
    weighing = (f"temperatures {', '.join(f'{x:.3g}' for x in calibration['view_temperature'])}"
                if args.gate == "temperature" else
                "confidence gate " + ", ".join(f"{v} exp({a:.2f} {b:+.2f} H)" for v, (a, b) in
                                               zip(VIEWS, calibration["view_gate"])))
    print(f"{out}: late fusion of {names[0]} and {names[1]}, {weighing}; val acc {100 * val['acc']:.2f}%"
          + (f", test acc {100 * t['acc']:.2f}%" if t.get("labeled") else ""))
    return 0


if __name__ == "__main__":
    run_main(main)

"""Late fusion of two finished single-view runs: a fusion that falls back on the better model of
each view instead of on a fused model's weaker branch.

  python combine.py runs/image-s0 runs/audio-s0 --name experts-s0
  python evaluate.py runs/experts-s0 --grid

The image-only run's network and the audio-only run's network, trained on their own, become the two
heads of a late fusion (common/nets/models.py, LateFusionNet): nothing is trained again. Each head's
logits are divided by a temperature fitted on the validation pairs (common/training/calibration.py;
with --val-speaker an unheard voice), and a view that is all zeros (evaluate.py's missing view,
predict.py's stand-in for a view not given) leaves the average, so that without it the fused run
answers exactly as the other view's run does. The two runs must share their data build and split.

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

import torch

from common.data.sources import dataset_from_args
from common.facts import saved_precision
from common.flags import flags_of
from common.io import save_json
from common.nets.featurizers import count_parameters
from common.nets.models import build_from_config
from common.runfolder import RecordError, RunFolder, saved_data_args
from common.training.calibration import fit_view_temperatures
from common.training.cli import UsageError, run_main
from common.training.finish import METRICS_ORDER, write_predictions
from common.training.lifecycle import git_commit
from common.training.loop import (classification_metrics, evaluate, load_checkpoint, pick_device, resolve_precision,
                                  save_checkpoint)

VIEWS = ("image", "audio")
EVAL_BATCH = 512


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


def combined_config(image, audio, names, device, precision):
    """The fused run's config.json: train_multimodal.py's defaults, the image run's flags (its data among
    them), the audio run's audio flags and recipes, late fusion with --calibrate, and the two runs it
    is made of."""
    args = {f.dest: f.default_for("multimodal") for f in flags_of("multimodal")}
    args.update({k: v for k, v in image["args"].items() if k in args})
    args.update({k: v for k, v in audio["args"].items() if k in args and k.startswith(("audio_", "mel_", "speed_"))})
    args.update(fusion="late", calibrate=True, experts=names, recipe=audio["args"].get("recipe", ["exam"]))
    import numpy
    return {"model": "multimodal", "args": args, "dataset": image["dataset"],
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                         "numpy": numpy.__version__},
            "git_commit": git_commit(), "device": str(device), "precision": precision}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_run", metavar="IMAGE_RUN", help="a finished image-only run (train_image.py)")
    p.add_argument("audio_run", metavar="AUDIO_RUN", help="a finished audio-only run (train_audio.py) on the same data")
    p.add_argument("--name", required=True, help="the fused run's folder name under --runs-dir")
    p.add_argument("--runs-dir", default="runs", help="where the fused run goes (default: runs)")
    p.add_argument("--data-root", default=None, help="where the raw data lives now (default: as the runs saved it)")
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
    config = combined_config(image, audio, names, device, precision)
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
    print(f"{out}: late fusion of {names[0]} and {names[1]}, temperatures "
          f"{', '.join(f'{x:.3g}' for x in calibration['view_temperature'])}; val acc {100 * val['acc']:.2f}%"
          + (f", test acc {100 * t['acc']:.2f}%" if t.get("labeled") else ""))
    return 0


if __name__ == "__main__":
    run_main(main)

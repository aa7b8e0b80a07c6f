"""What digit is this? A finished run's best.pt on your own handwriting and your own voice.

  python predict.py RUN_DIR --image my_seven.png
  python predict.py RUN_DIR --audio me_saying_seven.wav
  python predict.py RUN_DIR --image a.png b.png --audio a.wav b.wav   # pairs, in order
  python predict.py RUN_DIR --image *.png --out predictions.csv       # several: one CSV
  python predict.py RUN_DIR --image my_seven.png --json --show seen/  # a JSON line; the 28x28 it fed

RUN_DIR is an image, audio or multimodal run (train_image.py, train_audio.py, train_multimodal.py).
Images and recordings are made into what the models trained on (common/data/user_inputs.py: MNIST's own
centring of an image, a recording resampled to 8 kHz, trimmed, centred in one second and
standardised). A multimodal run given one view only fills the other with the stand-in it was
trained for (zeros, or the training mean under --modality-dropout-fill train_mean) and says so;
a run that never trained without a view still answers, with that warning. Prints the digit and
its three most likely digits; bad input ends with one line and exit 2.

Your inputs are clean: no noise, unlike every view the models trained on. docs/RESULTS.md has how
each model does on clean views (the audio_clean row of evaluate.py).
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import torch

from common.data.user_inputs import load_audio, load_image
from common.facts import saved_precision
from common.flags import config_problem
from common.io import output_dir_problem, output_file_problem, save_figure, save_text
from common.nets.models import build_from_config
from common.runfolder import RecordError, RunFolder, saved_data_args
from common.training.cli import UsageError, run_main
from common.training.loop import autocast, load_checkpoint, pick_device

KINDS = ("image", "audio", "multimodal")
VIEWS = {"image": ("image",), "audio": ("audio",), "multimodal": ("image", "audio")}


def read_run(run_dir):
    folder = RunFolder(run_dir)
    try:
        config = folder.read_config()
    except RecordError as e:
        raise UsageError(f"{run_dir} is not a run folder: {e}") from None
    kind = config.get("model") if isinstance(config, dict) else None
    problem = config_problem(config) if kind in KINDS else None
    if problem:
        raise UsageError(f"{run_dir}: config.json cannot be this code's run: {problem}")
    if kind not in KINDS:
        raise UsageError(f"{run_dir} is a {kind!r} run: predict.py takes image, audio or multimodal runs "
                         "(a contrastive run has no classifier; fine-tune one with train_multimodal.py --init-from)")
    if not os.path.exists(folder.best):
        raise UsageError(f"{run_dir} has no checkpoints/best.pt: it never finished an epoch, or the checkpoints "
                         "were not kept (results/ keeps none); train it, then ask again")
    return folder, config


def stand_in(folder, config, view, data_root=None):
    """What a missing view becomes for this run, and a note on how it was trained for it."""
    args = config["args"]
    if args.get("experts"):  # combine.py's fusion of two single-view runs: a blank view leaves the average
        other = args["experts"][1 if view == "image" else 0]
        return torch.zeros((1, 28, 28) if view == "image" else (1, 8000)), \
            f"no {view} given: this fusion of two runs leaves it out and answers as {other} does"
    fill = args.get("modality_dropout_fill", "zeros")
    trained = args.get("modality_dropout", 0.0) > 0
    note = (f"no {view} given: filled with {fill.replace('_', ' ')}, as this run was trained for "
            f"(--modality-dropout {args.get('modality_dropout')})" if trained else
            f"no {view} given: filled with zeros; this run never trained without its {view} "
            "(no --modality-dropout), so expect little")
    if fill == "train_mean" and trained:
        from common.data.sources import dataset_from_args
        from common.nets.models import missing_view_stand_in
        saved = args.get("data_root")  # where the data lived: unless moved, else $AVDIGITS_DATA
        root = data_root or (saved if saved and os.path.isdir(saved) else os.environ.get("AVDIGITS_DATA"))
        train = dataset_from_args(saved_data_args(config, root)).train
        index = torch.tensor(folder.read_indices()["train"])
        return missing_view_stand_in(train, index, view, "train_mean")[0], note
    shape = (1, 28, 28) if view == "image" else (1, 8000)
    return torch.zeros(shape), note


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished image, audio or multimodal run folder")
    p.add_argument("--image", nargs="+", default=[], metavar="FILE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--audio", nargs="+", default=[], metavar="FILE", help="WAV files, any rate, depth and channels")
    p.add_argument("--json", action="store_true", help="one JSON line per prediction instead of text")
    p.add_argument("--out", metavar="FILE", help="write the predictions as CSV to FILE (the default for several)")
    p.add_argument("--show", metavar="DIR", help="write each 28x28 image as fed to the model to DIR/NAME.png")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the model")
    p.add_argument("--data-root", default=None,
                   help="where a --modality-dropout-fill train_mean run's training data lives now, for its "
                        "stand-in of a missing view (default: $AVDIGITS_DATA, else where it lived when it trained)")
    p.add_argument("--force", action="store_true",
                   help="replace output files that exist (the CSV, --show's figures); an input is never replaced")
    args = p.parse_args()
    folder, config = read_run(args.run_dir)
    kind, views = config["model"], VIEWS[config["model"]]
    given = [v for v in ("image", "audio") if getattr(args, v)]
    if not given:
        raise UsageError("give --image FILE..., --audio FILE... or both")
    if kind != "multimodal" and given != [kind]:
        raise UsageError(f"{args.run_dir} is an {kind}-only run: give --{kind} files only")
    if len(given) == 2 and len(args.image) != len(args.audio):
        raise UsageError(f"pairs: {len(args.image)} image(s) but {len(args.audio)} recording(s); give as many of each")
    n = max(len(args.image), len(args.audio))
    csv_path = args.out or ("predictions.csv" if n > 1 and not args.json else None)
    figures = figure_paths(args.show, args.image) if args.show else []
    check_outputs(args.show, [p for p in [csv_path] if p] + figures, args.image + args.audio, args.force)

    inputs = {"image": [load_image(f) for f in args.image], "audio": [load_audio(f) for f in args.audio]}
    device = pick_device(args.device)
    model = build_from_config(config)
    try:
        model.load_state_dict(load_checkpoint(folder.best)["model"])
    except (RuntimeError, KeyError) as e:  # a best.pt of another model or fusion than config.json says
        raise UsageError(f"{folder.best} does not fit the run's model: {str(e).splitlines()[0]}") from None
    model = model.to(device).eval()
    precision = saved_precision(config) or "fp32"
    batch = {}
    for view in views:
        if inputs[view]:
            shape = (n, 1, 28, 28) if view == "image" else (n, 1, 8000)
            batch[view] = torch.from_numpy(np.stack(inputs[view])).reshape(shape)
        else:
            filler, note = stand_in(folder, config, view, args.data_root)
            print(f"note: {note}", file=sys.stderr)
            batch[view] = filler.unsqueeze(0).expand(n, *filler.shape)
    with torch.inference_mode(), autocast(precision, device):
        logits = model(*(batch[v].to(device) for v in views)).float().cpu()
    probs = torch.softmax(logits, dim=1)
    rows = []
    for i in range(n):
        top = torch.topk(probs[i], 3)
        rows.append({"image": args.image[i] if args.image else None, "audio": args.audio[i] if args.audio else None,
                     "digit": int(top.indices[0]),
                     "top3": [[int(d), round(float(q), 4)] for d, q in zip(top.indices, top.values)]})
    if args.show:
        from common.figures import digit_figure
        os.makedirs(args.show, exist_ok=True)
        for path, image, figure in zip(args.image, inputs["image"], figures):
            name = os.path.splitext(os.path.basename(path))[0]
            save_figure(digit_figure(image, f"{name}: as fed to the model"), figure)
    if csv_path:
        save_text(csv_text(rows), csv_path)
        print(f"wrote {csv_path} ({n} predictions)")
    for row in rows:
        if args.json:
            print(json.dumps(row))
        elif n == 1:
            what = " + ".join(f for f in (row["image"], row["audio"]) if f)
            shares = ", ".join(f"{d}: {100 * q:.1f}%" for d, q in row["top3"])
            print(f"{what}: {row['digit']}  (top 3: {shares})")
    return 0


def figure_paths(folder, images):
    """--show's figure of each image: DIR/NAME.png, NAME-2.png, ... where two inputs share a name."""
    paths, seen = [], {}
    for path in images:
        name = os.path.splitext(os.path.basename(path))[0]
        seen[name] = seen.get(name, 0) + 1
        paths.append(os.path.join(folder, f"{name}.png" if seen[name] == 1 else f"{name}-{seen[name]}.png"))
    return paths


def check_outputs(show_dir, outputs, inputs, force):
    """Before any work: every output can be written, none is an input, none exists unless --force."""
    if show_dir:
        problem = output_dir_problem(show_dir)
        if problem:
            raise UsageError(f"{show_dir}: {problem}")
    given = {os.path.realpath(p) for p in inputs}
    for path in outputs:
        if os.path.realpath(path) in given:
            raise UsageError(f"{path} is one of the inputs; predict.py never writes over an input")
        problem = output_file_problem(path)
        if problem:
            raise UsageError(f"{path}: {problem}")
        if os.path.lexists(path) and not force:
            raise UsageError(f"{path} exists; pass --force to replace it")


def csv_text(rows):
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "audio", "digit", "top3"])
    for r in rows:
        w.writerow([r["image"] or "", r["audio"] or "", r["digit"],
                    " ".join(f"{d}:{q:.4f}" for d, q in r["top3"])])
    return buf.getvalue()


if __name__ == "__main__":
    run_main(main)

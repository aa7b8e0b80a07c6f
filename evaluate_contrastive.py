"""What contrastive pre-training is worth with few labels, read against its floors.

For each SOURCE, features of every pair are computed once and frozen; then, for each share F of
the labelled training pairs (0.01, 0.1, 1) and each label seed (0, 1, 2), a linear probe is fitted
on the image features, the audio features and both, its L2 penalty chosen on a labelled
validation subset no larger than the label budget, and scored on the whole test split, overall
and per noise regime (common/evaluation/label_efficiency.py has the protocol).

SOURCE is one of
- a contrastive run folder (train_contrastive.py): its best.pt's frozen featurizers (128-d each,
  eval mode), on its own training / validation indices; also class-level retrieval on the test
  split (digit@1 and digit@5 both ways, overall and per regime). Writes RUN_DIR/probes.json;
- `raw`: the trivial floors, a probe on the raw noisy pixels, on a fixed log-mel summary of the
  audio, and on both; `random`: the exam's two featurizers at random initialisation (built at
  the label seed), never trained. Both use the training / validation split of seed 0 (with
  --val-speaker, that speaker's validation pairs, as the classifiers do) and need --out FILE.

Examples:
  python evaluate_contrastive.py runs/contrastive2/contrastive-nt_xent-s0
  python evaluate_contrastive.py raw --out results/contrastive2/floor-raw/probes.json
  python evaluate_contrastive.py random --data avdigits --out results/contrastive2/floor-random/probes.json

--finetune adds linear-probe-then-fine-tune (F = 0.01 and 0.1 by default): the probe on both frozen
featurizers starts a short fine-tuning of everything (common/evaluation/label_efficiency.py); on `random` it
is the from-scratch baseline with the same budget and selection.
"""
import argparse
import copy
import os

import torch

from common.data import REGIMES
from common.data.batching import validation_split
from common.data.sources import add_data_flags, dataset_from_args
from common.training.retrieval import encode, retrieval_by_group
from common.evaluation.label_efficiency import (FINETUNE_FRACTIONS, FINETUNE_LRS, FINETUNE_STEPS, FRACTIONS,
                                                LABEL_SEEDS, WEIGHT_DECAYS, finetune_rows, floor_features, probe_rows,
                                                regimes_of)
from common.facts import AudioFrontend
from common.facts import saved_precision
from common.io import output_file_problem, save_json
from common.nets.featurizers import AudioFeaturizer, ImageFeaturizer
from common.nets.losses import build_contrastive_loss
from common.nets.models import ContrastiveModel
from common.runfolder import RecordError, RunFolder, saved_data_args
from common.training.cli import UsageError, run_main
from common.training.loop import TrainingError, load_checkpoint, pick_device, resolve_precision

FLOORS = ("raw", "random")
FLOOR_VAL_FRACTION, FLOOR_SPLIT_SEED = 0.2, 0


def read_contrastive_run(run_dir):
    """config.json, split indices and best.pt path of a finished contrastive run; checks only."""
    folder = RunFolder(run_dir)
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir} is not a run folder (nor one of {', '.join(FLOORS)})")
    try:
        config = folder.read_config()
        saved = folder.read_indices()
        indices = {k: torch.tensor(saved[k], dtype=torch.long) for k in ("train", "val", "test")}
    except (RecordError, KeyError):
        raise UsageError(f"{run_dir}: config.json or split_indices.json is missing or unreadable") from None
    if config.get("model") != "contrastive":
        raise UsageError(f"{run_dir} is a {config.get('model')!r} run; evaluate_contrastive.py measures "
                         "contrastive runs (evaluate.py measures classifiers)")
    if not os.path.exists(folder.best):
        raise UsageError(f"{run_dir} has no checkpoints/best.pt; nothing to measure")
    return folder, config, indices


def model_from_config(config):
    a = config["args"]
    loss = build_contrastive_loss(a["loss"], a.get("similarity", "cosine"), a["tau"], a.get("learn_tau", False),
                                  a.get("learn_bias", False), a.get("bias_init"), a.get("batch_size", 128))
    return ContrastiveModel(loss, a.get("proj_dim", 64), dropout=a.get("feat_dropout", 0.5), head=a.get("head", "mlp"),
                            audio_frontend=AudioFrontend.of(a))


def measure_run(run_dir, args, device):
    folder, config, idx = read_contrastive_run(run_dir)
    saved = config["args"]
    dataset = dataset_from_args(saved_data_args(config, args.data_root))
    if dataset.fingerprint != config["dataset"]["fingerprint"]:
        raise UsageError(f"{run_dir} was trained on data with fingerprint {config['dataset']['fingerprint'][:12]}, "
                         f"but its data now builds to {dataset.fingerprint[:12]}")
    model = model_from_config(config)
    try:
        model.load_state_dict(load_checkpoint(folder.best)["model"])
    except (RuntimeError, KeyError) as e:
        raise TrainingError(f"{folder.best} does not fit the run's model: {str(e).splitlines()[0]}") from None
    model = model.to(device)
    precision = saved_precision(config) or "fp32"
    train, test = dataset.train, dataset.test
    every_train = torch.arange(len(train)) if saved.get("limit") is None else torch.arange(min(saved["limit"],
                                                                                                len(train)))
    codes = encode(model, train, every_train, device, precision)
    train_features = {"image": codes["feat_image"], "audio": codes["feat_audio"]}
    test_codes = encode(model, test, idx["test"], device, precision)
    regimes = regimes_of(test, idx["test"])
    labels = test.label[idx["test"]]
    groups = (regimes, REGIMES) if regimes is not None else (torch.zeros(len(labels), dtype=torch.long), ())
    retrieval = retrieval_by_group(test_codes["emb_image"], test_codes["emb_audio"], labels, *groups,
                                   saved.get("similarity", "cosine"))
    rows = probe_rows(train_features, train.label[:len(every_train)], idx["train"], idx["val"],
                      {"image": test_codes["feat_image"], "audio": test_codes["feat_audio"]}, labels, regimes,
                      fractions=args.fractions, seeds=args.label_seeds)
    finetune = None
    if args.finetune:
        def featurizers(seed):  # fresh copies of the pre-trained ones for every fine-tuning
            return copy.deepcopy(model.image_featurizer), copy.deepcopy(model.audio_featurizer)
        finetune = finetune_rows(featurizers, train, idx["train"], idx["val"], test, idx["test"], device, precision,
                                 seeds=args.label_seeds, fractions=args.finetune_fractions)
    out = {"source": os.path.basename(os.path.normpath(run_dir)), "kind": "pretrained", "loss": saved["loss"],
           "seed": saved["seed"], **dataset_fields(dataset), "limit": saved.get("limit"), "retrieval_test": retrieval,
           **protocol(args, "the run's own training / validation indices"), "probes": rows}
    if finetune is not None:
        out["finetune"] = finetune
    return out, args.out or folder.probes


def measure_floor(kind, args, device):
    dataset = dataset_from_args(args)
    train, test = dataset.train, dataset.test
    try:
        train_idx, val_idx = validation_split(train, len(train), FLOOR_VAL_FRACTION, FLOOR_SPLIT_SEED)
    except ValueError as e:
        raise UsageError(str(e)) from None
    test_idx = torch.arange(len(test))
    regimes, labels = regimes_of(test, test_idx), test.label
    if kind == "raw":
        rows = probe_rows(floor_features(train), train.label, train_idx, val_idx, floor_features(test), labels,
                          regimes, fractions=args.fractions, seeds=args.label_seeds)
    else:  # random init: new featurizers for every label seed, built at that seed
        rows = []
        precision = resolve_precision("auto", device)
        for seed in args.label_seeds:
            torch.manual_seed(seed)
            # the exam's featurizers (dropout off in eval mode), built first at this seed, untrained
            model = ContrastiveModel(build_contrastive_loss("nt_xent"), 64).to(device)
            feats = [encode(model, split, torch.arange(len(split)), device, precision) for split in (train, test)]
            rows += probe_rows({"image": feats[0]["feat_image"], "audio": feats[0]["feat_audio"]},
                               train.label, train_idx, val_idx,
                               {"image": feats[1]["feat_image"], "audio": feats[1]["feat_audio"]}, labels, regimes,
                               fractions=args.fractions, seeds=(seed,))
    out = {"source": f"floor-{kind}", "kind": kind, **dataset_fields(dataset), "limit": None,
           **protocol(args, "the validation speaker's pairs (--val-speaker)" if "val" in train.meta else
                      f"train/val split of seed {FLOOR_SPLIT_SEED} (val fraction {FLOOR_VAL_FRACTION})"),
           "probes": rows}
    if kind == "random" and args.finetune:  # the tuned from-scratch baseline: the same budget and selection
        def featurizers(seed):
            torch.manual_seed(seed)
            return ImageFeaturizer(), AudioFeaturizer()
        out["finetune"] = finetune_rows(featurizers, train, train_idx, val_idx, test, test_idx, device,
                                        resolve_precision("auto", device), seeds=args.label_seeds,
                                        fractions=args.finetune_fractions)
    return out, args.out


def dataset_fields(dataset):
    """The build the probes were measured on; a held-out-speaker build names its speaker (only then,
    so the other builds' probes.json stay as they were)."""
    held_out = dataset.info.get("holdout_speaker")
    return {"dataset": dataset.name, "synthetic": dataset.is_synthetic, "fingerprint": dataset.fingerprint,
            **({"holdout_speaker": held_out} if held_out else {})}


def protocol(args, split):
    return {"protocol": {"split": split, "fractions": list(args.fractions), "label_seeds": list(args.label_seeds),
                         "selection": "L2 penalty of the probe, by accuracy on a class-balanced validation subset "
                                      "as large as the label budget", "weight_decays": list(WEIGHT_DECAYS)}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="contrastive run folders, 'raw' or 'random'")
    p.add_argument("--out", default=None, help="where to write probes.json (needed for raw / random; "
                                               "default for a run: RUN_DIR/probes.json)")
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS), metavar="F",
                   help="shares of the labelled training pairs (frozen probes)")
    p.add_argument("--label-seeds", type=int, nargs="+", default=list(LABEL_SEEDS), metavar="K",
                   help="seeds of the labelled subsets (and of the random-init featurizers)")
    p.add_argument("--finetune", action="store_true",
                   help="also linear-probe-then-fine-tune both featurizers (runs and random, not raw): "
                        f"{FINETUNE_STEPS} steps, featurizer lr from {', '.join(map(str, FINETUNE_LRS))} and the step "
                        "chosen on the budget validation subset")
    p.add_argument("--finetune-fractions", type=float, nargs="+", default=list(FINETUNE_FRACTIONS), metavar="F",
                   help="the label shares fine-tuned (with --finetune)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to encode")
    p.add_argument("--num-threads", type=int, default=None, help="CPU threads for PyTorch (None: PyTorch's choice)")
    add_data_flags(p)  # raw / random only: a run rebuilds the data it was trained on
    args = p.parse_args()
    if any(not 0.0 < f <= 1.0 for f in args.fractions + args.finetune_fractions):
        raise UsageError("--fractions and --finetune-fractions must lie in (0, 1]")
    if args.finetune and "raw" in args.sources:
        raise UsageError("--finetune: the raw floor has no featurizer to fine-tune")
    if any(k < 0 for k in args.label_seeds):
        raise UsageError("--label-seeds must be non-negative")
    if args.num_threads is not None and args.num_threads < 1:
        raise UsageError("--num-threads must be a positive integer")
    if args.out and len(args.sources) > 1:
        raise UsageError("--out names one file: give one SOURCE with it")
    for source in args.sources:  # every check before any work
        if source in FLOORS:
            if not args.out:
                raise UsageError(f"{source}: the floors need --out FILE")
        else:
            read_contrastive_run(source)
    if args.out and output_file_problem(args.out):
        raise UsageError(f"--out {args.out}: {output_file_problem(args.out)}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    for source in args.sources:
        result, path = (measure_floor if source in FLOORS else measure_run)(source, args, device)
        save_json(result, path)
        print(summary_line(result) + f"  -> {path}")
    return 0


def summary_line(result):
    """Mean test accuracy over the label seeds of the 'both' probe at each share."""
    parts = []
    for fraction in sorted({r["fraction"] for r in result["probes"]}):
        accs = [r["test_acc"] for r in result["probes"] if r["fraction"] == fraction and r["features"] == "both"]
        parts.append(f"F={fraction:g}: {100 * sum(accs) / len(accs):.2f}%")
    text = f"{result['source']}: frozen probe on both, test acc " + ", ".join(parts)
    if result.get("finetune"):
        tuned = []
        for fraction in sorted({r["fraction"] for r in result["finetune"]}):
            accs = [r["test_acc"] for r in result["finetune"] if r["fraction"] == fraction]
            tuned.append(f"F={fraction:g}: {100 * sum(accs) / len(accs):.2f}%")
        text += "; probe then fine-tune " + ", ".join(tuned)
    if "retrieval_test" in result:
        r = result["retrieval_test"]["all"]
        text += f"; test digit@1 img->aud {100 * r['digit@1_img2aud']:.2f}%, aud->img {100 * r['digit@1_aud2img']:.2f}%"
    return text


if __name__ == "__main__":
    run_main(main)

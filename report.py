"""Collect the metrics.json of finished runs into the study's results table.

Reads every metrics.json below RUNS_DIR (at any depth), groups runs that
differ only in their seed, and prints one row per group: mean and sample
standard deviation (ddof=1) over the seeds, with n, the number of seeds.

Runs are never averaged across data: each table holds one dataset (name,
fingerprint and --limit all equal), and within it a row also holds one
configuration (the flags in config.json beside metrics.json that change the
model or its training: lr, batch size, epochs, patience, validation share,
fusion widths, heads, whether featurizers were initialised from a
checkpoint, the share of labelled pairs). Image / audio / multimodal runs
with a labelled test split fill the results table; classifier rows trained at
several --label-fraction values also get a label-efficiency table (scratch vs
featurizers from a contrastive checkpoint) and figure. Contrastive
pre-training runs get their own table, one row per run: class-level and
instance-level retrieval and linear-probe accuracy, with a figure of each
against the temperature. Other runs are counted and skipped.

Runs that have a robustness.json (written by evaluate.py) also feed a
robustness section: the area under each accuracy-vs-noise curve and its
difference from late fusion, the fresh-draw accuracy, the accuracy at each
noise level, and the missing-view table; plus one figure per sweep
(accuracy vs noise, mean ± std over seeds, one line per model), written
to the (last) RUNS_DIR unless --figures says otherwise. Rows that differ from
the exam's setup (a --label-fraction, --init-from, --modality-dropout or
--audio-frontend mel) sit beside the exam's rows; the paired comparisons are
made against the concat and late rows trained as the exam did.

Examples:
  python report.py runs/study
  python report.py results/study results/beyond --figures results/beyond
  python report.py runs/study --out runs/study/results.md
  python report.py runs/study --format csv --out results.csv
"""
import argparse
import csv
import io
import json
import math
import os
import re
import statistics
import sys

from common.contrastive_report import (contrastive_row, format_setting, label_efficiency_figure,
                                       label_efficiency_markdown, label_efficiency_sets, probe_figure, probe_groups,
                                       probe_markdown, retrieval_markdown, sweep_figure, sweep_markdown)
from common.data import REGIMES
from common.io import output_file_problem, save_figure, save_text
from common.multimodal import FUSION_CHOICES, MEL_CHANNELS
from common.robustness import AUDIO_SNR_LEVELS, IMAGE_P_LEVELS, area_under
from common.training import saved_precision

MODELS = ("image", "audio", "multimodal")
# config.json args that change what a run trains; runs differing in any of them never share a row.
CONFIG_KEYS = ("lr", "batch_size", "max_epochs", "patience", "val_fraction",
               "image_dim", "audio_dim", "fused_dim", "hidden_dim", "heads", "init_from", "precision",
               "label_fraction", "epoch_pairs", "modality_dropout", "modality_dropout_fill", "audio_frontend",
               "mel_channels")
# what runs from before a flag existed did
KEY_DEFAULTS = {"label_fraction": 1.0, "epoch_pairs": 0, "modality_dropout": 0.0, "modality_dropout_fill": "zeros",
                "audio_frontend": "raw", "mel_channels": list(MEL_CHANNELS)}
# the exam's own training and network: the rows that get the exam's numbers beside them and serve as
# the baselines of the paired comparisons (the beyond-the-exam variants differ in one of these)
EXAM_SETTINGS = {"label_fraction": 1.0, "epoch_pairs": 0, "init_from": None, "modality_dropout": 0.0,
                 "audio_frontend": "raw"}
EXAM_DEFAULT_ARGS = {"lr": 0.001, "batch_size": 64, "max_epochs": 100, "patience": 5, "val_fraction": 0.2,
                     "image_dim": 128, "audio_dim": 128, "fused_dim": 128, "hidden_dim": 256, "heads": 4}
STAT_FIELDS = ("test_loss", "test_acc", "params", "seconds_per_epoch", "best_epoch", "epochs_run")


# The exam's single-run test numbers (its Table 1 and Problems 1a/1b), on its own data: (loss, accuracy %).
EXAM = {("image", None): (0.437, 88.2), ("audio", None): (0.923, 71.5),
        ("multimodal", "concat"): (0.278, 94.5), ("multimodal", "add"): (0.276, 94.9),
        ("multimodal", "mul"): (0.464, 88.9), ("multimodal", "max"): (0.312, 92.7),
        ("multimodal", "attention"): (0.210, 94.0), ("multimodal", "gated"): (0.237, 94.0),
        ("multimodal", "bilinear"): (0.449, 86.0), ("multimodal", "factorized"): (0.213, 94.0)}
ALPHA = 0.05
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


class ReportError(Exception):
    """A problem that ends the report with exit code 2."""


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- reading

def find_metrics(runs_dir):
    found = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs.sort()
        if "metrics.json" in files:
            found.append(os.path.join(folder, "metrics.json"))
    return found


def find_probes(runs_dir):
    """Every probes.json below runs_dir (evaluate_contrastive.py's: a contrastive run's or a floor's)."""
    found = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs.sort()
        if "probes.json" in files:
            found.append(os.path.join(folder, "probes.json"))
    return found


def read_probes(runs_dirs):
    """[(dataset key, [(source name, probes.json), ...]), ...]: one few-label table per dataset."""
    by_key, seen = {}, set()
    for runs_dir in runs_dirs:
        for path in find_probes(runs_dir):
            if os.path.realpath(path) in seen:
                continue
            seen.add(os.path.realpath(path))
            try:
                probes = load_json(path)
                if not isinstance(probes, dict) or not isinstance(probes.get("probes"), list):
                    raise ValueError("not a probes.json of evaluate_contrastive.py")
            except (OSError, ValueError) as e:
                warn(f"skipping corrupt {path}: {type(e).__name__}: {e}")
                continue
            key = (probes.get("dataset"), bool(probes.get("synthetic")), probes.get("fingerprint"), probes.get("limit"))
            by_key.setdefault(key, []).append((os.path.basename(os.path.dirname(path)), probes))
    return sorted(by_key.items(), key=lambda kv: (kv[0][1], str(kv[0][0]), kv[0][3] is not None, str(kv[0][2])))


def load_json(path):
    with open(path) as f:
        return json.load(f)


def load_config_args(run_dir):
    """The args saved in config.json beside metrics.json ({} when absent or unreadable)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return {}
    try:
        config = load_json(path)
        args = config.get("args", {})
        if not isinstance(args, dict):
            return {}
        # the precision used (config.json's top level), not the flag: --precision auto resolves per machine
        used = saved_precision(config)
        args = {**args, "precision": used} if used else dict(args)
        if isinstance(config.get("device"), str):  # where it trained (cpu, cuda:0, ...), not the --device flag
            args["device_used"] = config["device"].split(":")[0]
        return args
    except (OSError, ValueError, AttributeError) as e:
        warn(f"ignoring unreadable {path}: {type(e).__name__}: {e}")
        return {}


def init_source(paths):
    """Which runs pre-loaded the featurizers, seeds dropped: runs/X-s3/checkpoints/best.pt -> "X".

    Runs initialised from different pre-training (say NT-Xent vs NT-Log) stay in
    different rows, while the seeds of one pre-training aggregate.
    """
    if not paths:
        return None
    if isinstance(paths, str):
        paths = [paths]
    names = []
    for p in paths:
        folder = os.path.dirname(os.path.dirname(os.path.normpath(p))) or p
        names.append(re.sub(r"-s\d+$", "", os.path.basename(folder)))
    return "+".join(sorted(names))


def config_key(args):
    """The training configuration as a hashable tuple of (name, value) pairs."""
    key = []
    for name in CONFIG_KEYS:
        value = args.get(name, KEY_DEFAULTS.get(name))
        if name == "init_from":
            value = init_source(value)
        elif isinstance(value, list):
            value = tuple(value)
        key.append((name, value))
    return tuple(key)


def read_runs(runs_dir):
    """Usable classifier runs as flat dicts, contrastive runs as rows of the sweep table, and
    {reason: count} of the runs skipped."""
    runs, contrastive, skipped = [], [], {}
    for path in find_metrics(runs_dir):
        try:
            m = load_json(path)
            if not isinstance(m, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            warn(f"skipping corrupt {path}: {type(e).__name__}: {e}")
            skipped["corrupt"] = skipped.get("corrupt", 0) + 1
            continue
        test = m.get("test") if isinstance(m.get("test"), dict) else {}
        if m.get("model") == "contrastive":
            row = contrastive_row(path, m, load_config_args(os.path.dirname(path)))
            if row is not None:
                contrastive.append(row)
                continue
            reason = "contrastive run without test retrieval metrics"
        elif m.get("model") not in MODELS:
            reason = f"model {m.get('model')!r} is not image/audio/multimodal"
        elif not test.get("labeled") or not _is_number(test.get("acc")) or not _is_number(test.get("loss")):
            reason = "no labelled test metrics"
        elif not m.get("dataset"):
            reason = "no dataset name"
        else:
            reason = None
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        args = load_config_args(os.path.dirname(path))
        regime_acc = test.get("per_regime_acc") or {}
        runs.append({
            "path": path,
            "model": m["model"], "fusion": m.get("fusion") if m["model"] == "multimodal" else None,
            "dataset": m["dataset"], "synthetic": bool(m.get("synthetic")),
            "fingerprint": m.get("fingerprint"), "limit": m.get("limit"),
            "seed": m.get("seed", args.get("seed")),
            "config": config_key(args),
            "test_loss": test["loss"], "test_acc": 100.0 * test["acc"],
            "params": m.get("params"), "seconds_per_epoch": m.get("seconds_per_epoch"),
            "device": args.get("device_used", "unknown"),
            "best_epoch": m.get("best_epoch"), "epochs_run": m.get("epochs_run"),
            "regime_acc": {r: 100.0 * regime_acc[r] if _is_number(regime_acc.get(r)) else None for r in REGIMES},
            "regime_n": test.get("per_regime_n") or {},
            "robustness": read_robustness(os.path.dirname(path)),
        })
    return runs, contrastive, skipped


def read_robustness(run_dir):
    """robustness.json beside metrics.json, or None when absent or unreadable."""
    path = os.path.join(run_dir, "robustness.json")
    if not os.path.exists(path):
        return None
    try:
        data = load_json(path)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as e:
        warn(f"ignoring unreadable {path}: {type(e).__name__}: {e}")
        return None


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------- statistics

def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value from the discordant counts: b pairs only the first model got
    right, c only the second. Under no difference each discordant pair goes either way with
    probability 1/2: p = 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    return min(1.0, 2 * mcnemar_one_sided(max(b, c), min(b, c)))


def mcnemar_one_sided(b, c):
    """Exact one-sided McNemar p-value that the first model is the better one: P(X <= c),
    X ~ Binomial(b + c, 1/2), the chance of c or fewer discordant pairs going the baseline's way."""
    n = b + c
    return sum(math.comb(n, k) for k in range(c + 1)) / 2 ** n if n else 1.0


def holm(pvalues):
    """Holm's step-down adjustment: adjusted p-values in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mean_ci(values):
    """(mean, half-width of the 95% t interval) of a few numbers; half-width None for fewer than two."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = T_975.get(len(values) - 1, 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def read_predictions(run_dir):
    """{test row id: correct?} from predictions_test.csv, or None when absent or unlabelled."""
    path = os.path.join(run_dir, "predictions_test.csv")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {int(r["id"]): int(r["digit"]) == int(r["label"]) for r in rows}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def paired_comparisons(groups, baseline):
    """Every model against `baseline` (a group), seed by seed on the same test pairs.

    For each other group with predictions for seeds the baseline also has: the accuracy
    difference per seed, its mean with a 95% t interval over seeds, and McNemar's exact test per
    seed. The seeds share their test pairs, so their tests are not independent and their counts
    are not pooled: a model differs from the baseline only if it does at every seed and in the same
    direction. That (intersection-union) test takes, for each direction, the largest per-seed
    one-sided p; p is twice the smaller of the two (capped at 1), and "direction" says which one
    it was (+1: this model better). When every seed points the same way this is the largest
    per-seed two-sided p. Holm's correction then runs over the models compared with this baseline.
    """
    base_preds = {}
    for seed, path in zip(baseline["seeds"], baseline["paths"]):
        base_preds.setdefault(seed, read_predictions(os.path.dirname(path)))  # a repeated seed: its first run
    rows = []
    for g in groups:
        if g is baseline:
            continue
        diffs, per_seed, better, worse, discordant, used = [], [], [], [], [], set()
        for seed, path in zip(g["seeds"], g["paths"]):
            mine, base = read_predictions(os.path.dirname(path)), base_preds.get(seed)
            if seed in used or not mine or not base or set(mine) != set(base):
                continue
            used.add(seed)
            b = sum(mine[i] and not base[i] for i in mine)
            c = sum(base[i] and not mine[i] for i in mine)
            diffs.append(100.0 * (b - c) / len(mine))
            per_seed.append(mcnemar_exact(b, c))
            better.append(mcnemar_one_sided(b, c))
            worse.append(mcnemar_one_sided(c, b))
            discordant.append(f"{b}/{c}")
        if diffs:
            p_better, p_worse = max(better), max(worse)
            rows.append({"group": g, "n": len(diffs), "diff": mean_ci(diffs), "p_seeds": per_seed,
                         "p": min(1.0, 2 * min(p_better, p_worse)), "direction": 1 if p_better < p_worse else -1,
                         "discordant": discordant})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
    return rows


def is_exam_setup(group):
    """True for a row trained as the exam did: the scripts' default training flags and widths (None: the
    flag does not apply to this model), all labels, no pre-training, no modality dropout, raw audio."""
    config = dict(group["config"])
    if any(config.get(k) not in (None, v) for k, v in EXAM_DEFAULT_ARGS.items()):
        return False
    return all(config.get(k, KEY_DEFAULTS.get(k)) == v for k, v in EXAM_SETTINGS.items())


def training_setup(group):
    """What a late-fusion row must share with a row to be its reference: every training flag but the
    fusion widths, which late fusion does not have."""
    return tuple((k, v) for k, v in group["config"] if k not in ("fused_dim", "hidden_dim", "heads", "image_dim",
                                                                   "audio_dim"))


def baselines(groups, label):
    """The groups a comparison is made against: the rows with that model label trained as the exam did."""
    return [g for g in groups if g["label"] == label and is_exam_setup(g)]


def comparisons_markdown(groups, dataset_name):
    lines = []
    for base_label in ("multimodal-concat", "multimodal-late"):
        for baseline in baselines(groups, base_label):
            rows = paired_comparisons(groups, baseline)
            if not rows:
                continue
            lines += ["", f"### Paired against {row_name(baseline)} ({dataset_name})", "",
                      "Seed by seed on the same test pairs. Δ acc: this model's accuracy minus "
                      f"{row_name(baseline)}'s, mean over the paired seeds with a 95% t interval. b/c per seed: "
                      "test pairs only this model got right / only the baseline got right. p: McNemar's exact "
                      "test, per seed in the last column; the seeds share their test pairs, so they are not "
                      "pooled: a difference must hold at every seed in the same direction, so p is twice "
                      "the largest per-seed one-sided p in the likelier direction (the largest per-seed p when "
                      "every seed agrees; about 1 when they disagree), then "
                      f"Holm-corrected over the models of this table. Significant: Holm-adjusted p < {ALPHA}.", "",
                      "| model | seeds | Δ acc (points) | b/c per seed | p | p (Holm) | significant | p per seed |",
                      "|---|---:|---:|---|---:|---:|---|---|"]
            for r in rows:
                mean, half = r["diff"]
                diff = f"{mean:+.2f}" + (f" ± {half:.2f}" if half is not None else " ± –")
                significant = "no" if r["p_holm"] >= ALPHA else "yes, better" if r["direction"] > 0 else "yes, worse"
                lines.append(f"| {row_name(r['group'])} | {r['n']} | {diff} | {', '.join(r['discordant'])} | "
                             f"{r['p']:.2g} | {r['p_holm']:.2g} | {significant} | "
                             f"{', '.join(f'{p:.2g}' for p in r['p_seeds'])} |")
    return lines


def accuracy_figure(groups, title):
    """Test accuracy per model: a bar at the mean with error bars (std over seeds) and a dot per run,
    since with three seeds a mean can hide a run that failed; one panel per noise regime."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [row_name(g) for g in groups]
    panels = [("all test pairs", "all", lambda g: g["test_acc"])] + \
        [(r, r, lambda g, r=r: g["regime_acc"][r]) for r in REGIMES]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.32 * len(groups) + 1.8), sharey=True)
    for ax, (name, key, stat) in zip(axes, panels):
        means = [stat(g)[0] if stat(g)[2] else float("nan") for g in groups]
        stds = [stat(g)[1] or 0.0 for g in groups]
        ax.barh(range(len(groups)), means, xerr=stds, color=["C1" if g["model"] != "multimodal" else "C0"
                                                             for g in groups], capsize=2)
        runs = [(row, acc) for row, g in enumerate(groups) for acc in g["run_acc"][key] if _is_number(acc)]
        if runs:
            ax.plot([acc for _, acc in runs], [row for row, _ in runs], "k.", markersize=4, zorder=3)
        shown = [m for m in means if m == m] + [acc for _, acc in runs]
        if shown:
            ax.set_xlim(max(0.0, min(shown) - 5), min(100.0, max(shown) + 2))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("test accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(groups)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title + " (bars: mean ± std over seeds; dots: each run)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- grouping

def mean_std(values):
    """(mean, sample std, count) of the numbers in values; std is None for fewer than two."""
    xs = [float(v) for v in values if _is_number(v)]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def dataset_key(run):
    return (run["dataset"], run["synthetic"], run["fingerprint"], run["limit"])


def model_order(model, fusion):
    if model == "image":
        return (0, 0, "")
    if model == "audio":
        return (1, 0, "")
    if fusion in FUSION_CHOICES:
        return (2, FUSION_CHOICES.index(fusion), "")
    return (2, len(FUSION_CHOICES), str(fusion))


def model_label(model, fusion):
    if model == "multimodal":
        return f"multimodal-{fusion}" if fusion else "multimodal"
    return f"{model}-only"


def group_runs(runs):
    """[(dataset_key, [group, ...]), ...] in report order; a group is a dict of stats over seeds."""
    by_key = {}
    for run in runs:
        key = (dataset_key(run), run["model"], run["fusion"], run["config"])
        by_key.setdefault(key, []).append(run)

    tables = {}
    for (dkey, model, fusion, config), members in by_key.items():
        members.sort(key=lambda r: (not isinstance(r["seed"], int), r["seed"] if isinstance(r["seed"], int) else 0,
                                    str(r["seed"]), r["path"]))
        seeds = [r["seed"] for r in members]
        repeated = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if repeated:
            warn(f"{model_label(model, fusion)} on {dkey[0]}: seed(s) {', '.join(repeated)} appear in more "
                 f"than one run with the same configuration; each run counts once in n")
        group = {"model": model, "fusion": fusion, "label": model_label(model, fusion), "config": config,
                 "dataset": dkey[0], "synthetic": dkey[1], "fingerprint": dkey[2], "limit": dkey[3],
                 "n": len(members), "seeds": seeds, "paths": [r["path"] for r in members]}
        for field in STAT_FIELDS:
            group[field] = mean_std(r[field] for r in members)
        group["devices"] = sorted({m["device"] for m in members})
        group["regime_acc"] = {r: mean_std(m["regime_acc"][r] for m in members) for r in REGIMES}
        group["run_acc"] = {"all": [m["test_acc"] for m in members],  # each run's, for the figure's dots
                            **{r: [m["regime_acc"][r] for m in members] for r in REGIMES}}
        ns = {json.dumps(m["regime_n"], sort_keys=True) for m in members}
        group["regime_n"] = members[0]["regime_n"] if len(ns) == 1 else {}
        group["robustness"] = [r["robustness"] for r in members if r["robustness"]]
        tables.setdefault(dkey, []).append(group)

    def table_order(dkey):
        name, synthetic, fingerprint, limit = dkey
        return (synthetic, name, limit is not None, -(limit or 0), str(fingerprint))

    out = []
    for dkey in sorted(tables, key=table_order):
        groups = tables[dkey]
        groups.sort(key=lambda g: (model_order(g["model"], g["fusion"]), repr(g["config"])))
        _disambiguate(groups)
        out.append((dkey, groups))
    return out


BEYOND_KEYS = ("label_fraction", "epoch_pairs", "init_from", "modality_dropout", "modality_dropout_fill",
               "audio_frontend", "mel_channels")


def _beyond_the_exam(config):
    """The settings of a row that depart from the exam's setup, always shown in its name."""
    shown = [k for k, v in EXAM_SETTINGS.items() if config.get(k, KEY_DEFAULTS.get(k)) != v]
    if "modality_dropout" in shown and config.get("modality_dropout_fill") != KEY_DEFAULTS["modality_dropout_fill"]:
        shown.append("modality_dropout_fill")
    if "audio_frontend" in shown and list(config.get("mel_channels") or ()) != KEY_DEFAULTS["mel_channels"]:
        shown.append("mel_channels")
    return shown


def _disambiguate(groups):
    """Name each row's departures from the exam's setup, and give rows that share a model label the
    settings that tell them apart."""
    by_label = {}
    for g in groups:
        by_label.setdefault(g["label"], []).append(g)
    for same in by_label.values():
        names = [name for name, _ in same[0]["config"]]
        differing = [name for i, name in enumerate(names) if len({repr(g["config"][i][1]) for g in same}) > 1]
        for g in same:
            config = dict(g["config"])
            beyond = _beyond_the_exam(config)
            # a beyond-the-exam setting shows where a row departs from the exam (the exam's value goes unsaid)
            shown = [k for k in differing if k not in BEYOND_KEYS or k in beyond]
            shown += [k for k in beyond if k not in shown]
            g["settings"] = ", ".join(f"{k}={format_setting(config[k])}" for k in shown)


# ---------------------------------------------------------------- formatting

def fmt_stat(stat, digits, with_std=True):
    mean, std, count = stat
    if count == 0:
        return "–"
    text = f"{mean:.{digits}f}"
    if with_std:
        text += f" ± {std:.{digits}f}" if std is not None else " ± –"
    return text


def fmt_params(stat):
    mean, std, count = stat
    if count == 0:
        return "–"
    text = f"{round(mean):,}"
    return text if not std else text + " (varies)"


def describe_dataset(dkey):
    name, synthetic, fingerprint, limit = dkey
    parts = [f"fingerprint `{fingerprint[:12]}`" if fingerprint else "no fingerprint",
             f"--limit {limit}: first {limit} pairs per split" if limit is not None else "full splits"]
    heading = f"Dataset: {name} ({', '.join(parts)})"
    if synthetic:
        heading = ("SYNTHETIC data (offline stand-in: these numbers say nothing about the real digits) — "
                   + heading)
    return heading


def best_labels(groups, field, digits, highest):
    """Indices of the rows whose mean, as shown, is the best of the table."""
    shown = [round(g[field][0], digits) if g[field][2] else None for g in groups]
    present = [v for v in shown if v is not None]
    if not present:
        return set()
    best = max(present) if highest else min(present)
    return {i for i, v in enumerate(shown) if v == best}


def contrastive_tables(contrastive):
    """[(dataset_key, [row, ...]), ...] of the contrastive runs, one table per dataset."""
    by_key = {}
    for row in contrastive:
        by_key.setdefault(dataset_key(row), []).append(row)
    return sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][3] is not None, str(kv[0][2])))


def markdown(tables, runs_dir, n_runs, skipped, sweeps=(), probes=()):
    lines = ["# Results", "",
             f"{n_runs} run(s) from `{runs_dir}`. Each row: mean ± sample std (ddof=1) over n seeds; "
             "± – when n = 1. Test accuracy and loss are on the test split, evaluated once with the best "
             "validation weights. Bold: best test accuracy (highest) and best test loss (lowest) in each table."]
    if skipped:
        lines += ["", f"Skipped {sum(skipped.values())} run(s): {describe_skipped(skipped)}."]
    for dkey, rows in sweeps:
        lines += sweep_markdown(rows, describe_dataset(dkey))
    for dkey, entries in probes:
        groups = probe_groups(entries)
        lines += probe_markdown(groups, describe_dataset(dkey)) + retrieval_markdown(groups, describe_dataset(dkey))
    for dkey, groups in tables:
        heading = describe_dataset(dkey)
        lines += ["", f"## {heading}", ""]
        lines.append("| model | dataset | n | test loss | test accuracy (%) | exam: loss / accuracy | parameters "
                     "| seconds / epoch | best epoch | epochs run |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        best_acc = best_labels(groups, "test_acc", 2, highest=True)
        best_loss = best_labels(groups, "test_loss", 4, highest=False)
        devices = sorted({d for g in groups for d in g["devices"]})
        for i, g in enumerate(groups):
            seconds = fmt_stat(g["seconds_per_epoch"], 1)
            if len(devices) > 1:  # seconds from different machines: say whose
                seconds += f" ({'+'.join(g['devices'])})"
            acc = fmt_stat(g["test_acc"], 2)
            loss = fmt_stat(g["test_loss"], 4)
            comparable = is_exam_setup(g) and not dkey[1] and dkey[3] is None  # the exam's setup, real data
            exam = EXAM.get((g["model"], g["fusion"])) if comparable else None
            cells = [row_name(g), g["dataset"], str(g["n"]),
                     f"**{loss}**" if i in best_loss else loss,
                     f"**{acc}**" if i in best_acc else acc,
                     f"{exam[0]:.3f} / {exam[1]:.1f}%" if exam else "–",
                     fmt_params(g["params"]), seconds,
                     fmt_stat(g["best_epoch"], 1), fmt_stat(g["epochs_run"], 1)]
            lines.append("| " + " | ".join(cells) + " |")
        if len(devices) > 1:
            lines += ["", f"These runs trained on {len(devices)} kinds of device ({', '.join(devices)}; config.json's "
                          "`device`): compare seconds per epoch only between rows of the same device."]
        with_regimes = [g for g in groups if any(g["regime_acc"][r][2] for r in REGIMES)]
        if with_regimes:
            lines += ["", f"Test accuracy (%) per noise regime ({dkey[0]}, same runs as above):", ""]
            header = []
            for r in REGIMES:
                ns = {g["regime_n"].get(r) for g in with_regimes}
                header.append(f"{r} (n={ns.pop()})" if len(ns) == 1 and None not in ns else r)
            lines.append("| model | n | " + " | ".join(header) + " |")
            lines.append("|---|---:|" + "---:|" * len(REGIMES))
            for g in with_regimes:
                lines.append(f"| {row_name(g)} | {g['n']} | "
                             + " | ".join(fmt_stat(g["regime_acc"][r], 2) for r in REGIMES) + " |")
        lines += label_efficiency_markdown(label_efficiency_sets(groups), describe_dataset(dkey))
        lines += comparisons_markdown(groups, dkey[0])
        lines += robustness_markdown(groups, dkey[0])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- robustness

SWEEP_AXES = {"image_sweep": ("p", IMAGE_P_LEVELS), "audio_sweep": ("snr_db", AUDIO_SNR_LEVELS)}
MISSING_COLUMNS = (("both_mild", "both mild"), ("image_zeros", "image zeros"),
                   ("image_train_mean", "image train mean"), ("image_surviving_head", "image gone: audio head"),
                   ("audio_zeros", "audio zeros"), ("audio_train_mean", "audio train mean"),
                   ("audio_surviving_head", "audio gone: image head"))


def sweep_curve(result, sweep):
    """{level: accuracy %} of one run's sweep, or None when the run lacks it or its levels differ."""
    level_key, levels = SWEEP_AXES[sweep]
    rows = result.get(sweep)
    if not isinstance(rows, list):
        return None
    curve = {row.get(level_key): 100.0 * row["acc"] for row in rows if _is_number(row.get("acc"))}
    return curve if sorted(curve) == sorted(levels) else None


def sweep_stats(group, sweep):
    """Per level (mean, std, n) of accuracy %, and the area under the curve (mean, std, n) over seeds."""
    curves = [c for c in (sweep_curve(r, sweep) for r in group["robustness"]) if c]
    if not curves:
        return None
    levels = SWEEP_AXES[sweep][1]
    per_level = {lv: mean_std(c[lv] for c in curves) for lv in levels}
    auc = mean_std(area_under(levels, [c[lv] for lv in levels]) for c in curves)
    return {"levels": per_level, "auc": auc}


def robustness_markdown(groups, dataset_name):
    """The robustness section of one table; empty when no run there has a robustness.json."""
    with_rob = [g for g in groups if g["robustness"]]
    if not with_rob:
        return []
    stats = {id(g): {s: sweep_stats(g, s) for s in SWEEP_AXES} for g in with_rob}
    lates = [g for g in with_rob if g["model"] == "multimodal" and g["fusion"] == "late"]

    def late_for(g):  # the only late-fusion row; else the one trained like g; else the exam-setup one
        if len(lates) == 1:
            return lates[0]
        mine = training_setup(g)
        same = [late for late in lates if training_setup(late) == mine]
        if len(same) == 1:
            return same[0]
        exam = [late for late in lates if is_exam_setup(late)
                and dict(late["config"]).get("precision") == dict(g["config"]).get("precision")]
        return exam[0] if len(exam) == 1 else None

    def delta(g, sweep):
        late = late_for(g)
        mine, base = stats[id(g)][sweep], late and stats[id(late)][sweep]
        if not mine or not base or g is late:
            return "–"
        return f"{mine['auc'][0] - base['auc'][0]:+.2f}"

    lines = ["", f"### Robustness ({dataset_name}, from robustness.json; evaluate.py)", "",
             "Area under the accuracy-vs-noise curve: the mean accuracy (%) over the sweep's range, by the "
             "trapezoid rule (image: p from 0 to 0.95, audio held at 20 dB; audio: SNR from +30 to -30 dB, "
             "image held at p = 0.1). Δ late: this model's mean area minus late fusion's (the late row trained "
             "the same way, else the one trained as the exam did). Fresh draw: the "
             "test split drawn again at another data seed; it should match the test accuracy within seed noise.",
             "",
             "| model | n | test accuracy (%) | fresh draw (%) | image-sweep area | Δ late | audio-sweep area "
             "| Δ late |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g in with_rob:
        fresh = mean_std(100.0 * r["fresh"]["acc"] for r in g["robustness"]
                         if isinstance(r.get("fresh"), dict) and _is_number(r["fresh"].get("acc")))
        st = stats[id(g)]
        cells = [row_name(g), str(len(g["robustness"])), fmt_stat(g["test_acc"], 2), fmt_stat(fresh, 2),
                 fmt_stat(st["image_sweep"]["auc"], 2) if st["image_sweep"] else "–", delta(g, "image_sweep"),
                 fmt_stat(st["audio_sweep"]["auc"], 2) if st["audio_sweep"] else "–", delta(g, "audio_sweep")]
        lines.append("| " + " | ".join(cells) + " |")
    for sweep, title in (("image_sweep", "Test accuracy (%) vs pixel replacement p, audio at 20 dB"),
                         ("audio_sweep", "Test accuracy (%) vs audio SNR (dB), image at p = 0.1")):
        rows = [g for g in with_rob if stats[id(g)][sweep]]
        if not rows:
            continue
        levels = SWEEP_AXES[sweep][1]
        lines += ["", f"{title}; mean over the n seeds:", "",
                  "| model | n | " + " | ".join(f"{lv:g}" for lv in levels) + " |",
                  "|---|---:|" + "---:|" * len(levels)]
        for g in rows:
            st = stats[id(g)][sweep]
            lines.append(f"| {row_name(g)} | {st['auc'][2]} | "
                         + " | ".join(fmt_stat(st["levels"][lv], 1, with_std=False) for lv in levels) + " |")
    missing_rows = [g for g in with_rob if any(isinstance(r.get("missing"), dict) for r in g["robustness"])]
    if missing_rows:
        lines += ["", "A missing view (%): the view replaced by zeros or by the training mean, the other view "
                  "mild (image p = 0.1, audio 20 dB); for late fusion also the surviving head alone. "
                  "Mean ± std over the n seeds:", "",
                  "| model | n | " + " | ".join(label for _, label in MISSING_COLUMNS) + " |",
                  "|---|---:|" + "---:|" * len(MISSING_COLUMNS)]
        for g in missing_rows:
            results = [r["missing"] for r in g["robustness"] if isinstance(r.get("missing"), dict)]
            cells = []
            for key, _ in MISSING_COLUMNS:
                stat = mean_std(100.0 * m[key]["acc"] for m in results if isinstance(m.get(key), dict))
                cells.append(fmt_stat(stat, 1))
            lines.append(f"| {row_name(g)} | {len(results)} | " + " | ".join(cells) + " |")
    return lines


def robustness_figures(groups, title):
    """{sweep: Figure}: accuracy vs noise level, mean ± std over seeds, one line per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = {}
    for sweep, xlabel in (("image_sweep", "pixel replacement probability p (audio at 20 dB)"),
                          ("audio_sweep", "audio SNR, dB (image at p = 0.1)")):
        rows = [(g, sweep_stats(g, sweep)) for g in groups if g["robustness"]]
        rows = [(g, st) for g, st in rows if st]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        levels = SWEEP_AXES[sweep][1]
        for g, st in rows:
            means = [st["levels"][lv][0] for lv in levels]
            stds = [st["levels"][lv][1] or 0.0 for lv in levels]
            reference = g["model"] != "multimodal" or g["fusion"] == "late"
            line, = ax.plot(levels, means, marker="o", ms=3, lw=2.2 if reference else 1.2,
                            ls="--" if reference else "-", label=f"{row_name(g)} (n={st['auc'][2]})")
            ax.fill_between(levels, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.12)
        if sweep == "audio_sweep":
            ax.invert_xaxis()  # worse to the right, as for p
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"{title}: {'image' if sweep == 'image_sweep' else 'audio'} sweep", fontsize=10)
        fig.tight_layout()
        figures[sweep] = fig
    return figures


def figure_suffix(dkey, n_tables):
    """'' for a lone table, else what tells its dataset apart in a file name."""
    if n_tables == 1:
        return ""
    return f"-{dkey[0]}-{(dkey[2] or 'none')[:8]}" + ("" if dkey[3] is None else f"-limit{dkey[3]}")


def write_figures(tables, sweeps, folder, probes=()):
    """The accuracy figure, one robustness figure per sweep and the label-efficiency figure of each
    classifier table, and the temperature-sweep figure of each contrastive table; returns the paths."""
    written = []
    for dkey, rows in sweeps:
        path = os.path.join(folder, f"contrastive_sweep{figure_suffix(dkey, len(sweeps))}.png")
        save_figure(sweep_figure(rows, "contrastive pre-training vs τ: " + describe_dataset(dkey)), path)
        written.append(path)
    for dkey, entries in probes:
        path = os.path.join(folder, f"few_labels{figure_suffix(dkey, len(probes))}.png")
        save_figure(probe_figure(probe_groups(entries), "frozen features at few labels: " + describe_dataset(dkey)),
                    path)
        written.append(path)
    for dkey, groups in tables:
        suffix = figure_suffix(dkey, len(tables))
        path = os.path.join(folder, f"fusion_accuracy{suffix}.png")
        save_figure(accuracy_figure(groups, describe_dataset(dkey)), path)
        written.append(path)
        sets = label_efficiency_sets(groups)
        if sets:
            path = os.path.join(folder, f"label_efficiency{suffix}.png")
            save_figure(label_efficiency_figure(sets, "label efficiency: " + describe_dataset(dkey)), path)
            written.append(path)
        for sweep, fig in robustness_figures(groups, describe_dataset(dkey)).items():
            path = os.path.join(folder, f"robustness-{sweep.split('_')[0]}{suffix}.png")
            save_figure(fig, path)
            written.append(path)
    return written


def row_name(g):
    return f"{g['label']} ({g['settings']})" if g["settings"] else g["label"]


CSV_COLUMNS = (["dataset", "synthetic", "fingerprint", "limit", "model", "fusion", "label", "settings", "n",
                "seeds"]
               + [f"{f}_{s}" for f in ("test_loss", "test_acc_pct") for s in ("mean", "std")]
               + ["params"]
               + [f"{f}_{s}" for f in ("seconds_per_epoch", "best_epoch", "epochs_run") for s in ("mean", "std")]
               + [f"acc_{r}_pct_{s}" for r in REGIMES for s in ("mean", "std")]
               + list(CONFIG_KEYS))


def csv_text(tables):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for dkey, groups in tables:
        for g in groups:
            def pair(stat):
                mean, std, _ = stat
                return [_num(mean), _num(std)]
            row = [g["dataset"], g["synthetic"], g["fingerprint"] or "", "" if g["limit"] is None else g["limit"],
                   g["model"], g["fusion"] or "", g["label"], g["settings"], g["n"],
                   " ".join(str(s) for s in g["seeds"])]
            row += pair(g["test_loss"]) + pair(g["test_acc"])
            row.append("" if g["params"][0] is None else round(g["params"][0]))
            for f in ("seconds_per_epoch", "best_epoch", "epochs_run"):
                row += pair(g[f])
            for r in REGIMES:
                row += pair(g["regime_acc"][r])
            row += ["" if v is None else v for _, v in g["config"]]
            w.writerow(row)
    return buf.getvalue()


def _num(x):
    return "" if x is None else round(x, 6)


def describe_skipped(skipped):
    return "; ".join(f"{count} × {reason}" for reason, count in sorted(skipped.items()))


# ---------------------------------------------------------------- main

def read_all(runs_dirs):
    """read_runs over several folders; a metrics.json reached from two of them counts once."""
    runs, contrastive, skipped, seen = [], [], {}, set()
    for runs_dir in runs_dirs:
        if not os.path.isdir(runs_dir):
            raise ReportError(f"runs directory {runs_dir} does not exist")
        found, found_contrastive, found_skipped = read_runs(runs_dir)
        for kept, new in ((runs, found), (contrastive, found_contrastive)):
            for run in new:
                real = os.path.realpath(run["path"])
                if real not in seen:
                    seen.add(real)
                    kept.append(run)
        for reason, count in found_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    return runs, contrastive, skipped


def build_report(runs_dirs, fmt, figures_dir=None):
    runs_dirs = [runs_dirs] if isinstance(runs_dirs, str) else list(runs_dirs)
    where = ", ".join(runs_dirs)
    runs, contrastive, skipped = read_all(runs_dirs)
    if skipped:
        print(f"note: skipped {sum(skipped.values())} run(s): {describe_skipped(skipped)}", file=sys.stderr)
    probes = read_probes(runs_dirs)
    if not runs and not contrastive and not probes:
        found = sum(skipped.values())
        raise ReportError(f"no usable metrics.json under {where}"
                          + (f" ({found} found, all skipped)" if found else " (none found)"))
    tables, sweeps = group_runs(runs), contrastive_tables(contrastive)
    if fmt == "csv" and contrastive:
        print(f"note: the CSV holds the classifier runs only; {len(contrastive)} contrastive run(s) are in the "
              "Markdown report", file=sys.stderr)
    if figures_dir is not None:
        try:
            for path in write_figures(tables, sweeps, figures_dir, probes):
                print(f"wrote {path}", file=sys.stderr)
        except OSError as e:
            raise ReportError(f"cannot write figures to {figures_dir}: {e.strerror or e}") from None
    if fmt == "md":
        return markdown(tables, "`, `".join(runs_dirs), len(runs) + len(contrastive), skipped, sweeps, probes)
    return csv_text(tables)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dirs", nargs="+", metavar="RUNS_DIR",
                        help="folder(s) searched recursively for metrics.json; runs of several folders share "
                             "the tables (e.g. results/study results/beyond)")
    parser.add_argument("--format", choices=("md", "csv"), default="md",
                        help="md: Markdown tables with mean ± std (default); csv: one row per group, plain numbers")
    parser.add_argument("--out", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    parser.add_argument("--figures", metavar="DIR", default=None,
                        help="folder for the figures (default: the last RUNS_DIR)")
    parser.add_argument("--no-figures", action="store_true", help="write no figures")
    args = parser.parse_args(argv)
    if args.out:
        problem = output_file_problem(args.out)
        if problem:
            print(f"error: --out {args.out}: {problem}", file=sys.stderr)
            return 2
    try:
        text = build_report(args.runs_dirs, args.format,
                            None if args.no_figures else (args.figures or args.runs_dirs[-1]))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        save_text(text, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

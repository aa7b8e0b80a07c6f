"""report.py's Problem 2 sections: the temperature sweep of contrastive runs, and label efficiency.

The sweep table has one row per contrastive run (train_contrastive.py): what it learned, measured on
the test split once its best weights were back: class-level retrieval (the query's digit at the
top-1 / in the top 5 of the other view), instance-level recall@1 beside its digit-only ceiling, and
the accuracy of a linear probe on each frozen featurizer. The label-efficiency table sets classifier
runs trained on a share F of the labelled pairs (--label-fraction) from scratch beside the same runs
whose featurizers came from a contrastive checkpoint (--init-from).
"""
import math
import os
import statistics
from dataclasses import dataclass

from ..facts import REGIMES
from ..flags import flag
from .format import fmt_stat
from .settings import held_out_name
from .stats import mean_std

DIRECTIONS = (("img2aud", "image → audio"), ("aud2img", "audio → image"))
# the training set-up of a contrastive run besides its loss and temperature (default: before the flag existed)
SETUP_KEYS = {"batch_size": None, "max_epochs": None, "patience": None, "lr": None, "similarity": "cosine",
              "proj_dim": 64, "precision": None, "audio_frontend": "raw", "mel_channels": None}
# the second recipe's flags, named in a table only where some run left their first-recipe default
RECIPE_KEYS = {key: flag(key, "contrastive").default_for("contrastive")
               for key in ("head", "feat_dropout", "optimizer", "weight_decay", "warmup_epochs", "schedule", "own_lr",
                           "augment", "select", "bias_init", "clip_grad")}


# ---------------------------------------------------------------- the temperature sweep

@dataclass
class ContrastiveRun:
    """One contrastive run (train_contrastive.py) as the sweep table and figure read it."""
    path: str
    name: str
    dataset: str
    synthetic: bool
    fingerprint: str
    limit: int
    seed: object
    loss: str
    tau_init: float  # --tau, where the temperature started
    tau: float       # the temperature at the best epoch (learned or fixed)
    learn_tau: bool
    bias: float      # NT-Log's bias (None: NT-Xent)
    learn_bias: bool
    setup: dict      # SETUP_KEYS: the training set-up besides the loss and temperature
    recipe: dict     # RECIPE_KEYS: the second recipe's flags
    best_epoch: int
    epochs_run: int
    seconds_per_epoch: float
    val_loss: float
    retrieval: dict  # metrics.json's test retrieval
    probe: dict      # ... and its linear probes (image, audio, both)

    def dataset_key(self):
        return (self.dataset, self.synthetic, self.fingerprint, self.limit)


def contrastive_row(path, metrics, args):
    """One contrastive run as a ContrastiveRun, or None when its metrics lack the test measurements."""
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    retrieval, probe = test.get("retrieval"), test.get("probe")
    if not isinstance(retrieval, dict) or "recall@1_img2aud" not in retrieval:
        return None
    return ContrastiveRun(
        path=path, name=os.path.basename(os.path.dirname(path)),
        dataset=held_out_name(metrics.get("dataset"), args.get("holdout_speaker")),
        synthetic=bool(metrics.get("synthetic")),
        fingerprint=metrics.get("fingerprint"), limit=metrics.get("limit"),
        seed=metrics.get("seed", args.get("seed")), loss=metrics.get("loss"),
        tau_init=args.get("tau"), tau=metrics.get("tau"), learn_tau=bool(metrics.get("learn_tau")),
        bias=metrics.get("bias"), learn_bias=bool(metrics.get("learn_bias")),
        setup={key: args.get(key, default) for key, default in SETUP_KEYS.items()},
        recipe={key: args.get(key, default) for key, default in RECIPE_KEYS.items()},
        best_epoch=metrics.get("best_epoch"), epochs_run=metrics.get("epochs_run"),
        seconds_per_epoch=metrics.get("seconds_per_epoch"), val_loss=(metrics.get("val") or {}).get("loss"),
        retrieval=retrieval, probe=probe if isinstance(probe, dict) else {})


def format_setting(value):
    """A flag's value as a row label shows it: lists as space-separated items (mel_channels=32 64)."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _sweep_order(row):
    return (str(row.loss), row.learn_tau, row.learn_bias, row.tau_init or 0.0, str(row.seed), row.name)


def _pct(x, digits=1):
    return f"{100 * x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _tau(row):
    start = f"{row.tau_init:g}" if isinstance(row.tau_init, (int, float)) else "?"
    if row.learn_tau:
        return f"learned: {start} → {row.tau:.3g}"
    return start


def sweep_markdown(rows, dataset_heading):
    """The sweep table: one row per contrastive run, sorted by loss, then by temperature."""
    rows = sorted(rows, key=_sweep_order)
    shared = {k: rows[0].setup[k] for k in SETUP_KEYS if len({repr(r.setup[k]) for r in rows}) == 1}
    differing = [k for k in SETUP_KEYS if k not in shared]
    recipe = [k for k in RECIPE_KEYS if any(r.recipe[k] != RECIPE_KEYS[k] for r in rows)]
    shared.update({k: rows[0].recipe[k] for k in recipe if len({repr(r.recipe[k]) for r in rows}) == 1})
    differing += [k for k in recipe if k not in shared]
    budget = ", ".join(f"{k}={format_setting(v)}" for k, v in shared.items() if v is not None)
    selections = {r.recipe["select"] for r in rows}
    chosen = "the weights of the lowest validation contrastive loss" if selections == {"val_loss"} else \
        "the weights of the highest validation digit@1" if selections == {"val_digit1"} else \
        "the weights each run's --select chose"
    lines = ["", f"## Contrastive pre-training: the temperature sweep ({dataset_heading})", "",
             f"{len(rows)} run(s), all with {budget or 'their own settings'}"
             + (f" (each run's {', '.join(differing)} beside its name)" if differing else "")
             + f"; measured on the test split with {chosen}. Digit@k: share of queries with an item of their own digit among the k most "
             "similar items of the other view (image → audio / audio → image). R@1: the exact partner first; "
             "its digit-only ceiling is (digits present) / (test pairs), what a ranking that knows only the "
             "digit gets by chance. Probe: a linear classifier on each frozen featurizer (and on both), fitted "
             "on the training pairs.", "",
             "| run | loss | τ | bias | epochs (best) | digit@1 (%) | digit@5 (%) | R@1 (%) | R@1 ceiling (%) "
             "| probe image (%) | probe audio (%) | probe both (%) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ret, probe, settings = r.retrieval, r.probe, {**r.setup, **{k: r.recipe[k] for k in recipe}}
        bias = f"{r.bias:.2f}" + (" (learned)" if r.learn_bias else "") if isinstance(r.bias, (int, float)) else "–"
        name = r.name + (" (" + ", ".join(f"{k}={format_setting(settings[k])}" for k in differing) + ")"
                         if differing else "")
        cells = [name, str(r.loss), _tau(r), bias, f"{r.epochs_run} ({r.best_epoch})"]
        for key in ("digit@1", "digit@5", "recall@1"):
            cells.append(" / ".join(_pct(ret.get(f"{key}_{d}"), 1 if key != "recall@1" else 2) for d, _ in DIRECTIONS))
        cells.append(_pct(ret.get("recall@1_ceiling"), 2))
        cells += [_pct(probe.get(k), 1) for k in ("image", "audio", "both")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mean_directions(ret, key):
    values = [ret.get(f"{key}_{d}") for d, _ in DIRECTIONS]
    values = [v for v in values if isinstance(v, (int, float))]
    return 100 * statistics.fmean(values) if values else float("nan")


SWEEP_PANELS = (("class-level retrieval: digit@1 (%)", lambda r: _mean_directions(r.retrieval, "digit@1")),
                ("class-level retrieval: digit@5 (%)", lambda r: _mean_directions(r.retrieval, "digit@5")),
                ("linear probe, image featurizer (%)", lambda r: 100 * r.probe.get("image", float("nan"))),
                ("linear probe, audio featurizer (%)", lambda r: 100 * r.probe.get("audio", float("nan"))))


def sweep_figure(rows, title):
    """Metrics vs τ: one line per loss over the fixed-τ runs, a star per learned-τ run at its final τ."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(SWEEP_PANELS), figsize=(4.2 * len(SWEEP_PANELS), 3.6))
    losses = sorted({str(r.loss) for r in rows})
    for ax, (name, value) in zip(axes, SWEEP_PANELS):
        for k, loss in enumerate(losses):
            fixed = sorted((r for r in rows if str(r.loss) == loss and not r.learn_tau and not r.learn_bias),
                           key=lambda r: r.tau)
            if fixed:
                ax.plot([r.tau for r in fixed], [value(r) for r in fixed], "o-", color=f"C{k}", label=loss)
            for r in rows:
                if str(r.loss) == loss and (r.learn_tau or r.learn_bias):
                    what = "learned τ" if r.learn_tau else "learned bias"
                    ax.plot([r.tau], [value(r)], "*" if r.learn_tau else "s", color=f"C{k}", markersize=11,
                            label=f"{loss}, {what}" + (" and bias" if r.learn_tau and r.learn_bias else ""))
        if name.startswith("class") and "digit@1" in name:
            ax.axhline(10.0, color="grey", ls=":", lw=1, label="chance (10 digits)")
        ax.set_xscale("log")
        ax.set_xlabel("τ (final τ for learned runs)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- label efficiency

def label_efficiency_sets(groups):
    """{(label, other settings): {F: {init source or None: group}}} for the model rows of one table that
    were trained at more than one --label-fraction; {} when there are none."""
    sets = {}
    for g in groups:
        config = dict(g["config"])
        rest = tuple((k, v) for k, v in g["config"] if k not in ("label_fraction", "init_from"))
        sets.setdefault((g["label"], rest), {}).setdefault(config.get("label_fraction", 1.0), {})[
            config.get("init_from")] = g
    return {key: by_f for key, by_f in sets.items() if len(by_f) > 1}


def _cell(stat, n):
    mean, std, count = stat
    if not count:
        return "–"
    return f"{mean:.2f} ± {std:.2f} (n={n})" if std is not None else f"{mean:.2f} ± – (n={n})"


def label_efficiency_markdown(sets, dataset_heading):
    lines = []
    for (label, _), by_f in sets.items():
        sources = sorted({s for cells in by_f.values() for s in cells if s is not None})
        header = ["F (share of labelled training pairs)", "from scratch"] + [f"from {s}" for s in sources]
        header += [f"{s} − scratch (points)" for s in sources]
        lines += ["", f"## Label efficiency: {label} ({dataset_heading})", "",
                  "Test accuracy (%), mean ± sample std over seeds (n), trained on a class-balanced share F of the "
                  "labelled training pairs (--label-fraction; validation and test unchanged), with featurizers "
                  "from scratch or initialised from a contrastive checkpoint (--init-from).", "",
                  "| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
        for f in sorted(by_f):
            cells = by_f[f]
            row = [f"{f:g}"] + [_cell(cells[s]["test_acc"], cells[s]["n"]) if s in cells else "–"
                                for s in [None] + sources]
            for s in sources:
                if None in cells and s in cells and cells[None]["test_acc"][2] and cells[s]["test_acc"][2]:
                    row.append(f"{cells[s]['test_acc'][0] - cells[None]['test_acc'][0]:+.2f}")
                else:
                    row.append("–")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def label_efficiency_figure(sets, title):
    """Test accuracy vs F (log axis), one line per initialisation, error bars: std over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 3.8), squeeze=False)
    for ax, ((label, _), by_f) in zip(axes[0], sets.items()):
        sources = [None] + sorted({s for cells in by_f.values() for s in cells if s is not None})
        for k, source in enumerate(sources):
            fs = [f for f in sorted(by_f) if source in by_f[f] and by_f[f][source]["test_acc"][2]]
            means = [by_f[f][source]["test_acc"][0] for f in fs]
            stds = [by_f[f][source]["test_acc"][1] or 0.0 for f in fs]
            ax.errorbar(fs, means, yerr=stds, fmt="o-", capsize=3, color=f"C{k}",
                        label="from scratch" if source is None else f"from {source}")
        ax.set_xscale("log")
        ax.set_xlabel("F: share of labelled training pairs")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title + " (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- frozen features at few labels (probes.json)

FLOOR_LABELS = {"raw": "floor: logistic regression on the raw inputs", "random": "floor: random-init featurizers"}
FEATURE_LABELS = {"raw": {"image": "noisy pixels (784)", "audio": "log-mel mean + std over time (128)",
                          "both": "pixels + log-mel"},
                  "other": {"image": "image featurizer", "audio": "audio featurizer", "both": "both featurizers"}}


def probe_source_key(probes, name):
    """The row a probes.json belongs to: the floor's kind, or the run's name without its seed."""
    if probes.get("kind") in FLOOR_LABELS:
        return probes["kind"]
    return name[:name.rindex("-s")] if "-s" in name else name


def probe_groups(entries):
    """{source key: [probes.json, ...]} in a stable order: the floors first, then the runs by name."""
    groups = {}
    for name, probes in sorted(entries, key=lambda e: e[0]):
        groups.setdefault(probe_source_key(probes, name), []).append(probes)
    floors = [k for k in FLOOR_LABELS if k in groups]
    return {k: groups[k] for k in floors + sorted(k for k in groups if k not in FLOOR_LABELS)}


def _percent_cell(stat):
    """A (mean, std, n) of shares as a cell in percent with one decimal."""
    mean, std, n = stat
    return fmt_stat((100 * mean, None if std is None else 100 * std, n), 1) if n else "–"


def probe_stats(group, fraction, features, field="test_acc", method="probes"):
    """Mean ± std over every (run seed, label seed) row of a group at one share and feature set;
    method "probes" (frozen) or "finetune" (linear probe, then fine-tuning)."""
    return mean_std([row[field] for probes in group for row in probes.get(method) or []
                      if row.get("fraction") == fraction and row.get("features") == features])


def probe_markdown(groups, dataset_heading):
    """The few-label table: one row per source and feature set, one column per label share F."""
    fractions = sorted({row["fraction"] for g in groups.values() for p in g for row in p.get("probes", [])})
    if not fractions:
        return []
    budget = {f: mean_std([row["n_train"] for g in groups.values() for p in g for row in p.get("probes", [])
                            if row["fraction"] == f]) for f in fractions}
    header = ["source", "features", "runs × label seeds"] + \
        [f"F = {f:g} ({budget[f][0]:.0f} labels)" if budget[f][2] else f"F = {f:g}" for f in fractions]
    lines = ["", f"## Problem 2: frozen features at few labels ({dataset_heading})", "",
             "Test accuracy (%) of a linear probe on frozen features, mean ± sample std over every run seed and "
             "label seed (the count beside each source). The labelled pairs: a class-balanced share F of the "
             "training pairs; the probe's L2 penalty is chosen on a class-balanced validation subset no larger "
             "than that budget (evaluate_contrastive.py). The floors come first: every pre-trained row is read "
             "against them.", "",
             "| " + " | ".join(header) + " |", "|---|---|---:" + "|---:" * len(fractions) + "|"]
    for key, group in groups.items():
        label = FLOOR_LABELS.get(key, key)
        names = FEATURE_LABELS["raw" if key == "raw" else "other"]
        count = len({row.get("label_seed") for p in group for row in p.get("probes", [])})
        for features in ("image", "audio", "both"):
            cells = [_percent_cell(probe_stats(group, f, features)) for f in fractions]
            lines.append(f"| {label} | {names[features]} | {len(group)} × {count} | " + " | ".join(cells) + " |")
        if any(p.get("finetune") for p in group):
            tuned = len({row.get("label_seed") for p in group for row in p.get("finetune") or []})
            runs = sum(1 for p in group if p.get("finetune"))
            cells = [_percent_cell(probe_stats(group, f, "both", method="finetune")) for f in fractions]
            lines.append(f"| {label} | {names['both']}: probe, then fine-tuned | {runs} × {tuned} | "
                         + " | ".join(cells) + " |")
    if any(p.get("finetune") for g in groups.values() for p in g):
        lines += ["", "Probe, then fine-tuned: the probe on both frozen featurizers starts "
                  "a short fine-tuning of the whole classifier (evaluate_contrastive.py --finetune: AdamW, head lr "
                  "1e-3, featurizer lr and step chosen on the same budget validation subset); on the random-init "
                  "featurizers this is the from-scratch baseline with the same budget."]
    return lines


def retrieval_markdown(groups, dataset_heading):
    """Test retrieval of each pre-trained source by noise regime: digit@1 both ways, digit@5 overall."""
    runs = {k: g for k, g in groups.items() if k not in FLOOR_LABELS and all("retrieval_test" in p for p in g)}
    if not runs:
        return []
    columns = [("all", "digit@1"), *((r, "digit@1") for r in REGIMES), ("all", "digit@5")]
    header = ["source", "runs"] + [f"{k} {'all pairs' if r == 'all' else r} (%)" for r, k in columns]
    lines = ["", f"## Problem 2: retrieval by noise regime ({dataset_heading})", "",
             "Class-level retrieval on the test split, image → audio / audio → image: the share of queries "
             "with an item of their own digit among the k most similar items of the other view (the whole test "
             "split is the gallery; a regime's column averages its queries only). Mean over the runs' seeds; "
             "chance is about 10% at k = 1.", "",
             "| " + " | ".join(header) + " |", "|---|---:" + "|---:" * len(columns) + "|"]
    for key, group in runs.items():
        cells = []
        for regime, k in columns:
            both = []
            for d, _ in DIRECTIONS:
                stat = mean_std([p["retrieval_test"].get(regime, {}).get(f"{k}_{d}") for p in group])
                both.append(f"{100 * stat[0]:.1f}" if stat[2] else "–")
            cells.append(" / ".join(both))
        lines.append(f"| {key} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def probe_figure(groups, title):
    """Test accuracy vs F (log axis) of the probe on both views' features, one line per source."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    for k, (key, group) in enumerate(groups.items()):
        fractions = sorted({row["fraction"] for p in group for row in p.get("probes", [])})
        stats = [probe_stats(group, f, "both") for f in fractions]
        kept = [(f, s) for f, s in zip(fractions, stats) if s[2]]
        ax.errorbar([f for f, _ in kept], [100 * s[0] for _, s in kept], yerr=[100 * (s[1] or 0) for _, s in kept],
                    fmt="o--" if key in FLOOR_LABELS else "o-", capsize=3, color=f"C{k}",
                    label=FLOOR_LABELS.get(key, key))
    ax.set_xscale("log")
    ax.set_xlabel("F: share of labelled training pairs")
    ax.set_ylabel("test accuracy (%), probe on both views")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, not over, the data
    ax.set_title(title + " (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    return fig

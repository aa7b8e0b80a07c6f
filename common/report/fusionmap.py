"""The fusion map (evaluate.py --grid): where on the grid of image and audio corruption fusion helps.

Each run with a grid in its robustness.json gives its accuracy at every cell (image p x audio SNR, a
view missing included) and each test pair's correctness there. A fused run is read against the
single-view runs of the same fold (held-out speaker) and seed, on the same test pairs:

- regret: its accuracy minus the better single view at that cell: the image-only run, or the audio-only
  run a user would have picked (of the fold's audio-only runs, the one with the lowest validation loss,
  on the unheard validation voice), so a negative regret is a cell where fusing did worse than not fusing;
- strict regret: against the best of every single-view run at that cell (the audio run picked cell by
  cell on the test pairs themselves, which favours the single views);
- oracle regret: its accuracy minus an oracle that, pair by pair, takes whichever single view got it
  right (the union of their correct pairs): the most any combination of those views could get.

Regret maps are fold means (each fold, one unheard speaker: the mean over its seeds; then the mean over
folds, so a fold with more seeds kept counts once); the table gives each model's mean over the cells,
its worst cell (of the fold-mean map) and, seed by seed, the worst cell of each complete seed's own map.
Accuracies are fold means (each fold's mean over its seeds, then the mean over folds) with two 95%
intervals: over recordings (each fold's test recordings resampled, fold by fold) and over speakers (a t
interval over the fold means).
"""
import math
import statistics

import numpy as np

from ..facts import CLEAN, MISSING
from ..flags import spell
from ..runfolder import unpack_bits
from .stats import BOOTSTRAP_RESAMPLES, mean_ci, stratified_cluster_bootstrap

TEST_MIX = "test"  # not a grid cell: the test split's own noise mix (predictions_test.csv)


def grid_runs(runs):
    """The runs with a fusion map, as {label, kind, fold, seed, n, acc: {cell: %}, correct: {cell: [bool]}}:
    a single-view run's cells are keyed by its own axis ((p, None) or (None, snr_db))."""
    out = []
    for run in runs:
        grid = (run.get("robustness") or {}).get("grid")
        if not grid or not grid.get("cells"):
            continue
        kind = run["model"] if run["model"] != "multimodal" else "experts" if run.get("experts") else run["fusion"]
        said = ("fusion", "calibrate") if kind == "experts" else ("fusion",)  # the kind says these already
        beyond = " ".join(spell(k, v) for k, v in sorted((run.get("beyond_recipes") or {}).items()) if k not in said)
        if run.get("gate"):  # combine.py's own flag, not the training scripts'
            beyond = " ".join(filter(None, (beyond, spell("gate", run["gate"]))))
        label = f"{kind} [{'+'.join(run.get('recipes') or ['exam'])}]" + (f" {beyond}" if beyond else "")
        acc, correct = {}, {}
        for c in grid["cells"]:
            cell = (c.get("p"), c.get("snr_db"))
            acc[cell] = 100.0 * c["acc"]
            correct[cell] = unpack_bits(c["correct"], grid["n"])
        out.append({"label": label, "kind": run["model"], "fold": run.get("holdout_speaker"), "seed": run["seed"],
                    "n": grid["n"], "acc": acc, "correct": correct, "test_acc": run["test_acc"],
                    "val_loss": run.get("val_loss"),
                    "test_correct": _by_id(run.get("predictions"), grid["n"]),
                    "recordings": _by_id(run.get("recordings"), grid["n"]),
                    "image_levels": grid.get("image_levels"), "audio_levels": grid.get("audio_levels")})
    return out


def _by_id(mapping, n):
    """A {test row id: value} map as a list over the ids 0..n-1, the grid's pairs; None unless it has
    exactly those ids."""
    if not mapping or sorted(mapping) != list(range(n)):
        return None
    return [mapping[i] for i in range(n)]


def fold_mean(runs, cell):
    """One model's accuracy (%) at a grid cell (or TEST_MIX) as (fold mean, interval over recordings,
    interval over speakers, folds): the mean over each fold's seeds, then over folds; the first
    interval resamples each fold's test recordings (seeded, one draw per fold shared by its seeds;
    None when a run lacks its recordings or a fold's runs differ in them), the second is a t interval
    over the fold means (None for one fold)."""
    folds = {}
    for r in runs:
        correct = r["test_correct"] if cell == TEST_MIX else r["correct"].get(cell)
        if correct is not None:
            folds.setdefault(r["fold"], []).append((correct, r["recordings"]))
    if not folds:
        return math.nan, None, None, 0
    means = [statistics.fmean(100.0 * statistics.fmean(c) for c, _ in members) for members in folds.values()]
    mean, half = mean_ci(means)
    strata = [([c for c, _ in members], members[0][1]) for _, members in sorted(folds.items(), key=str)]
    if all(rec is not None and rec == members[0][1] for members in folds.values() for _, rec in members):
        low, high = np.quantile(100.0 * stratified_cluster_bootstrap(strata), [0.025, 0.975])
        over_recordings = (float(low), float(high))
    else:
        over_recordings = None
    return mean, over_recordings, (mean - half, mean + half) if half is not None else None, len(folds)


def _single_view(singles, view, level):
    """The single-view runs' (label, accuracy, correctness) at one level of their view."""
    key = (level, None) if view == "image" else (None, level)
    return [(r["label"], r["acc"][key], r["correct"][key]) for r in singles if key in r["acc"]]


def picked_on_validation(runs):
    """Of single-view runs of one view, the one with the lowest validation loss (the first on a tie; all
    of them when a run lacks it)."""
    if any(r.get("val_loss") is None for r in runs):
        return runs
    return [min(runs, key=lambda r: r["val_loss"])]


def regret_maps(grid):
    """{fused label: {(fold, seed): {cell: (regret, oracle regret, strict regret)}}} for every fused run
    whose fold and seed have an image-only run and at least one audio-only run on the same test pairs."""
    maps = {}
    for fused in (r for r in grid if r["kind"] == "multimodal"):
        singles = [r for r in grid if r["kind"] != "multimodal" and r["fold"] == fused["fold"]
                   and r["seed"] == fused["seed"] and r["n"] == fused["n"]]
        if not {r["kind"] for r in singles} >= {"image", "audio"}:
            continue
        picked = [r for kind in ("image", "audio") for r in picked_on_validation([s for s in singles
                                                                                  if s["kind"] == kind])]
        cells = {}
        for (p, snr), acc in fused["acc"].items():
            views = _single_view(singles, "image", p) + _single_view(singles, "audio", snr)
            best = max(a for _, a, _ in _single_view(picked, "image", p) + _single_view(picked, "audio", snr))
            oracle = 100.0 * float(np.any([c for _, _, c in views], axis=0).mean())
            cells[(p, snr)] = (acc - best, acc - oracle, acc - max(a for _, a, _ in views))
        maps.setdefault(fused["label"], {})[(fused["fold"], fused["seed"])] = cells
    return maps


def _fold_mean(values):
    """The mean over folds of each fold's mean over its seeds, from {(fold, seed): value}: a fold with
    more seeds kept than another counts once, like the others."""
    folds = {}
    for (fold, _), value in values.items():
        folds.setdefault(fold, []).append(value)
    return statistics.fmean(statistics.fmean(v) for v in folds.values())


def _mean_map(maps_by_run, index):
    """The fold-mean map of one of a model's regrets (index: 0 regret, 1 oracle, 2 strict), over the cells
    every run has."""
    cells = set.intersection(*(set(m) for m in maps_by_run.values()))
    return {c: _fold_mean({key: m[c][index] for key, m in maps_by_run.items()}) for c in cells}


def _worst_by_seed(maps_by_run):
    """'sS WORST, ...' for each seed S whose runs cover every fold of the model: the lowest cell of that
    seed's own fold-mean regret map, so that a worst cell can be read for luck across seeds."""
    folds = {fold for fold, _ in maps_by_run}
    parts = []
    for seed in sorted({seed for _, seed in maps_by_run}):
        own = {(fold, s): m for (fold, s), m in maps_by_run.items() if s == seed}
        if {fold for fold, _ in own} == folds:
            parts.append(f"s{seed} {min(_mean_map(own, 0).values()):+.2f}")
    return ", ".join(parts) or "–"


def _mean_acc(runs, cell):
    values = {(r["fold"], r["seed"]): r["acc"][cell] for r in runs if cell in r["acc"]}
    return _fold_mean(values) if values else math.nan


def _level(value):
    return value if isinstance(value, str) else f"{value:g}"


def _view_cells(kind):
    """A model's cells at clean audio and at 20 dB with the image at p = 0.1 (a single view's own axis)."""
    if kind == "audio":
        return (None, CLEAN), (None, 20.0)
    if kind == "image":
        return (0.1, None), (0.1, None)
    return (0.1, CLEAN), (0.1, 20.0)


def _interval(bounds):
    return f"[{bounds[0]:.1f}, {bounds[1]:.1f}]" if bounds else "–"


def fusion_map_markdown(grid):
    """The fusion map's section: every model's fold-mean accuracy at clean / 20 dB / the test mix with
    its intervals over recordings and over speakers; the fused models' regret (mean and worst cell of
    the fold-mean map); and the fold-mean regret map of each fused model."""
    if not grid:
        return []
    maps = regret_maps(grid)
    labels = list(dict.fromkeys(r["label"] for r in sorted(grid, key=lambda r: (r["kind"] == "multimodal",
                                                                                 r["label"]))))
    folds = sorted({r["fold"] for r in grid}, key=str)
    lines = ["", "## The fusion map on unheard voices (evaluate.py --grid)", "",
             f"Runs of {len(folds)} fold(s) ({', '.join(map(str, folds))}), each a speaker never heard in training "
             "(--holdout-speaker) with early stopping on another unheard speaker (--val-speaker). Accuracy (%) "
             "at image p = 0.1 with clean audio and with audio at 20 dB, and on the test split's own noise mix: "
             "the fold mean (each fold's mean over its seeds, then the mean over folds), with two 95% intervals. "
             f"Over recordings: each fold's test recordings resampled ({BOOTSTRAP_RESAMPLES:,} seeded resamples), "
             "the luck of the takes a speaker happened to record. Over speakers: a t interval over the fold means, "
             "the luck of which speakers FSDD has; for a new voice it is the one to read (– with one fold).", "",
             "| model | folds | runs | clean audio | over recordings | over speakers | 20 dB | over recordings | "
             "over speakers | test mix | over recordings | over speakers |",
             "|---|---:|---:|" + "---:|---|---|" * 3]
    for label in labels:
        runs = [r for r in grid if r["label"] == label]
        cells = []
        for cell in (*_view_cells(runs[0]["kind"]), TEST_MIX):
            mean, over_recordings, over_speakers, _ = fold_mean(runs, cell)
            cells += [f"{mean:.2f}", _interval(over_recordings), _interval(over_speakers)]
        n_folds = len({r["fold"] for r in runs})
        lines.append(f"| {label} | {n_folds} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += ["", "Regret (points): the fused model's accuracy minus the better single view at each cell of the "
              "grid, on the same test pairs: the image-only run, or the audio-only run a user would pick (of the "
              "fold and seed's audio-only runs, the one with the lowest validation loss on the unheard validation "
              "voice). Mean over the 49 cells of the fold-mean regret map; worst: its lowest cell. Strict: the "
              "worst cell against the best of every single-view run at each cell (the audio run picked cell by "
              "cell on the test pairs). Oracle: minus a per-pair oracle that takes whichever single view is "
              "right. Seed by seed: the worst cell of each seed's own fold-mean map, for the seeds kept at every "
              "fold of the model.", "",
              "| model | runs | mean regret | worst cell | worst regret | strict worst | mean oracle regret | "
              "worst, seed by seed |",
              "|---|---:|---:|---|---:|---:|---:|---|"]
    mean_maps = {label: [_mean_map(by_run, i) for i in range(3)] for label, by_run in maps.items()}
    for label, by_run in maps.items():
        regret, oracle, strict = mean_maps[label]
        worst = min(sorted(regret, key=_cell_order), key=regret.get)  # the first in grid order on a tie
        lines.append(f"| {label} | {len(by_run)} | {statistics.fmean(regret.values()):+.2f} | "
                     f"p {_level(worst[0])}, {_level(worst[1])} | {regret[worst]:+.2f} | {min(strict.values()):+.2f} | "
                     f"{statistics.fmean(oracle.values()):+.2f} | {_worst_by_seed(by_run)} |")
    for label, by_run in maps.items():
        regret = mean_maps[label][0]
        image_levels = list(dict.fromkeys(c[0] for c in sorted(regret, key=_cell_order)))
        audio_levels = list(dict.fromkeys(c[1] for c in sorted(regret, key=lambda c: _cell_order(c)[::-1])))
        n_folds = len({fold for fold, _ in by_run})
        lines += ["", f"Regret map of {label} (points; rows: image p, columns: audio SNR dB; the mean over "
                  f"{n_folds} fold(s) of each fold's mean over its seeds, {len(by_run)} run(s)):", "",
                  "| p \\ audio | " + " | ".join(_level(a) for a in audio_levels) + " |",
                  "|---|" + "---:|" * len(audio_levels)]
        for p in image_levels:
            lines.append(f"| {_level(p)} | " + " | ".join(f"{regret[(p, a)]:+.1f}" if (p, a) in regret else "–"
                                                     for a in audio_levels) + " |")
    return lines


def _cell_order(cell):
    """Cells in the grid's order: image p rising then missing; audio clean, SNR falling, then missing."""
    p, snr = cell
    p_key = (1, 0.0) if p == MISSING else (0, p)
    snr_key = (0, 0.0) if snr == CLEAN else (2, 0.0) if snr == MISSING else (1, -snr)
    return p_key, snr_key


def fusion_map_figure(grid, title):
    """Small multiples: for each fused model, its fold-mean accuracy map and its regret map (None when
    no fused run has its single views beside it)."""
    maps = regret_maps(grid)
    if not maps:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(maps), 2, figsize=(9.5, 3.4 * len(maps)), squeeze=False)
    for row, (label, by_run) in zip(axes, maps.items()):
        runs = [r for r in grid if r["label"] == label and (r["fold"], r["seed"]) in by_run]
        regret = _mean_map(by_run, 0)
        cells = sorted(regret, key=_cell_order)
        image_levels = list(dict.fromkeys(c[0] for c in cells))
        audio_levels = list(dict.fromkeys(c[1] for c in sorted(cells, key=lambda c: _cell_order(c)[::-1])))
        acc = [[_mean_acc(runs, (p, a)) for a in audio_levels] for p in image_levels]
        reg = [[regret.get((p, a), math.nan) for a in audio_levels] for p in image_levels]
        for ax, values, name, cmap, limits in ((row[0], acc, "accuracy (%)", "viridis", (0, 100)),
                                               (row[1], reg, "regret (points)", "RdBu", (-30, 30))):
            im = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
            for i, line in enumerate(values):
                for j, v in enumerate(line):
                    if not math.isnan(v):
                        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if cmap == "viridis" and v < 60 else "black")
            ax.set_xticks(range(len(audio_levels)), [_level(a) for a in audio_levels], fontsize=7)
            ax.set_yticks(range(len(image_levels)), [_level(p) for p in image_levels], fontsize=7)
            ax.set_xlabel("audio SNR (dB)", fontsize=8)
            ax.set_ylabel("image p", fontsize=8)
            ax.set_title(f"{label}: {name}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))  # room for the title above the top row
    return fig

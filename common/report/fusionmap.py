"""The fusion map (evaluate.py --grid): where on the grid of image and audio corruption fusion helps.

Each run with a grid in its robustness.json gives its accuracy at every cell (image p x audio SNR, a
view missing included) and each test pair's correctness there. A fused run is read against the
single-view runs of the same fold (held-out speaker) and seed, on the same test pairs:

- regret: its accuracy minus the better single view at that cell (the best of the image-only run and
  every audio-only run), so a negative regret is a cell where fusing did worse than not fusing;
- oracle regret: its accuracy minus an oracle that, pair by pair, takes whichever single view got it
  right (the union of their correct pairs): the most any combination of those views could get.

Regret maps are averaged over folds (each fold: one unheard speaker) and seeds; the table gives each
model's mean over the cells, its worst cell (of the fold-mean map) and the folds behind it.
"""
import math
import statistics

import numpy as np

from ..facts import CLEAN, MISSING
from ..runfolder import unpack_bits

VIEW_KEYS = {"image": "p", "audio": "snr_db"}


def grid_runs(runs):
    """The runs with a fusion map, as {label, kind, fold, seed, n, acc: {cell: %}, correct: {cell: [bool]}}:
    a single-view run's cells are keyed by its own axis ((p, None) or (None, snr_db))."""
    out = []
    for run in runs:
        grid = (run.get("robustness") or {}).get("grid")
        if not grid or not grid.get("cells"):
            continue
        kind = run["fusion"] if run["model"] == "multimodal" else run["model"]
        label = f"{kind} [{'+'.join(run.get('recipes') or ['exam'])}]"
        acc, correct = {}, {}
        for c in grid["cells"]:
            cell = (c.get("p"), c.get("snr_db"))
            acc[cell] = 100.0 * c["acc"]
            correct[cell] = unpack_bits(c["correct"], grid["n"])
        out.append({"label": label, "kind": run["model"], "fold": run.get("holdout_speaker"), "seed": run["seed"],
                    "n": grid["n"], "acc": acc, "correct": correct, "test_acc": run["test_acc"],
                    "image_levels": grid.get("image_levels"), "audio_levels": grid.get("audio_levels")})
    return out


def _single_view(singles, view, level):
    """The single-view runs' (label, accuracy, correctness) at one level of their view."""
    key = (level, None) if view == "image" else (None, level)
    return [(r["label"], r["acc"][key], r["correct"][key]) for r in singles if key in r["acc"]]


def regret_maps(grid):
    """{fused label: {(fold, seed): {cell: (regret, oracle regret)}}} for every fused run whose fold
    and seed have an image-only run and at least one audio-only run on the same test pairs."""
    maps = {}
    for fused in (r for r in grid if r["kind"] == "multimodal"):
        singles = [r for r in grid if r["kind"] != "multimodal" and r["fold"] == fused["fold"]
                   and r["seed"] == fused["seed"] and r["n"] == fused["n"]]
        if not {r["kind"] for r in singles} >= {"image", "audio"}:
            continue
        cells = {}
        for (p, snr), acc in fused["acc"].items():
            views = _single_view(singles, "image", p) + _single_view(singles, "audio", snr)
            best = max(a for _, a, _ in views)
            oracle = 100.0 * float(np.any([c for _, _, c in views], axis=0).mean())
            cells[(p, snr)] = (acc - best, acc - oracle)
        maps.setdefault(fused["label"], {})[(fused["fold"], fused["seed"])] = cells
    return maps


def _mean_map(maps_by_run, index):
    cells = set.intersection(*(set(m) for m in maps_by_run.values()))
    return {c: statistics.fmean(m[c][index] for m in maps_by_run.values()) for c in cells}


def _mean_acc(runs, cell):
    values = [r["acc"][cell] for r in runs if cell in r["acc"]]
    return statistics.fmean(values) if values else math.nan


def _level(value):
    return value if isinstance(value, str) else f"{value:g}"


def fusion_map_markdown(grid):
    """The fusion map's section: one table of every model at clean / 20 dB / the test mix, with the
    fused models' regret (mean and worst cell of the fold-mean map), and the fold-mean regret map of
    each fused model."""
    if not grid:
        return []
    maps = regret_maps(grid)
    labels = list(dict.fromkeys(r["label"] for r in sorted(grid, key=lambda r: (r["kind"] == "multimodal",
                                                                                 r["label"]))))
    folds = sorted({r["fold"] for r in grid}, key=str)
    lines = ["", "## The fusion map on unheard voices (evaluate.py --grid)", "",
             f"Runs of {len(folds)} fold(s) ({', '.join(map(str, folds))}), each a speaker never heard in training "
             "(--holdout-speaker) with early stopping on another unheard speaker (--val-speaker). Accuracy (%) "
             "at image p = 0.1 with clean audio and with audio at 20 dB, and on the test split's own noise mix; "
             "mean over the runs (folds x seeds). Regret: the fused model's accuracy minus the better single "
             "view at each cell of the grid (image-only, or the best audio-only run of the same fold and seed, "
             "on the same test pairs); oracle: minus a per-pair oracle that takes whichever single view is "
             "right. Mean over the 49 cells; worst: the lowest cell of the fold-mean regret map.", "",
             "| model | runs | clean audio | 20 dB | test mix | mean regret | worst cell | worst regret | "
             "mean oracle regret |", "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for label in labels:
        runs = [r for r in grid if r["label"] == label]
        single = runs[0]["kind"] != "multimodal"
        clean = (None, CLEAN) if runs[0]["kind"] == "audio" else (0.1, None) if single else (0.1, CLEAN)
        mild = (None, 20.0) if runs[0]["kind"] == "audio" else (0.1, None) if single else (0.1, 20.0)
        cells = [f"{_mean_acc(runs, clean):.2f}", f"{_mean_acc(runs, mild):.2f}",
                 f"{statistics.fmean(r['test_acc'] for r in runs):.2f}"]
        if label in maps:
            regret, oracle = _mean_map(maps[label], 0), _mean_map(maps[label], 1)
            worst = min(sorted(regret, key=_cell_order), key=regret.get)  # the first in grid order on a tie
            cells += [f"{statistics.fmean(regret.values()):+.2f}", f"p {_level(worst[0])}, {_level(worst[1])}",
                      f"{regret[worst]:+.2f}", f"{statistics.fmean(oracle.values()):+.2f}"]
        else:
            cells += ["–"] * 4
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    for label, by_run in maps.items():
        regret = _mean_map(by_run, 0)
        image_levels = list(dict.fromkeys(c[0] for c in sorted(regret, key=_cell_order)))
        audio_levels = list(dict.fromkeys(c[1] for c in sorted(regret, key=lambda c: _cell_order(c)[::-1])))
        lines += ["", f"Regret map of {label} (points; rows: image p, columns: audio SNR dB; mean over "
                  f"{len(by_run)} run(s)):", "",
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
    fig.tight_layout()
    return fig

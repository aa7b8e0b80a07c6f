"""Figures: the accuracy of every row, the robustness curves, and the contrastive figures."""
import os
import statistics

from ..facts import NOISE_SWEEPS, REGIMES
from ..io import save_figure
from .contrastive import label_efficiency_figure, label_efficiency_sets, probe_figure, probe_groups, sweep_figure
from .format import describe_dataset, row_name
from .stats import SWEEP_AXES, is_number, sweep_curve, sweep_stats


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
        runs = [(row, acc) for row, g in enumerate(groups) for acc in g["run_acc"][key] if is_number(acc)]
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


def robustness_figures(groups, title):
    """{sweep: Figure}: accuracy vs noise level, one colour per model: its median over seeds as a
    thick line and each seed as a thin one (a failed seed shows as its own flat curve instead of
    widening a band to the whole axis); the legend sits beside the axes, not over the data."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = {}
    for spec in NOISE_SWEEPS:
        sweep, xlabel = spec.key, f"{spec.axis_label} ({spec.held})"
        rows = [(g, sweep_stats(g, sweep)) for g in groups if g["robustness"]]
        rows = [(g, st) for g, st in rows if st]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(11, 5.2))
        levels = SWEEP_AXES[sweep][1]
        for k, (g, st) in enumerate(rows):
            curves = [c for c in (sweep_curve(r, sweep) for r in g["robustness"]) if c]
            median = [statistics.median(c[lv] for c in curves) for lv in levels]
            reference = g["model"] != "multimodal" or g["fusion"] == "late"
            color = plt.cm.tab20(k % 20)  # twelve and more rows: ten colours would repeat
            ax.plot(levels, median, marker="o", ms=3, lw=2.2, color=color, ls="--" if reference else "-",
                    label=f"{row_name(g)} (median of {len(curves)})")
            for c in curves if len(curves) > 1 else []:
                ax.plot(levels, [c[lv] for lv in levels], lw=0.7, alpha=0.35, color=color)
        if spec.invert:
            ax.invert_xaxis()  # worse to the right, as for p
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%): median over seeds, thin: each seed")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.set_title(f"{title}: {spec.view} sweep", fontsize=10)
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
            path = os.path.join(folder, f"robustness-{sweep.split('_')[0]}{suffix}.png")  # robustness-image.png
            save_figure(fig, path)
            written.append(path)
    return written

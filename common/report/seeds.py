"""Seed by seed: which runs failed to train, by one stated rule, for the models trained under more
than one recipe (--recipe). A mean ± std over seeds hides a failed seed in its spread; this table
shows each row's median, its worst seed and the count of failed seeds beside it."""
import statistics

from .format import row_name
from .settings import is_exam_setup, recipe_name

# A seed failed when its test accuracy is more than this many points below the best seed of the same
# model in the table (under any recipe): the best seed is what that network can do on this data.
FAILED_POINTS = 5.0


def failure_rows(groups):
    """The rows of the table: each model trained under a named recipe other than the exam's, beside
    its rows trained as the exam did; with each row's per-seed accuracies and its failed seeds."""
    named = [g for g in groups if recipe_name(dict(g["config"])) not in (None, "exam")]
    labels = {g["label"] for g in named}
    rows = [g for g in groups if g["label"] in labels and (g in named or is_exam_setup(g))]
    best = {}
    for g in rows:
        best[g["label"]] = max([best.get(g["label"], float("-inf"))] + list(g["run_acc"]["all"]))
    out = []
    for g in rows:
        accs = dict(zip(g["seeds"], g["run_acc"]["all"]))
        worst = min(accs, key=accs.get)
        out.append({"group": g, "accs": accs, "median": statistics.median(accs.values()), "worst": worst,
                    "failed": sorted(s for s, a in accs.items() if a < best[g["label"]] - FAILED_POINTS)})
    return out


def seeds_markdown(groups, dataset_name):
    rows = failure_rows(groups)
    if not rows:
        return []
    lines = ["", f"Seed by seed ({dataset_name}): test accuracy (%) of every run of the models trained under "
                 "more than one recipe. A seed **failed** when its test accuracy is more than "
                 f"{FAILED_POINTS:g} points below the best seed of the same model in this table (under any "
                 "recipe).", "",
             "| model | n | mean ± std | median | worst (seed) | failed | per seed |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        g, accs = r["group"], r["accs"]
        mean = statistics.fmean(accs.values())
        std = f"{statistics.stdev(accs.values()):.2f}" if len(accs) > 1 else "–"
        failed = f"{len(r['failed'])} / {len(accs)}" + (f" (seed {', '.join(map(str, r['failed']))})"
                                                         if r["failed"] else "")
        per_seed = ", ".join(f"{s}: {a:.2f}" for s, a in accs.items())
        lines.append(f"| {row_name(g)} | {len(accs)} | {mean:.2f} ± {std} | {r['median']:.2f} | "
                     f"{accs[r['worst']]:.2f} ({r['worst']}) | {failed} | {per_seed} |")
    return lines

"""Seed by seed: which runs failed to train, by one stated rule, for the models trained under more
than one recipe (--recipe). A mean ± std over seeds hides a failed seed in its spread; this table
shows each row's median, its worst seed and the count of failed seeds beside it. Then each named
recipe against the exam's, model by model, on the same test pairs (the paired test of the other
tables, stats.paired_comparisons)."""
import statistics

from .format import PAIRED_TEST_TEXT, paired_table, row_name
from .settings import PAIRED_RECIPE_KEYS, is_exam_setup, recipe_name
from .stats import ALPHA, holm, paired_comparisons

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
    return lines + recipes_paired_markdown([r["group"] for r in rows], dataset_name)


def recipes_paired_markdown(groups, dataset_name):
    """Each named recipe's row against the same model's row trained as the exam did, seed by seed;
    only rows that differ from it in the recipe's flags and the --select rule alone (not also in a
    front-end, a learning rate or a share of the labels), so that the difference is the recipe's."""
    def outside_recipe(g):
        return [(k, v) for k, v in g["config"] if k not in PAIRED_RECIPE_KEYS]
    rows, dropped = [], []
    for exam in [g for g in groups if is_exam_setup(g)]:
        same_model = [g for g in groups if g["label"] == exam["label"] and outside_recipe(g) == outside_recipe(exam)]
        mine, left_out = paired_comparisons(same_model, exam)
        rows += mine
        dropped += left_out
    if not rows and not dropped:
        return []
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted  # over every row of this table, not model by model
    return ["", f"Each recipe against the exam's, same model ({dataset_name}): seed by seed on the same test "
                "pairs, at the seeds both rows have. Δ acc: the recipe's accuracy minus the exam recipe's, mean "
                "over the paired seeds with a 95% t interval. b/c per seed: test pairs only the recipe's run "
                "got right / only the exam recipe's run got right. " + PAIRED_TEST_TEXT
            + f"Holm-corrected over the rows of this table. Significant: Holm-adjusted p < {ALPHA}.", ""] \
        + paired_table(rows, dropped, "the exam recipe's run")

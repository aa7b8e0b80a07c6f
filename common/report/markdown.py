"""Rendering: the Markdown report (results table from the column spec, regimes, seed by seed, label
efficiency, paired comparisons, robustness, and the contrastive sections)."""
from ..facts import NOISE_SWEEPS, REGIMES
from .columns import RUN_COLUMNS, TEST_COLUMNS
from .contrastive import (label_efficiency_markdown, label_efficiency_sets, probe_groups, probe_markdown,
                          retrieval_markdown, sweep_markdown)
from .format import (PAIRED_TEST_TEXT, best_labels, describe_dataset, describe_skipped, fmt_stat, paired_table,
                     recording_intervals_markdown, row_name)
from .group import baselines
from .seeds import seeds_markdown
from .speakers import unseen_voices_markdown
from .settings import EXAM, is_exam_setup, training_setup
from .stats import ALPHA, SWEEP_AXES, is_number, mean_std, paired_comparisons, sweep_stats

MISSING_COLUMNS = (("both_mild", "both mild"), ("image_zeros", "image zeros"),
                   ("image_train_mean", "image train mean"), ("image_surviving_head", "image gone: audio head"),
                   ("audio_zeros", "audio zeros"), ("audio_train_mean", "audio train mean"),
                   ("audio_surviving_head", "audio gone: image head"))


def results_table(groups, dkey):
    """The main table of one dataset: a row per group, the columns of columns.py around the exam's numbers."""
    headers = ["model", "dataset", "n"] + [c.name for c in TEST_COLUMNS] + ["exam: loss / accuracy"] + \
        [c.name for c in RUN_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * (len(headers) - 2)]
    best = {c.field: best_labels(groups, c.field, c.digits, highest=c.best == "high")
            for c in TEST_COLUMNS + RUN_COLUMNS if c.best}
    devices = sorted({d for g in groups for d in g["devices"]})
    for i, g in enumerate(groups):
        # the exam's setup on real data and the exam's split (its speakers are the test speakers)
        comparable = is_exam_setup(g) and not dkey[1] and dkey[3] is None and not g["holdout_speaker"]
        exam = EXAM.get((g["model"], g["fusion"])) if comparable else None
        cells = [row_name(g), g["dataset"], str(g["n"])]
        cells += [c.markdown(g, bold=i in best.get(c.field, ())) for c in TEST_COLUMNS]
        cells.append(f"{exam[0]:.3f} / {exam[1]:.1f}%" if exam else "–")
        for c in RUN_COLUMNS:
            cell = c.markdown(g, bold=i in best.get(c.field, ()))
            if c.field == "seconds_per_epoch" and len(devices) > 1:  # seconds from different machines: say whose
                cell += f" ({'+'.join(g['devices'])})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    if len(devices) > 1:
        lines += ["", f"These runs trained on {len(devices)} kinds of device ({', '.join(devices)}; config.json's "
                      "`device`): compare seconds per epoch only between rows of the same device."]
    return lines


def markdown(tables, runs_dir, n_runs, skipped, sweeps=(), probes=(), floors=None):
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
        lines += results_table(groups, dkey)
        lines += recording_intervals_markdown(groups, dkey[0], (floors or {}).get(dkey[2]))
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
        lines += seeds_markdown(groups, dkey[0])
        lines += label_efficiency_markdown(label_efficiency_sets(groups), describe_dataset(dkey))
        lines += comparisons_markdown(groups, dkey[0])
        lines += robustness_markdown(groups, dkey[0])
    lines += unseen_voices_markdown(tables)
    return "\n".join(lines) + "\n"


def comparisons_markdown(groups, dataset_name):
    lines = []
    for base_label in ("multimodal-concat", "multimodal-late"):
        for baseline in baselines(groups, base_label):
            rows, dropped = paired_comparisons(groups, baseline)
            if not rows and not dropped:
                continue
            lines += ["", f"### Paired against {row_name(baseline)} ({dataset_name})", "",
                      "Seed by seed on the same test pairs. Δ acc: this model's accuracy minus "
                      f"{row_name(baseline)}'s, mean over the paired seeds with a 95% t interval. b/c per seed: "
                      "test pairs only this model got right / only the baseline got right. " + PAIRED_TEST_TEXT
                      + f"Holm-corrected over the models of this table. Significant: Holm-adjusted p < {ALPHA}.", ""]
            lines += paired_table(rows, dropped, "the baseline's")
    return lines


def sweep_range(sweep):
    """'image: p from 0 to 0.95, audio held at 20 dB': a sweep's span in words."""
    span = sweep.span.format(first=sweep.levels[0], last=sweep.levels[-1])
    return f"{sweep.view}: {span}, {sweep.held_view} held at {sweep.held_level}"


def robustness_markdown(groups, dataset_name):
    """The robustness section of one table; empty when no run there has a robustness.json."""
    with_rob = [g for g in groups if g["robustness"]]
    if not with_rob:
        return []
    stats = {id(g): {s: sweep_stats(g, s) for s in SWEEP_AXES} for g in with_rob}
    lates = [g for g in with_rob if g["model"] == "multimodal" and g["fusion"] == "late"]

    def late_for(g):  # the late row trained like g; else the exam-setup one; else none (the caption's rule)
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
             "trapezoid rule (" + "; ".join(sweep_range(s) for s in NOISE_SWEEPS) + "). Δ late: this model's "
             "mean area minus late fusion's (the late row trained "
             "the same way, else the one trained as the exam did). Fresh draw: the "
             "test split drawn again at another data seed; it should match the test accuracy within seed noise.",
             "",
             "| model | n | test accuracy (%) | fresh draw (%) | "
             + " | ".join(f"{s.view}-sweep area | Δ late" for s in NOISE_SWEEPS) + " |",
             "|---|---:|---:|---:|" + "---:|---:|" * len(NOISE_SWEEPS)]
    for g in with_rob:
        fresh = mean_std(100.0 * r["fresh"]["acc"] for r in g["robustness"]
                         if isinstance(r.get("fresh"), dict) and is_number(r["fresh"].get("acc")))
        st = stats[id(g)]
        cells = [row_name(g), str(len(g["robustness"])), fmt_stat(g["test_acc"], 2), fmt_stat(fresh, 2)]
        for s in NOISE_SWEEPS:
            cells += [fmt_stat(st[s.key]["auc"], 2) if st[s.key] else "–", delta(g, s.key)]
        lines.append("| " + " | ".join(cells) + " |")
    for sweep, title in ((s.key, f"Test accuracy (%) vs {s.level_name}, {s.held}") for s in NOISE_SWEEPS):
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

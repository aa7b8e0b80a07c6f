"""How the report writes a number, a row's name and a dataset: the formatting every table shares."""
from .settings import FLOOR_VIEWS
from .stats import ALPHA, BOOTSTRAP_RESAMPLES, cluster_bootstrap


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


def row_name(g):
    return f"{g['label']} ({g['settings']})" if g["settings"] else g["label"]


def describe_skipped(skipped):
    return "; ".join(f"{count} × {reason}" for reason, count in sorted(skipped.items()))


def csv_number(x):
    return "" if x is None else round(x, 6)


# How the paired tables' p is made (stats.paired_comparisons), said once for every such table.
PAIRED_TEST_TEXT = ("p: McNemar's exact test, per seed in the last column; the seeds share their test pairs, so "
                    "they are not pooled: a difference must hold at every seed in the same direction, so p is twice "
                    "the largest per-seed one-sided p in the likelier direction (the largest per-seed p when every "
                    "seed agrees; about 1 when they disagree), then ")


P_FLOOR = 1e-16  # below this a p-value says nothing more (and its digits are rounding)


def fmt_p(p):
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"{p:.2g}"


def fmt_interval(mean, low, high, digits=2):
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


FLOOR_NAMES = {"image": "noisy pixels", "audio": "a 128-d log-mel summary", "both": "pixels + log-mel summary"}


def recording_intervals_markdown(groups, dataset_name, floors=None):
    """Each run's test accuracy with a 95% interval that resamples recordings beside the one that
    treats test pairs as independent, and the design effect between them; [] without recordings.
    floors: {"image" | "audio" | "both": %} of this dataset (read.read_floors): each run says whether
    its interval clears the floor of its views, and the floors come first as rows of their own."""
    floors = floors or {}
    rows = [f"| floor: logistic regression on {FLOOR_NAMES[v]} | – | {floors[v]:.2f} | – | – | – | – | – | – |"
            for v in ("image", "audio", "both") if v in floors]
    for g in groups:
        for seed, preds, recordings in zip(g["seeds"], g["predictions"], g.get("recordings") or []):
            if not preds or not recordings or not set(preds) <= set(recordings):
                continue
            ids = sorted(preds)
            acc, low, high, deff = cluster_bootstrap([int(preds[i]) for i in ids], [recordings[i] for i in ids])
            half = 1.96 * (acc * (1 - acc) / len(ids)) ** 0.5
            floor = floors.get(FLOOR_VIEWS.get(g["model"]))
            clears = "–" if floor is None else "yes" if 100 * low > floor else "no"
            rows.append(f"| {row_name(g)} | {seed} | {100 * acc:.2f} | [{100 * low:.2f}, {100 * high:.2f}] | "
                        f"[{100 * (acc - half):.2f}, {100 * (acc + half):.2f}] | {deff:.1f} | "
                        f"{len(ids) / deff:,.0f} / {len(ids):,} | {len({recordings[i] for i in ids})} | {clears} |")
    if len(rows) == len([v for v in floors if v in FLOOR_NAMES]):
        return []
    return ["", f"Test accuracy (%) with intervals that count recordings ({dataset_name}): each run, its 95% "
            f"interval from resampling the test recordings ({BOOTSTRAP_RESAMPLES:,} seeded resamples; a recording "
            "makes many test pairs, right or wrong together) beside the interval that treats every pair as "
            "independent. Design effect: the first interval's variance over the second's; effective pairs: test "
            "pairs / design effect. Floors: a logistic regression on the raw inputs of the same views, all labels "
            "(evaluate_contrastive.py raw); clears: the run's interval over recordings lies above its views' floor.",
            "", "| model | seed | acc | 95% over recordings | 95% over pairs (iid) | design effect | effective pairs | "
            "recordings | clears its floor |", "|---|---:|---:|---|---|---:|---:|---:|---|", *rows]


def paired_table(rows, dropped, baseline_files):
    """The lines of a paired-comparison table (stats.paired_comparisons' rows, p_holm filled in) and its
    note on the seeds left out; baseline_files: whose predictions a left-out seed's do not match."""
    clustered = any(any(r.get("clustered") or []) for r in rows)
    lines = ["| model | seeds | Δ acc (points) | b/c per seed | p | p (Holm) | significant | p per seed |"
             + (" Δ per seed, 95% over recordings |" if clustered else ""),
             "|---|---:|---:|---|---:|---:|---|---|" + ("---|" if clustered else "")]
    for r in rows:
        mean, half = r["diff"]
        diff = f"{mean:+.2f}" + (f" ± {half:.2f}" if half is not None else " ± –")
        significant = "no" if r["p_holm"] >= ALPHA else "yes, better" if r["direction"] > 0 else "yes, worse"
        line = (f"| {row_name(r['group'])} | {r['n']} | {diff} | {', '.join(r['discordant'])} | "
                f"{fmt_p(r['p'])} | {fmt_p(r['p_holm'])} | {significant} | "
                f"{', '.join(fmt_p(p) for p in r['p_seeds'])} |")
        if clustered:
            line += " " + "; ".join(fmt_interval(*c[:3]) if c else "–" for c in r.get("clustered") or []) + " |"
        lines.append(line)
    if clustered:
        lines += ["", f"Last column: each seed's Δ with a 95% interval from resampling the test recordings "
                  f"({BOOTSTRAP_RESAMPLES:,} seeded resamples). McNemar's p treats the test pairs as independent; "
                  "they are not (each recording is heard in many pairs), and this interval does not assume it."]
    if dropped:
        lines += ["", "Left out of these tests: " + "; ".join(
            f"{row_name(g)} seed {seed}" for g, seed in dropped) + " (its predictions_test.csv covers other "
            f"test pairs than {baseline_files}: a damaged file, or another split)."]
    return lines

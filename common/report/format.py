"""How the report writes a number, a row's name and a dataset: the formatting every table shares."""
from .stats import ALPHA


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


def paired_table(rows, dropped, baseline_files):
    """The lines of a paired-comparison table (stats.paired_comparisons' rows, p_holm filled in) and its
    note on the seeds left out; baseline_files: whose predictions a left-out seed's do not match."""
    lines = ["| model | seeds | Δ acc (points) | b/c per seed | p | p (Holm) | significant | p per seed |",
             "|---|---:|---:|---|---:|---:|---|---|"]
    for r in rows:
        mean, half = r["diff"]
        diff = f"{mean:+.2f}" + (f" ± {half:.2f}" if half is not None else " ± –")
        significant = "no" if r["p_holm"] >= ALPHA else "yes, better" if r["direction"] > 0 else "yes, worse"
        lines.append(f"| {row_name(r['group'])} | {r['n']} | {diff} | {', '.join(r['discordant'])} | "
                     f"{r['p']:.2g} | {r['p_holm']:.2g} | {significant} | "
                     f"{', '.join(f'{p:.2g}' for p in r['p_seeds'])} |")
    if dropped:
        lines += ["", "Left out of these tests: " + "; ".join(
            f"{row_name(g)} seed {seed}" for g, seed in dropped) + " (its predictions_test.csv covers other "
            f"test pairs than {baseline_files}: a damaged file, or another split)."]
    return lines

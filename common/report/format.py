"""How the report writes a number, a row's name and a dataset: the formatting every table shares."""


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

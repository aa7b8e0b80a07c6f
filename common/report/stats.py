"""The statistics of the report, on numbers already read (no file is opened here): means and
standard deviations over seeds, t intervals, McNemar's exact test and Holm's correction, the
seed-by-seed paired comparison, and the area under each robustness sweep."""
import math
import statistics

from scipy import stats as scipy_stats

from ..facts import NOISE_SWEEPS, area_under

ALPHA = 0.05
SWEEP_AXES = {s.key: (s.level_key, s.levels) for s in NOISE_SWEEPS}


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_std(values):
    """(mean, sample std, count) of the numbers in values; std is None for fewer than two."""
    xs = [float(v) for v in values if is_number(v)]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def cluster_bootstrap(values, clusters, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """The mean of per-pair `values` (1/0 for right/wrong; +1/0/-1 for a paired difference) with a 95%
    interval that resamples whole clusters (the recordings: each makes many test pairs, and pairs of
    one recording are right or wrong together) with replacement, seeded. Returns (mean, low, high,
    design effect): the design effect is the resampled variance over the variance pairs drawn
    independently would give (1: no clustering; the effective number of pairs is n / design effect)."""
    import numpy as np
    values = np.asarray(values, dtype=np.float64)
    means = stratified_cluster_bootstrap([([values], clusters)], resamples, seed)
    low, high = np.quantile(means, [0.025, 0.975])
    iid_var = values.var(ddof=1) / len(values) if len(values) > 1 else 0.0
    deff = float(means.var(ddof=1) / iid_var) if iid_var > 0 else math.nan
    return float(values.mean()), float(low), float(high), deff


def stratified_cluster_bootstrap(strata, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """The resampled means (an array of `resamples`) of a mean of means: `strata` is a list of
    (runs, clusters), each stratum's runs a list of per-pair value arrays on the same pairs, whose
    clusters (recordings) `clusters` names. Each resample draws every stratum's clusters with
    replacement (one draw shared by its runs), takes each run's mean over the drawn pairs, the mean
    over a stratum's runs, then the mean over the strata: the fold mean of a model over unheard
    speakers, each fold's recordings resampled on their own."""
    import numpy as np
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for runs, clusters in strata:
        ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
        draws = rng.integers(0, len(ids), size=(resamples, len(ids)))
        drawn = counts[draws].sum(axis=1)
        total += np.mean([np.bincount(inverse, weights=np.asarray(v, dtype=np.float64), minlength=len(ids))[draws]
                          .sum(axis=1) / drawn for v in runs], axis=0)
    return total / len(strata)


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value from the discordant counts: b pairs only the first model got
    right, c only the second. Under no difference each discordant pair goes either way with
    probability 1/2: the exact binomial test of b successes in b + c trials at p = 1/2."""
    return float(scipy_stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0


def mcnemar_one_sided(b, c):
    """Exact one-sided McNemar p-value that the first model is the better one: P(X <= c),
    X ~ Binomial(b + c, 1/2), the chance of c or fewer discordant pairs going the baseline's way."""
    return float(scipy_stats.binomtest(c, b + c, 0.5, alternative="less").pvalue) if b + c else 1.0


def holm(pvalues):
    """Holm's step-down adjustment: adjusted p-values in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mean_ci(values):
    """(mean, half-width of the 95% t interval) of a few numbers; half-width None for fewer than two."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t_975 = float(scipy_stats.t.ppf(1 - ALPHA / 2, len(values) - 1))
    return mean, t_975 * statistics.stdev(values) / math.sqrt(len(values))


def paired_comparisons(groups, baseline):
    """Every model against `baseline` (a group), seed by seed on the same test pairs (each group's
    `predictions`, read with its runs: {test row: correct?} per run, None where a run has none).

    For each other group with predictions for seeds the baseline also has: the accuracy
    difference per seed, its mean with a 95% t interval over seeds, and McNemar's exact test per
    seed. The seeds share their test pairs, so their tests are not independent and their counts
    are not pooled: a model differs from the baseline only if it does at every seed and in the same
    direction. That (intersection-union) test takes, for each direction, the largest per-seed
    one-sided p; p is twice the smaller of the two (capped at 1), and "direction" says which one
    it was (+1: this model better). When every seed points the same way this is the largest
    per-seed two-sided p. Holm's correction then runs over the models compared with this baseline.
    Returns the rows and the (group, seed) pairs left out because their predictions cover other
    test pairs than the baseline's (a damaged file, or another split).
    """
    base_preds = {}
    for seed, preds in zip(baseline["seeds"], baseline["predictions"]):
        base_preds.setdefault(seed, preds)  # a repeated seed: its first run
    recordings = next((r for r in baseline.get("recordings") or [] if r), None)
    rows, dropped_seeds = [], []
    for g in groups:
        if g is baseline:
            continue
        diffs, per_seed, better, worse, discordant, used, dropped = [], [], [], [], [], set(), []
        clustered = []  # each seed's difference with its interval over recordings (None: no recordings)
        for seed, mine in zip(g["seeds"], g["predictions"]):
            base = base_preds.get(seed)
            if seed in used or not mine or not base:
                continue
            if set(mine) != set(base):  # a damaged or foreign predictions file: said, not silently skipped
                dropped.append(seed)
                continue
            used.add(seed)
            b = sum(mine[i] and not base[i] for i in mine)
            c = sum(base[i] and not mine[i] for i in mine)
            diffs.append(100.0 * (b - c) / len(mine))
            per_seed.append(mcnemar_exact(b, c))
            better.append(mcnemar_one_sided(b, c))
            worse.append(mcnemar_one_sided(c, b))
            discordant.append(f"{b}/{c}")
            ids = sorted(mine)
            if recordings and set(mine) <= set(recordings):
                mean, low, high, deff = cluster_bootstrap([int(mine[i]) - int(base[i]) for i in ids],
                                                          [recordings[i] for i in ids])
                clustered.append((100 * mean, 100 * low, 100 * high, deff))
            else:
                clustered.append(None)
        if diffs:
            p_better, p_worse = max(better), max(worse)
            rows.append({"group": g, "n": len(diffs), "diff": mean_ci(diffs), "p_seeds": per_seed,
                         "p": min(1.0, 2 * min(p_better, p_worse)), "direction": 1 if p_better < p_worse else -1,
                         "discordant": discordant, "clustered": clustered})
        dropped_seeds += [(g, seed) for seed in dropped]
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
    return rows, dropped_seeds


def sweep_curve(result, sweep):
    """{level: accuracy %} of one run's sweep, or None when the run lacks it or its levels differ."""
    level_key, levels = SWEEP_AXES[sweep]
    rows = result.get(sweep)
    if not isinstance(rows, list):
        return None
    curve = {row.get(level_key): 100.0 * row["acc"] for row in rows if is_number(row.get("acc"))}
    return curve if sorted(curve) == sorted(levels) else None


def sweep_stats(group, sweep):
    """Per level (mean, std, n) of accuracy %, and the area under the curve (mean, std, n) over seeds."""
    curves = [c for c in (sweep_curve(r, sweep) for r in group["robustness"]) if c]
    if not curves:
        return None
    levels = SWEEP_AXES[sweep][1]
    per_level = {lv: mean_std(c[lv] for c in curves) for lv in levels}
    auc = mean_std(area_under(levels, [c[lv] for lv in levels]) for c in curves)
    return {"levels": per_level, "auc": auc}

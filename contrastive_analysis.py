"""Numerical companion to the exam's Problem 2 (NT-Xent vs NT-Log).

Reproduces Table 2 (the weights f_Xent and f_Log of the negative's direction in
the gradient), sweeps the temperature from 1e-3 to 1e3 for a few (s+, s-)
configurations, and checks the tau -> 0 and tau -> inf limits both
numerically and from their closed forms.

Sign convention: the losses here are minimised (see common/nets/losses.py);
the exam's NT-Xent / NT-Log are log-likelihoods, i.e. minus ours, so its
limits -log 2 and 2 log 0.5 are our log 2 and 2 log 2.

Outputs in --out: loss_vs_tau.png, grad_norm_vs_tau.png, f_map.png and
analysis.json.  Exit status 1 if any Table 2 entry is not reproduced.
"""
import argparse
import math
import sys

import numpy as np
import torch

from common.argtypes import positive_int
from common.io import save_figure, save_json
from common.nets.losses import f_log, f_xent, nt_log, nt_log_grad_u, nt_xent, nt_xent_grad_u

# (sim+, sim-, exam f_Xent, exam f_Log), as printed in the exam's Table 2 (tau = 1).
EXAM_TABLE2 = [
    (0.99, 0.5, -0.380, -0.622),
    (0.5, 0.5, -0.5, -0.622),
    (0.01, 0.5, -0.620, -0.622),
    (-0.5, 0.5, -0.731, -0.622),
    (0.99, -0.5, -0.184, -0.378),
    (0.5, -0.5, -0.269, -0.378),
    (0.01, -0.5, -0.375, -0.378),
    (-0.5, -0.5, -0.5, -0.378),
]

# (name, sim+, sim-) for the temperature sweeps.
CONFIGS = [
    ("s+ > s-, s- < 0", 0.8, -0.3),
    ("s+ > s-, s- > 0", 0.9, 0.2),
    ("s+ = s-", 0.5, 0.5),
    ("s+ < s-", 0.2, 0.9),
]

TAU_MIN, TAU_MAX = 1e-3, 1e3
TAU_LARGE, TAU_SMALL = 1e6, 1e-4      # where the limits are checked numerically
LOG2 = math.log(2.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Deterministic (fixed inputs, one fixed seed, no data); it overwrites "
                    "its own output files in --out on every run, it never refuses an existing folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/contrastive_analysis",
                   help="folder for the figures and analysis.json (created if missing; its files are replaced)")
    p.add_argument("--dpi", type=positive_int, default=110, help="resolution of the PNG figures")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- #
# Table 2
# --------------------------------------------------------------------------- #

def table2():
    rows = []
    for s_pos, s_neg, exam_x, exam_l in EXAM_TABLE2:
        fx, fl = f_xent(s_pos, s_neg, 1.0), f_log(s_neg, 1.0)
        rows.append({"sim_pos": s_pos, "sim_neg": s_neg,
                     "f_xent": fx, "f_xent_exam": exam_x, "f_xent_match": round(fx, 3) == exam_x,
                     "f_log": fl, "f_log_exam": exam_l, "f_log_match": round(fl, 3) == exam_l})
    return rows


def print_table2(rows):
    print("Table 2 (tau = 1): f_Xent = -sigma(s- - s+), f_Log = -sigma(s-)")
    head = f"{'sim+':>6} {'sim-':>6} | {'f_Xent':>7} {'exam':>7} {'match':>5} | {'f_Log':>7} {'exam':>7} {'match':>5}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['sim_pos']:>6.2f} {r['sim_neg']:>6.2f} | "
              f"{r['f_xent']:>7.3f} {r['f_xent_exam']:>7.3f} {'yes' if r['f_xent_match'] else 'NO':>5} | "
              f"{r['f_log']:>7.3f} {r['f_log_exam']:>7.3f} {'yes' if r['f_log_match'] else 'NO':>5}")


# --------------------------------------------------------------------------- #
# Temperature sweeps and limits
# --------------------------------------------------------------------------- #

def unit_vectors(s_pos, s_neg):
    """u, v+, v- (unit length in R^3) with u.v+ = s+ and u.v- = s- (dot = cosine)."""
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v_pos = torch.tensor([s_pos, math.sqrt(1 - s_pos ** 2), 0.0], dtype=torch.float64)
    v_neg = torch.tensor([[s_neg, 0.0, math.sqrt(1 - s_neg ** 2)]], dtype=torch.float64)
    return u, v_pos, v_neg


def evaluate(s_pos, s_neg, taus):
    """Losses and ||grad_u|| for each temperature in `taus` (1-D), as float64 numpy arrays.

    The anchor is repeated once per temperature and the library functions get
    a per-anchor tau, so one call covers the whole sweep.
    """
    taus = torch.as_tensor(np.asarray(taus, dtype=np.float64))
    u, v_pos, v_neg = unit_vectors(s_pos, s_neg)
    u, v_pos = u.expand(len(taus), -1), v_pos.expand(len(taus), -1)
    return {
        "xent": nt_xent(u, v_pos, v_neg, taus).numpy(),
        "log": nt_log(u, v_pos, v_neg, taus).numpy(),
        "xent_grad": nt_xent_grad_u(u, v_pos, v_neg, taus).norm(dim=-1).numpy(),
        "log_grad": nt_log_grad_u(u, v_pos, v_neg, taus).norm(dim=-1).numpy(),
    }


def _step(x):
    """Limit of sigma(x / tau) as tau -> 0+: 1, 1/2 or 0."""
    return 1.0 if x > 0 else (0.5 if x == 0 else 0.0)


def analytic_limits(s_pos, s_neg):
    """Closed-form limits for one positive and one negative (unit vectors)."""
    u, v_pos, v_neg = unit_vectors(s_pos, s_neg)
    v_neg = v_neg[0]
    diff = float((v_neg - v_pos).norm())
    # tau -> 0: p_- -> step(s- - s+), so tau * grad_xent -> step(s- - s+) (v- - v+);
    # NT-Log: tau * grad -> step(s-) v- - step(-s+) v+.
    w = _step(s_neg - s_pos)
    small_log_grad = float((_step(s_neg) * v_neg - _step(-s_pos) * v_pos).norm())
    return {
        "large_tau": {"xent": LOG2, "log": 2 * LOG2,
                      # p_+ = p_- = sigma(0) = 1/2 for both losses: grad ~ (v- - v+) / (2 tau)
                      "tau_x_xent_grad": diff / 2, "tau_x_log_grad": diff / 2},
        "small_tau": {"tau_x_xent": max(0.0, s_neg - s_pos),
                      "tau_x_log": max(0.0, -s_pos) + max(0.0, s_neg),
                      "tau_x_xent_grad": w * diff, "tau_x_log_grad": small_log_grad},
    }


def numeric_limits(s_pos, s_neg):
    values = evaluate(s_pos, s_neg, [TAU_LARGE, TAU_SMALL])
    big, small = ({k: float(v[i]) + 0.0 for k, v in values.items()} for i in (0, 1))
    return {
        "large_tau": {"tau": TAU_LARGE, "xent": big["xent"], "log": big["log"],
                      "tau_x_xent_grad": TAU_LARGE * big["xent_grad"],
                      "tau_x_log_grad": TAU_LARGE * big["log_grad"]},
        "small_tau": {"tau": TAU_SMALL, "tau_x_xent": TAU_SMALL * small["xent"],
                      "tau_x_log": TAU_SMALL * small["log"],
                      "tau_x_xent_grad": TAU_SMALL * small["xent_grad"],
                      "tau_x_log_grad": TAU_SMALL * small["log_grad"]},
    }


def many_negatives_limit(k=5):
    """tau -> inf with K negatives: log(K + 1) and (K + 1) log 2."""
    g = torch.Generator().manual_seed(0)
    u, v_pos, v_neg = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((8,), (8,), (k, 8)))
    return {"K": k, "tau": TAU_LARGE,
            "xent": float(nt_xent(u, v_pos, v_neg, TAU_LARGE)), "xent_limit": math.log(k + 1),
            "log": float(nt_log(u, v_pos, v_neg, TAU_LARGE)), "log_limit": (k + 1) * LOG2}


def print_limits(limits, many):
    print("\nLimits (our minimised losses; exam convention = minus these)")
    print(f"  tau -> inf: NT-Xent -> log 2 = {LOG2:.6f} (exam: -log 2), "
          f"NT-Log -> 2 log 2 = {2 * LOG2:.6f} (exam: 2 log 0.5); |grad_u| -> |v- - v+| / (2 tau)")
    print("  tau -> 0  : NT-Xent ~ max(0, s- - s+) / tau (-> 0 if s+ > s-, blows up if s- > s+), "
          "NT-Log ~ (max(0, -s+) + max(0, s-)) / tau")
    for item in limits:
        a, n = item["analytic"], item["numeric"]
        print(f"  [{item['name']}: s+={item['sim_pos']}, s-={item['sim_neg']}]")
        print(f"    tau={TAU_LARGE:g}: NT-Xent {n['large_tau']['xent']:.6f} (limit {a['large_tau']['xent']:.6f}), "
              f"NT-Log {n['large_tau']['log']:.6f} (limit {a['large_tau']['log']:.6f}), "
              f"tau*|grad| Xent {n['large_tau']['tau_x_xent_grad']:.4f} / Log {n['large_tau']['tau_x_log_grad']:.4f} "
              f"(limit {a['large_tau']['tau_x_xent_grad']:.4f})")
        print(f"    tau={TAU_SMALL:g}: tau*NT-Xent {n['small_tau']['tau_x_xent']:.5f} "
              f"(limit {a['small_tau']['tau_x_xent']:.5f}), tau*NT-Log {n['small_tau']['tau_x_log']:.5f} "
              f"(limit {a['small_tau']['tau_x_log']:.5f}), tau*|grad| Xent {n['small_tau']['tau_x_xent_grad']:.4f} "
              f"(limit {a['small_tau']['tau_x_xent_grad']:.4f}) / Log {n['small_tau']['tau_x_log_grad']:.4f} "
              f"(limit {a['small_tau']['tau_x_log_grad']:.4f})")
    print(f"  K={many['K']} negatives, tau={many['tau']:g}: NT-Xent {many['xent']:.6f} "
          f"(log(K+1) = {many['xent_limit']:.6f}), NT-Log {many['log']:.6f} "
          f"((K+1) log 2 = {many['log_limit']:.6f})")


def exam_claims():
    """The exam's remarks on Table 2, checked on a grid of (s+, s-)."""
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    sp, sn = torch.meshgrid(grid, grid, indexing="ij")
    fx, fl = f_xent(sp, sn), f_log(sn)
    gap = fx - fl
    zero = sp == 0
    return {
        "f_xent_equals_f_log_at_sim_pos_0": bool(torch.allclose(fx[zero], fl[zero])),
        "f_xent_above_f_log_iff_sim_pos_positive": bool(((gap > 0) == (sp > 0))[~zero].all()),
        "f_xent_decreases_as_sim_neg_grows": bool((fx[:, 1:] < fx[:, :-1]).all()),
        "f_log_decreases_as_sim_neg_grows": bool((fl[:, 1:] < fl[:, :-1]).all()),
        "f_xent_increases_as_sim_pos_grows": bool((fx[1:, :] > fx[:-1, :]).all()),
    }


# --------------------------------------------------------------------------- #
# Figures
# --------------------------------------------------------------------------- #

def sweep(taus):
    curves = {}
    for name, s_pos, s_neg in CONFIGS:
        curves[name] = evaluate(s_pos, s_neg, taus)
    return curves


def figure_losses(plt, taus, curves, limits, floor=1e-4):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    specs = [("xent", "NT-Xent loss", LOG2, "log 2", "tau_x_xent"),
             ("log", "NT-Log loss", 2 * LOG2, "2 log 2", "tau_x_log")]
    for ax, (key, title, big, big_label, small_key) in zip(axes, specs):
        for i, (item, (name, _, _)) in enumerate(zip(limits, CONFIGS)):
            c = f"C{i}"
            ax.loglog(taus, np.maximum(curves[name][key], floor), color=c, label=name)
            slope = item["analytic"]["small_tau"][small_key]
            if slope > 0:
                ax.loglog(taus, slope / taus, color=c, ls=":", lw=1)
        ax.axhline(big, color="k", ls="--", lw=1, label=f"tau -> inf: {big_label}")
        ax.set_ylim(floor, 2e3)
        ax.set_xlabel("tau")
        ax.set_ylabel("loss (minimised convention)")
        ax.set_title(f"{title} (dotted: c/tau as tau -> 0)", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Loss vs temperature, one positive and one negative (unit vectors); floored at 1e-4; "
                 "for s+ = s- NT-Xent is log 2 at every tau",
                 fontsize=10)
    fig.tight_layout()
    return fig


def figure_grads(plt, taus, curves, limits, floor=1e-8):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    specs = [("xent_grad", "NT-Xent", "tau_x_xent_grad"), ("log_grad", "NT-Log", "tau_x_log_grad")]
    for ax, (key, title, lim_key) in zip(axes, specs):
        for i, (item, (name, _, _)) in enumerate(zip(limits, CONFIGS)):
            c = f"C{i}"
            ax.loglog(taus, np.maximum(curves[name][key], floor), color=c, label=name)
            ax.loglog(taus, item["analytic"]["large_tau"][lim_key] / taus, color=c, ls="--", lw=1)
            small = item["analytic"]["small_tau"][lim_key]
            if small > 0:
                ax.loglog(taus, small / taus, color=c, ls=":", lw=1)
        ax.set_ylim(floor, 2e3)
        ax.set_xlabel("tau")
        ax.set_ylabel("||d loss / d u||")
        ax.set_title(f"{title}: dashed |v- - v+|/(2 tau) (tau -> inf), dotted tau -> 0", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Gradient norm w.r.t. the anchor vs temperature (floored at 1e-8)", fontsize=10)
    fig.tight_layout()
    return fig


def figure_f_map(plt):
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    sn, sp = torch.meshgrid(grid, grid, indexing="ij")        # rows: s-, columns: s+
    maps = [("f_Xent = -sigma(s- - s+)", f_xent(sp, sn).numpy()), ("f_Log = -sigma(s-)", f_log(sn).numpy())]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    levels = np.linspace(-0.8, -0.2, 7)
    for ax, (title, values) in zip(axes, maps):
        im = ax.imshow(values, origin="lower", extent=(-1, 1, -1, 1), vmin=-0.9, vmax=-0.1,
                       cmap="viridis", aspect="equal")
        cs = ax.contour(grid.numpy(), grid.numpy(), values, levels=levels, colors="w", linewidths=0.6,
                        linestyles="solid")
        ax.clabel(cs, fontsize=6, fmt="%.1f")
        ax.scatter([r[0] for r in EXAM_TABLE2], [r[1] for r in EXAM_TABLE2], c="r", s=14,
                   label="Table 2 points")
        ax.set_xlabel("sim(u, v+)")
        ax.set_ylabel("sim(u, v-)")
        ax.set_title(title + ", tau = 1", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Weight of the negative's direction in the exam's gradient", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- #

def main(argv=None):
    args = parse_args(argv)
    rows = table2()
    print_table2(rows)
    all_match = all(r["f_xent_match"] and r["f_log_match"] for r in rows)
    print(f"all {2 * len(rows)} entries reproduced to three decimals: {all_match}")

    limits = [{"name": name, "sim_pos": s_pos, "sim_neg": s_neg,
               "analytic": analytic_limits(s_pos, s_neg), "numeric": numeric_limits(s_pos, s_neg)}
              for name, s_pos, s_neg in CONFIGS]
    many = many_negatives_limit()
    print_limits(limits, many)
    claims = exam_claims()
    print("\nExam's remarks on Table 2, checked on a 201x201 grid of (s+, s-) in [-1, 1]^2:")
    for k, v in claims.items():
        print(f"  {k}: {v}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.logspace(math.log10(TAU_MIN), math.log10(TAU_MAX), 241)
    curves = sweep(taus)
    figures = {"loss_vs_tau.png": figure_losses(plt, taus, curves, limits),
               "grad_norm_vs_tau.png": figure_grads(plt, taus, curves, limits),
               "f_map.png": figure_f_map(plt)}
    for name, fig in figures.items():
        save_figure(fig, f"{args.out}/{name}", dpi=args.dpi)

    save_json({
        "convention": "losses are minimised; the exam's NT-Xent and NT-Log are log-likelihoods "
                      "(maximised), i.e. minus these values",
        "table2": rows,
        "table2_all_match": all_match,
        "limits_statements": {
            "tau_to_inf": "NT-Xent -> log 2 (exam: -log 2), NT-Log -> 2 log 2 (exam: 2 log 0.5); "
                          "||grad_u|| -> ||v- - v+|| / (2 tau) -> 0 for both; with K negatives "
                          "log(K+1) and (K+1) log 2",
            "tau_to_0": "NT-Xent ~ max(0, s- - s+) / tau (-> 0 if s+ > s-, blows up if s- > s+); "
                        "NT-Log ~ (max(0, -s+) + max(0, s-)) / tau",
        },
        "limits": limits,
        "many_negatives_large_tau": many,
        "exam_claims": claims,
        "figures": sorted(figures),
    }, f"{args.out}/analysis.json")
    print(f"\nwrote {', '.join(sorted(figures))} and analysis.json to {args.out}")
    if not all_match:
        print("error: Table 2 not reproduced", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""report.py: the results table and its sections from metrics.json files (the shell scripts that make
them are tests/test_scripts.py's). All inputs are hand-written files in temp folders; nothing is trained."""
import base64
import csv
import io
import json
import os
import random
import statistics

import pytest
from scipy import stats as scipy_stats

import report
from common.facts import GRID_AUDIO_SNR, GRID_IMAGE_P
from common.flags import RECIPES
from common.report.columns import COLUMNS
from common.report.format import fmt_p
from common.report.fusionmap import TEST_MIX, fold_mean
from common.report.stats import cluster_bootstrap

from conftest import SMALL_SYNTHETIC, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


REPRODUCE = os.path.join(ROOT, "scripts", "reproduce.sh")


DEFAULT_ARGS = {"seed": 0, "data_seed": 0, "val_fraction": 0.2, "batch_size": 64, "lr": 0.001,
                "max_epochs": 100, "patience": 5, "limit": None}


def write_run(root, name, *, model="image", fusion=None, seed=0, acc=0.9, loss=0.3, dataset="avdigits",
              synthetic=False, fingerprint="fp-a", limit=None, params=1000, seconds_per_epoch=2.0,
              best_epoch=5, epochs_run=10, regimes=None, config=True, **args):
    """Write root/name/metrics.json (and config.json unless config=False); returns the folder."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    test = {"labeled": True, "n": 100, "loss": loss, "acc": acc,
            "confusion": [[0] * 10 for _ in range(10)], "per_class_acc": [acc] * 10}
    if regimes is not None:
        test["per_regime_acc"] = dict(zip(("image_noisy", "audio_noisy", "both_mild"), regimes))
        test["per_regime_n"] = {"image_noisy": 30, "audio_noisy": 30, "both_mild": 40}
    metrics = {"model": model, "fusion": fusion, "dataset": dataset, "synthetic": synthetic,
               "fingerprint": fingerprint, "seed": seed, "data_seed": 0, "limit": limit,
               "best_epoch": best_epoch, "epochs_run": epochs_run, "stopped_early": True,
               "val": {"loss": loss, "acc": acc}, "test": test, "params": params,
               "train_seconds": seconds_per_epoch * epochs_run, "seconds_per_epoch": seconds_per_epoch,
               "samples_per_second": 100.0}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    if config:
        full = {**DEFAULT_ARGS, "seed": seed, "limit": limit, **args}
        if model == "multimodal":
            full = {"fusion": fusion, "fused_dim": 128, "hidden_dim": 256, "heads": 4, "init_from": [], **full}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"model": model, "args": full}, f)
    return folder


def run_report(capsys, *argv):
    code = report.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(markdown):
    """{first cell: [cells]} of every Markdown table row (header and rule lines excluded)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| model |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], []).append(cells)
    return rows


@pytest.fixture
def study(tmp_path):
    """Three seeds of image, audio and multimodal-concat, plus one seed of multimodal-late."""
    for s, (acc, loss) in enumerate([(0.90, 0.30), (0.92, 0.32), (0.94, 0.34)]):
        write_run(tmp_path, f"image-s{s}", seed=s, acc=acc, loss=loss, params=421642,
                  seconds_per_epoch=10.0 + s, best_epoch=4 + s, epochs_run=9 + s, regimes=(0.8, 0.95, 0.99))
    for s, (acc, loss) in enumerate([(0.70, 0.90), (0.72, 0.88), (0.74, 0.86)]):
        write_run(tmp_path, f"audio-s{s}", model="audio", seed=s, acc=acc, loss=loss, params=50000)
    for s, (acc, loss) in enumerate([(0.95, 0.40), (0.96, 0.41), (0.97, 0.42)]):
        write_run(tmp_path, f"multimodal-concat-s{s}", model="multimodal", fusion="concat", seed=s,
                  acc=acc, loss=loss, params=480000, regimes=(0.9, 0.93, 0.99))
    write_run(tmp_path, "multimodal-late-s0", model="multimodal", fusion="late", acc=0.93, loss=0.5)
    return tmp_path


def test_mean_std_n_and_order(study, capsys):
    code, out, err = run_report(capsys, study)
    assert code == 0, err
    rows = table_rows(out)
    image = rows["image-only"][0]
    # columns: model, dataset, n, test loss, test acc, exam, params, s/epoch, best epoch, epochs run
    assert image[1] == "avdigits" and image[2] == "3"
    # acc 0.90, 0.92, 0.94 -> 92 %, sample std sqrt(((-2)^2 + 0 + 2^2) / 2) = 2
    assert image[4] == "92.00 ± 2.00"
    assert image[3] == "**0.3200 ± 0.0200**"  # lowest mean loss of the table
    assert image[5] == "0.437 / 88.2%"  # the exam's single run, beside ours
    assert image[6] == "421,642"
    assert image[7] == "11.0 ± 1.0" and image[8] == "5.0 ± 1.0" and image[9] == "10.0 ± 1.0"
    assert rows["multimodal-late"][0][5] == "–"  # the exam measured no late fusion
    assert rows["audio-only"][0][4] == "72.00 ± 2.00" and rows["audio-only"][0][3] == "0.8800 ± 0.0200"
    concat = rows["multimodal-concat"][0]
    assert concat[4] == "**96.00 ± 1.00**"  # highest mean accuracy of the table
    assert not concat[3].startswith("**")
    late = rows["multimodal-late"][0]
    assert late[2] == "1" and late[4] == "93.00 ± –"
    assert out.count("**") == 4  # exactly one bold accuracy and one bold loss
    order = [line.split("|")[1].strip() for line in out.splitlines()
             if line.startswith("| ") and not line.startswith("| model")]
    assert order[:4] == ["image-only", "audio-only", "multimodal-concat", "multimodal-late"]


def test_per_regime_table(study, capsys):
    code, out, _ = run_report(capsys, study)
    assert code == 0
    assert "per noise regime" in out
    assert "image_noisy (n=30)" in out
    regime_rows = [r for r in table_rows(out)["image-only"] if len(r) == 5]
    assert regime_rows == [["image-only", "3", "80.00 ± 0.00", "95.00 ± 0.00", "99.00 ± 0.00"]]
    assert "multimodal-late" not in out.split("per noise regime")[1]  # it has no per-regime numbers


def test_datasets_never_mixed(tmp_path, capsys):
    for s, acc in enumerate([0.90, 0.92]):
        write_run(tmp_path, f"real-s{s}", seed=s, acc=acc, dataset="avdigits", fingerprint="fp-real")
    for s, acc in enumerate([0.50, 0.52]):
        write_run(tmp_path, f"syn-s{s}", seed=s, acc=acc, dataset="synthetic", synthetic=True,
                  fingerprint="fp-syn")
    code, out, _ = run_report(capsys, tmp_path)
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert len(headings) == 2
    assert "avdigits" in headings[0] and "SYNTHETIC" not in headings[0]
    assert "synthetic" in headings[1] and "SYNTHETIC data" in headings[1]
    image_rows = table_rows(out)["image-only"]
    assert [(r[1], r[2], r[4]) for r in image_rows] == [("avdigits", "2", "**91.00 ± 1.41**"),
                                                       ("synthetic", "2", "**51.00 ± 1.41**")]
    assert "71.00" not in out and "70.50" not in out  # never an average over both


@pytest.mark.parametrize("vary", ["fingerprint", "limit", "lr", "init_from"])
def test_other_data_or_config_kept_apart(tmp_path, capsys, vary):
    other = {"fingerprint": {"fingerprint": "fp-b"}, "limit": {"limit": 512},
             "lr": {"lr": 0.01}, "init_from": {"init_from": ["runs/image-s0/checkpoints/best.pt"]}}[vary]
    for s, acc in enumerate([0.90, 0.92]):
        write_run(tmp_path, f"a-s{s}", model="multimodal", fusion="gated", seed=s, acc=acc)
        write_run(tmp_path, f"b-s{s}", model="multimodal", fusion="gated", seed=s, acc=acc - 0.2, **other)
    code, out, _ = run_report(capsys, tmp_path)
    assert code == 0
    rows = [r for rs in table_rows(out).values() for r in rs if len(r) == 10]
    assert sorted(r[4].strip("*") for r in rows) == ["71.00 ± 1.41", "91.00 ± 1.41"]
    assert all(r[2] == "2" for r in rows)
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    if vary in ("fingerprint", "limit"):
        assert len(headings) == 2  # a different dataset: its own table
        assert ("first 512 pairs" in out) == (vary == "limit")
    else:
        assert len(headings) == 1  # same data, two configurations: two labelled rows
        assert any(f"{vary}=" in r[0] for r in rows)


def test_csv(study, capsys):
    code, out, _ = run_report(capsys, study, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["label"] for r in rows] == ["image-only", "audio-only", "multimodal-concat", "multimodal-late"]
    image = rows[0]
    assert image["dataset"] == "avdigits" and image["n"] == "3" and image["seeds"] == "0 1 2"
    assert float(image["test_acc_pct_mean"]) == pytest.approx(92.0)
    assert float(image["test_acc_pct_std"]) == pytest.approx(2.0)
    assert float(image["test_loss_mean"]) == pytest.approx(0.32)
    assert float(image["test_loss_std"]) == pytest.approx(0.02)
    assert int(image["params"]) == 421642
    assert float(image["acc_image_noisy_pct_mean"]) == pytest.approx(80.0)
    assert rows[3]["n"] == "1" and rows[3]["test_acc_pct_std"] == ""
    assert rows[2]["fusion"] == "concat" and rows[0]["fusion"] == ""


def test_out_writes_file(study, capsys, tmp_path_factory):
    _, shown, _ = run_report(capsys, study)
    out_dir = tmp_path_factory.mktemp("out")
    target = out_dir / "results.md"
    code, out, err = run_report(capsys, study, "--out", target)
    assert code == 0 and out == ""
    assert target.read_text() == shown
    assert os.listdir(out_dir) == ["results.md"]  # no temp file left behind


def test_skips_contrastive_and_unlabelled(study, capsys):
    folder = os.path.join(study, "contrastive-s0")
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"model": "contrastive", "dataset": "avdigits", "test": {"labeled": True, "retrieval": {}}}, f)
    unlabelled = write_run(study, "course-image-s0", dataset="course")
    with open(os.path.join(unlabelled, "metrics.json")) as f:
        m = json.load(f)
    m["test"] = {"labeled": False, "n": 500}
    with open(os.path.join(unlabelled, "metrics.json"), "w") as f:
        json.dump(m, f)
    code, out, err = run_report(capsys, study)
    assert code == 0
    assert "Skipped 2 run(s)" in out and "contrastive" in out
    assert "skipped 2 run(s)" in err
    assert "course" not in [r[1] for rs in table_rows(out).values() for r in rs if len(r) == 10]


def test_corrupt_metrics_warns_and_is_skipped(study, capsys):
    bad = os.path.join(study, "broken-s0", "metrics.json")
    os.makedirs(os.path.dirname(bad))
    with open(bad, "w") as f:
        f.write('{"model": "image", "test": ')
    code, out, err = run_report(capsys, study)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and bad in warnings[0]
    assert table_rows(out)["image-only"][0][2] == "3"


@pytest.mark.parametrize("case", ["empty", "missing", "only-unusable"])
def test_nothing_usable_exits_2(tmp_path, capsys, case):
    target = tmp_path / "runs"
    if case != "missing":
        target.mkdir()
    if case == "only-unusable":
        (target / "x").mkdir()
        (target / "x" / "metrics.json").write_text("not json")
    code, out, err = run_report(capsys, target)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(target) in errors[0]


# ---------------------------------------------------------------- scripts/reproduce.sh


def test_init_source_keeps_pretraining_runs_apart_and_seeds_together():
    from report import init_source
    assert init_source([]) is None
    a = init_source(["runs/contrastive-nt_xent-s0/checkpoints/best.pt"])
    b = init_source(["runs/contrastive-nt_xent-s1/checkpoints/best.pt"])
    c = init_source(["runs/contrastive-nt_log-s0/checkpoints/best.pt"])
    assert a == b == "contrastive-nt_xent" and c == "contrastive-nt_log"
    assert init_source(["r/image-s0/checkpoints/best.pt", "r/audio-s0/checkpoints/best.pt"]) == "audio+image"


def write_robustness(folder, image_acc, audio_acc, fresh=0.9, missing=None):
    """A robustness.json whose sweeps follow the given functions of the level."""
    from common.facts import AUDIO_SNR_LEVELS, IMAGE_P_LEVELS
    data = {"fresh": {"acc": fresh, "loss": 0.3},
            "image_sweep": [{"p": p, "acc": image_acc(p), "loss": 1.0} for p in IMAGE_P_LEVELS],
            "audio_sweep": [{"snr_db": s, "acc": audio_acc(s), "loss": 1.0} for s in AUDIO_SNR_LEVELS]}
    if missing is not None:
        data["missing"] = {k: {"acc": v, "loss": 1.0} for k, v in missing.items()}
    with open(os.path.join(folder, "robustness.json"), "w") as f:
        json.dump(data, f)


def test_robustness_section_areas_deltas_and_missing_view(tmp_path, capsys):
    for s in range(2):
        folder = write_run(tmp_path, f"multimodal-concat-s{s}", model="multimodal", fusion="concat", seed=s)
        # linear in p: the area is the mean of 100 (1 - p) over [0, 0.95] = 52.5, the same for both seeds
        write_robustness(folder, lambda p: 1 - p, lambda snr: 0.8 + 0.1 * s,
                         missing={"both_mild": 0.9, "image_zeros": 0.5 + 0.1 * s, "audio_zeros": 0.9})
    late = write_run(tmp_path, "multimodal-late-s0", model="multimodal", fusion="late")
    write_robustness(late, lambda p: 0.6, lambda snr: 0.7, fresh=0.85,
                     missing={"both_mild": 0.9, "image_zeros": 0.6, "image_surviving_head": 0.8})
    write_run(tmp_path, "image-s0")  # no robustness.json: in the main table only
    code, out, err = run_report(capsys, tmp_path)
    assert code == 0, err
    section = out[out.index("### Robustness"):]
    rows = table_rows(section)
    concat_area = rows["multimodal-concat"][0]
    # n, test acc, fresh, image area, delta, audio area, delta
    assert concat_area[1] == "2" and concat_area[3] == "90.00 ± 0.00"
    assert concat_area[4] == "52.50 ± 0.00" and concat_area[5] == "-7.50"  # 52.5 - 60
    assert concat_area[6] == "85.00 ± 7.07" and concat_area[7] == "+15.00"  # mean of 80 and 90, minus 70
    late_area = rows["multimodal-late"][0]
    assert late_area[4] == "60.00 ± –" and late_area[5] == "–"
    assert "image-only" not in rows
    missing = rows["multimodal-concat"][-1]
    assert missing[2] == "90.0 ± 0.0" and missing[3] == "55.0 ± 7.1" and missing[4] == "–"
    assert rows["multimodal-late"][-1][5] == "80.0 ± –"  # image gone: the audio head alone
    assert os.path.exists(tmp_path / "robustness-image.png") and os.path.exists(tmp_path / "robustness-audio.png")


def test_no_figures_flag_and_bad_figure_folder(tmp_path, capsys):
    folder = write_run(tmp_path / "runs", "multimodal-late-s0", model="multimodal", fusion="late")
    write_robustness(folder, lambda p: 0.6, lambda snr: 0.7)
    code, _, _ = run_report(capsys, tmp_path / "runs", "--no-figures")
    assert code == 0 and not list((tmp_path / "runs").glob("*.png"))
    (tmp_path / "file").write_text("x")
    code, _, err = run_report(capsys, tmp_path / "runs", "--figures", tmp_path / "file" / "sub")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: cannot write figures to")


def test_mcnemar_exact_on_known_tables():
    # b = 1, c = 9: p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    assert report.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert report.mcnemar_exact(9, 1) == report.mcnemar_exact(1, 9)  # two-sided: symmetric
    assert report.mcnemar_exact(5, 5) == 1.0 and report.mcnemar_exact(0, 0) == 1.0
    assert report.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    # one-sided, first model better: P(X <= c); b = 9, c = 1 gives 11 / 1024, the other way round P(X <= 9) = 1 - 1 / 1024
    assert report.mcnemar_one_sided(9, 1) == pytest.approx(11 / 1024)
    assert report.mcnemar_one_sided(1, 9) == pytest.approx(1 - 1 / 1024)


def test_holm_adjusts_in_step_down_order():
    adjusted = report.holm([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> kept monotone: 0.06)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert report.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_mean_std_and_interval_with_one_and_three_seeds():
    assert report.mean_std([0.9]) == (0.9, None, 1)
    mean, std, n = report.mean_std([0.90, 0.92, 0.94])
    assert (mean, n) == (pytest.approx(0.92), 3) and std == pytest.approx(0.02)
    assert report.mean_ci([2.0]) == (2.0, None)
    mean, half = report.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / 3 ** 0.5)  # t(0.975, 2) = 4.3027 (t tables)
    # five seeds (df 4: 2.7764) and eleven (df 10: 2.2281, where a normal quantile would say 1.96)
    assert report.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])[1] == pytest.approx(2.776445 * 1.5811388 / 5 ** 0.5)
    assert report.mean_ci([float(x) for x in range(11)])[1] == pytest.approx(2.228139 * 3.3166248 / 11 ** 0.5)


def write_predictions(folder, correct):
    with open(os.path.join(folder, "predictions_test.csv"), "w") as f:
        f.write("id,digit,label\n")
        for i, ok in enumerate(correct):
            f.write(f"{i},{3 if ok else 4},3\n")


def test_paired_comparisons_seed_by_seed(tmp_path, capsys):
    # concat right on the first 90 of 100 pairs for each seed; gated right on 80 of them plus 18 others
    for s in range(3):
        concat = write_run(tmp_path, f"multimodal-concat-s{s}", model="multimodal", fusion="concat", seed=s, acc=0.9)
        write_predictions(concat, [i < 90 for i in range(100)])
        gated = write_run(tmp_path, f"multimodal-gated-s{s}", model="multimodal", fusion="gated", seed=s, acc=0.98)
        write_predictions(gated, [i < 80 or i >= 82 for i in range(100)])
    code, out, err = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0, err
    section = out[out.index("### Paired against multimodal-concat"):]
    row = table_rows(section)["multimodal-gated"][0]
    # per seed: only gated right on ids 90-99 (b = 10), only concat right on ids 80-81 (c = 2)
    b = sum(1 for i in range(100) if (i < 80 or i >= 82) and not i < 90)
    c = sum(1 for i in range(100) if i < 90 and not (i < 80 or i >= 82))
    assert (b, c) == (10, 2)
    assert row[1] == "3" and row[2] == "+8.00 ± 0.00" and row[3] == ", ".join([f"{b}/{c}"] * 3)
    p = report.mcnemar_exact(b, c)  # 2 * (1 + 12 + 66) / 4096 = 0.0386: every seed the same
    assert p == pytest.approx(158 / 4096) and float(row[4]) == pytest.approx(p, rel=0.05)
    assert row[6] == "yes, better"  # one comparison: Holm leaves p as it is
    assert row[7] == ", ".join([f"{p:.2g}"] * 3)


def gated_against_concat(tmp_path, capsys, gated_right_below):
    """The gated row of the paired table against concat, for seeds 0, 1, ...: concat right on test pairs
    0-79 of 100 at every seed, gated right on pairs 0 to gated_right_below[seed] - 1."""
    for s, right_below in enumerate(gated_right_below):
        concat = write_run(tmp_path, f"multimodal-concat-s{s}", model="multimodal", fusion="concat", seed=s)
        write_predictions(concat, [i < 80 for i in range(100)])
        gated = write_run(tmp_path, f"multimodal-gated-s{s}", model="multimodal", fusion="gated", seed=s)
        write_predictions(gated, [i < right_below for i in range(100)])
    code, out, err = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0, err
    return table_rows(out[out.index("### Paired against multimodal-concat"):])["multimodal-gated"][0]


def test_a_difference_must_hold_at_every_seed(tmp_path, capsys):
    """One seed with a large difference and one with none: not significant, whatever pooling would say."""
    row = gated_against_concat(tmp_path, capsys, [95, 80])
    assert row[3] == "15/0, 0/0" and row[4] == "1" and row[6] == "no"


def test_seeds_that_disagree_in_direction_are_not_a_difference(tmp_path, capsys):
    """Gated far better than concat at seed 0 and far worse at seed 1: each seed alone is significant,
    but not in one direction, so the model is not called better or worse."""
    row = gated_against_concat(tmp_path, capsys, [95, 65])
    assert row[3] == "15/0, 0/15"
    assert [float(p) for p in row[7].split(", ")] == pytest.approx([2 / 2 ** 15] * 2, rel=0.05)  # each seed alone
    # better: the largest one-sided p is seed 1's, 1 - 2^-15; worse: seed 0's, the same; p = 2 x that, capped
    assert row[4] == "1" and row[6] == "no"


def write_contrastive_run(root, name, *, loss="nt_xent", tau=0.1, final_tau=None, learn_tau=False, digit1=(0.4, 0.3),
                          digit5=(0.8, 0.7), recall1=(0.002, 0.001), probe=(0.9, 0.6, 0.92), seed=0):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    retrieval = {"n": 1000, "recall@1_img2aud": recall1[0], "recall@1_aud2img": recall1[1], "recall@1_ceiling": 0.01,
                 "digit@1_img2aud": digit1[0], "digit@1_aud2img": digit1[1],
                 "digit@5_img2aud": digit5[0], "digit@5_aud2img": digit5[1]}
    metrics = {"model": "contrastive", "loss": loss, "similarity": "cosine", "tau": final_tau or tau,
               "learn_tau": learn_tau, "bias": 0.0, "learn_bias": False, "dataset": "avdigits", "synthetic": False,
               "fingerprint": "fp-a", "seed": seed, "data_seed": 0, "limit": None, "best_epoch": 4, "epochs_run": 6,
               "stopped_early": False, "val": {"loss": 3.0, "probe": {}},
               "test": {"labeled": True, "retrieval": retrieval,
                        "probe": dict(zip(("image", "audio", "both"), probe))},
               "params": 10, "train_seconds": 60.0, "seconds_per_epoch": 10.0, "samples_per_second": 100.0}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model": "contrastive", "args": {**DEFAULT_ARGS, "seed": seed, "loss": loss, "tau": tau,
                                                     "learn_tau": learn_tau, "max_epochs": 6, "patience": 3,
                                                     "batch_size": 128}}, f)


def test_contrastive_sweep_and_label_efficiency_tables_and_figures(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_contrastive_run(runs, "contrastive-nt_xent-t0.1-s0", tau=0.1)
    write_contrastive_run(runs, "contrastive-nt_xent-t1-s0", tau=1.0, digit1=(0.2, 0.25))
    write_contrastive_run(runs, "contrastive-nt_log-learn-s0", loss="nt_log", tau=0.1, final_tau=0.0312,
                          learn_tau=True, probe=(0.8, 0.5, 0.85))
    pretrained = ["runs/contrastive-nt_xent-t0.1-s0/checkpoints/best.pt"]
    for s, (scratch, pre) in enumerate([(0.50, 0.70), (0.60, 0.80)]):
        write_run(runs, f"concat-f0.01-s{s}", model="multimodal", fusion="concat", seed=s, acc=scratch,
                  label_fraction=0.01)
        write_run(runs, f"concat-f0.01-pre-s{s}", model="multimodal", fusion="concat", seed=s, acc=pre,
                  label_fraction=0.01, init_from=pretrained)
    write_run(runs, "concat-s0", model="multimodal", fusion="concat", acc=0.95)
    write_run(runs, "concat-pre-s0", model="multimodal", fusion="concat", acc=0.96, init_from=pretrained)
    code, out, err = run_report(capsys, runs, "--figures", tmp_path / "figures")
    assert code == 0, err
    assert "Skipped" not in out and "9 run(s)" in out
    rows = table_rows(out)
    xent = rows["contrastive-nt_xent-t0.1-s0"][0]
    assert xent[1:5] == ["nt_xent", "0.1", "0.00", "6 (4)"]
    assert xent[5:] == ["40.0 / 30.0", "80.0 / 70.0", "0.20 / 0.10", "1.00", "90.0", "60.0", "92.0"]
    assert rows["contrastive-nt_xent-t1-s0"][0][5] == "20.0 / 25.0"
    assert rows["contrastive-nt_log-learn-s0"][0][2] == "learned: 0.1 → 0.0312"
    assert "all with batch_size=128, max_epochs=6, patience=3, lr=0.001, similarity=cosine, proj_dim=64" in out
    # label efficiency: F rows, scratch and pre-trained means over seeds, and their difference
    assert rows["0.01"][0][1:] == ["55.00 ± 7.07 (n=2)", "75.00 ± 7.07 (n=2)", "+20.00"]
    assert rows["1"][0][1:] == ["95.00 ± – (n=1)", "96.00 ± – (n=1)", "+1.00"]
    assert "from contrastive-nt_xent-t0.1" in out
    for name in ("contrastive_sweep.png", "label_efficiency.png", "fusion_accuracy.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0, name


def test_two_folders_share_a_table_and_only_the_exam_setup_gets_the_exams_numbers(tmp_path, capsys):
    study, beyond = tmp_path / "study", tmp_path / "beyond"
    for s in (0, 1):
        write_run(study, f"multimodal-concat-s{s}", model="multimodal", fusion="concat", seed=s, acc=0.94)
        write_run(beyond, f"multimodal-concat-mel-s{s}", model="multimodal", fusion="concat", seed=s, acc=0.98,
                  audio_frontend="mel", mel_channels=[32, 64])
        write_run(beyond, f"multimodal-concat-mdrop0.3-s{s}", model="multimodal", fusion="concat", seed=s, acc=0.93,
                  modality_dropout=0.3)
    code, out, err = run_report(capsys, study, beyond, "--no-figures")
    assert code == 0, err
    assert "6 run(s)" in out
    rows = {name.split(" (")[0] + (" mel" if "mel" in name else " mdrop" if "modality_dropout=0.3" in name else ""): r
            for name, rs in table_rows(out).items() for r in rs if len(r) == 10 and name.startswith("multimodal")}
    assert set(rows) == {"multimodal-concat", "multimodal-concat mel", "multimodal-concat mdrop"}
    assert rows["multimodal-concat"][5] == "0.278 / 94.5%"  # the exam's concat, beside the exam-setup row only
    assert rows["multimodal-concat mel"][5] == "–" and rows["multimodal-concat mdrop"][5] == "–"
    assert rows["multimodal-concat mel"][4] == "**98.00 ± 0.00**"  # the best of the table
    # the same folder twice counts each run once
    code, out, _ = run_report(capsys, study, study, "--no-figures")
    assert code == 0 and "2 run(s)" in out


def test_delta_late_pairs_each_row_with_the_late_row_trained_the_same_way(tmp_path, capsys):
    study, beyond = tmp_path / "study", tmp_path / "beyond"
    for folder, name, fusion, extra, image_acc in [
            (study, "multimodal-concat-s0", "concat", {}, 0.5),
            (study, "multimodal-add-s0", "add", {}, 0.4),
            (study, "multimodal-late-s0", "late", {}, 0.6),
            (beyond, "multimodal-late-mdrop0.3-s0", "late", {"modality_dropout": 0.3}, 0.8),
            (beyond, "multimodal-concat-mdrop0.3-s0", "concat", {"modality_dropout": 0.3}, 0.7),
            (beyond, "multimodal-concat-mel-s0", "concat", {"audio_frontend": "mel"}, 0.65)]:
        run = write_run(folder, name, model="multimodal", fusion=fusion, **extra)
        write_robustness(run, lambda p, a=image_acc: a, lambda snr: 0.9)
    code, out, err = run_report(capsys, study, beyond, "--no-figures")
    assert code == 0, err
    rows = table_rows(out[out.index("### Robustness"):])
    # image-sweep area and Δ late: the exam-setup rows against the exam-setup late row (60), the modality-dropout
    # concat against the modality-dropout late (80), the mel concat (no mel late) against the exam-setup late
    assert rows["multimodal-concat"][0][4:6] == ["50.00 ± –", "-10.00"]
    assert rows["multimodal-add"][0][4:6] == ["40.00 ± –", "-20.00"]
    assert rows["multimodal-concat (modality_dropout=0.3)"][0][4:6] == ["70.00 ± –", "-10.00"]
    assert rows["multimodal-concat (audio_frontend=mel)"][0][4:6] == ["65.00 ± –", "+5.00"]
    assert rows["multimodal-late (modality_dropout=0.3)"][0][5] == "–"
    # the paired tests and the exam's numbers: only against / beside the rows trained as the exam did
    assert out.count("### Paired against") == 0  # no predictions_test.csv here
    exam_cells = {name: r[5] for name, rs in table_rows(out[:out.index("### Robustness")]).items() for r in rs
                  if len(r) == 10}
    assert exam_cells["multimodal-concat"] == "0.278 / 94.5%" and exam_cells["multimodal-add"] == "0.276 / 94.9%"
    assert exam_cells["multimodal-concat (audio_frontend=mel)"] == "–"


def test_a_row_trained_with_other_flags_gets_no_exam_numbers(tmp_path, capsys):
    write_run(tmp_path, "multimodal-concat-lr-s0", model="multimodal", fusion="concat", lr=0.01)
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    assert [r[5] for rs in table_rows(out).values() for r in rs if len(r) == 10] == ["–"]


def test_accuracy_figure_shows_each_run_beside_the_mean(tmp_path):
    """A fusion with one failed seed (11%) and two good ones: the bar is the mean, and a dot for every run
    keeps the failed one in sight, inside the axis."""
    for s, acc in enumerate([0.11, 0.96, 0.95]):
        write_run(tmp_path, f"multimodal-attention-tokens-s{s}", model="multimodal", fusion="attention-tokens",
                  seed=s, acc=acc, regimes=(acc, acc, acc))
    runs, _, _ = report.read_runs(str(tmp_path))
    [(_, groups)] = report.group_runs(runs)
    fig = report.accuracy_figure(groups, "made-up runs")
    for ax in fig.axes:  # the whole set, then one panel per regime
        [dots] = [line for line in ax.lines if line.get_marker() == "."]  # the error bars' caps are lines too
        assert sorted(dots.get_xdata()) == pytest.approx([11.0, 95.0, 96.0])
        assert ax.get_xlim()[0] <= 11.0
        assert ax.patches[0].get_width() == pytest.approx((11 + 96 + 95) / 3)


def test_seconds_per_epoch_name_their_device_when_a_table_mixes_machines(tmp_path, capsys):
    for name, fusion, device, seconds in [("multimodal-concat-s0", "concat", "cpu", 21.0),
                                          ("multimodal-late-s0", "late", "cuda:0", 5.0)]:
        folder = write_run(tmp_path, name, model="multimodal", fusion=fusion, seconds_per_epoch=seconds)
        config = json.loads(open(os.path.join(folder, "config.json")).read())
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({**config, "device": device}, f)
    code, out, err = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0, err
    rows = table_rows(out)
    assert rows["multimodal-concat"][0][7] == "21.0 ± – (cpu)"
    assert rows["multimodal-late"][0][7] == "5.0 ± – (cuda)"
    assert "2 kinds of device (cpu, cuda" in out
    os.remove(os.path.join(tmp_path, "multimodal-late-s0", "metrics.json"))  # one machine left: no device named
    code, out, err = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0 and table_rows(out)["multimodal-concat"][0][7] == "21.0 ± –" and "kinds of device" not in out


def test_seed_by_seed_table_counts_failed_seeds_by_its_rule(tmp_path, capsys):
    """Five exam seeds of attention-tokens (one at chance) beside five under --recipe stable: the
    seed-by-seed table names the recipe, the median, the worst seed and the failed ones (more than 5
    points below the model's best seed in the table); a study without a second recipe has no such table."""
    stable = RECIPES["stable"].flags
    exam_accs, stable_accs = (0.111, 0.9667, 0.9652, 0.955, 0.90), (0.965, 0.968, 0.96, 0.97, 0.962)
    for seed, (a, b) in enumerate(zip(exam_accs, stable_accs)):
        for name, acc, extra in ((f"at-s{seed}", a, {}), (f"at-stable-s{seed}", b, {"recipe": "stable", **stable})):
            folder = write_run(tmp_path / "runs", name, model="multimodal", fusion="attention-tokens", seed=seed,
                               acc=acc, **extra)
            write_predictions(folder, [i < int(100 * acc) for i in range(100)])  # the first 100 acc pairs right
    code, out, _ = run_report(capsys, tmp_path / "runs", "--no-figures")
    assert code == 0
    rows = table_rows(out.split("Seed by seed")[1].split("\n\n")[1])
    exam, stable_row = rows["multimodal-attention-tokens"][0], rows["multimodal-attention-tokens (recipe=stable)"][0]
    # best seed of the model: 97.00 (stable seed 3); failed: below 92.00
    assert exam[1:] == ["5", "77.96 ± 37.47", "95.50", "11.10 (0)", "2 / 5 (seed 0, 4)",
                        "0: 11.10, 1: 96.67, 2: 96.52, 3: 95.50, 4: 90.00"]
    assert stable_row[3:6] == ["96.50", "96.00 (2)", "0 / 5"]
    # the recipe against the exam's, seed by seed: stable right where exam is, and more (b/c = extra/0)
    [paired] = table_rows(out.split("Each recipe against the exam's")[1].split("\n\n")[1])[
        "multimodal-attention-tokens (recipe=stable)"]
    extra = [int(100 * b) - int(100 * a) for a, b in zip(exam_accs, stable_accs)]
    assert paired[1] == "5" and paired[3] == ", ".join(f"{e}/0" for e in extra)
    write_run(tmp_path / "plain", "at-s0", model="multimodal", fusion="attention-tokens", seed=0, acc=0.5)
    code, out, _ = run_report(capsys, tmp_path / "plain", "--no-figures")
    assert code == 0 and "Seed by seed" not in out


def test_a_recipe_with_another_selection_rule_is_paired_with_the_exam_row(tmp_path, capsys):
    """Concat under --recipe stable --select val_acc is named by both, and still paired with the exam's
    concat (the selection rule is part of the recipe); one with another learning rate is not."""
    stable = RECIPES["stable"].flags
    for seed in (0, 1):
        for name, acc, extra in ((f"c-s{seed}", 0.90, {}),
                                 (f"c-acc-s{seed}", 0.93, {"recipe": "stable", **stable, "select": "val_acc"}),
                                 (f"c-lr-s{seed}", 0.95, {"recipe": "stable", **stable, "lr": 3e-3})):
            folder = write_run(tmp_path, name, model="multimodal", fusion="concat", seed=seed, acc=acc, **extra)
            write_predictions(folder, [i < int(100 * acc) for i in range(100)])
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    paired = table_rows(out.split("Each recipe against the exam's")[1].split("\n\n")[1])
    name = "multimodal-concat (lr=0.001, select=val_acc, recipe=stable)"  # lr named: the third row differs in it
    assert list(paired) == [name]
    assert paired[name][0][1:4] == ["2", "+3.00 ± 0.00", "3/0, 3/0"]


def test_held_out_speaker_runs_get_their_own_tables_and_the_unseen_voices_summary(tmp_path, capsys):
    """Audio-only on the synthetic split by take and with spk0 / spk1 held out (one epoch each):
    evaluate.py re-renders a held-out test split (its fingerprint check passes); the report gives each
    fold its own table, named, without the exam's numbers, and one unseen-voices row."""
    from conftest import SMALL_SYNTHETIC, run_script
    runs = tmp_path / "runs"
    for name, extra in (("audio-s0", []), ("audio-spk0-s0", ["--holdout-speaker", "spk0"]),
                        ("audio-spk1-s0", ["--holdout-speaker", "spk1"])):
        out = run_script(["train_audio.py", *SMALL_SYNTHETIC, "--runs-dir", str(runs), "--name", name,
                          "--max-epochs", "1", "--batch-size", "16", "--num-threads", "1", *extra])
        assert out.returncode == 0, out.stderr
    out = run_script(["evaluate.py", str(runs / "audio-spk0-s0"), "--sweeps", "audio"])
    assert out.returncode == 0, out.stderr
    out = run_script(["evaluate_contrastive.py", "raw", *SMALL_SYNTHETIC, "--holdout-speaker", "spk0",
                      "--fractions", "1", "--label-seeds", "0", "--num-threads", "1",
                      "--out", str(runs / "floor-spk0/probes.json")])
    assert out.returncode == 0, out.stderr
    assert json.loads((runs / "floor-spk0/probes.json").read_text())["holdout_speaker"] == "spk0"
    code, text, _ = run_report(capsys, runs, "--no-figures")
    assert code == 0
    assert "Dataset: synthetic, speaker spk0 unseen" in text and "Dataset: synthetic, speaker spk1 unseen" in text
    [floor_heading] = [line for line in text.splitlines() if line.startswith("## Problem 2: frozen features")]
    assert "Dataset: synthetic, speaker spk0 unseen (" in floor_heading  # the fold's floor is named as its fold
    accs = {}
    for name in ("audio-s0", "audio-spk0-s0", "audio-spk1-s0"):
        accs[name] = 100 * json.loads((runs / name / "metrics.json").read_text())["test"]["acc"]
    [row] = table_rows(text.split("## Unseen voices")[1])["audio-only"]
    mean = (accs["audio-spk0-s0"] + accs["audio-spk1-s0"]) / 2
    assert row[1:] == [f"{accs['audio-spk0-s0']:.2f} ± –", f"{accs['audio-spk1-s0']:.2f} ± –",
                       f"{mean:.2f} ± {statistics.stdev([accs['audio-spk0-s0'], accs['audio-spk1-s0']]):.2f} (n=2)",
                       f"{accs['audio-s0']:.2f} ± –"]


def test_the_fake_runs_here_have_the_fields_a_real_run_writes(tmp_path):
    """write_run's metrics.json and config.json are what these tests feed report.py: their fields must be
    the fields a training script writes (a real one-epoch run), so a field the writer adds or renames
    shows up here, not first in a report of real runs."""
    from conftest import SMALL_SYNTHETIC, run_script
    out = run_script(["train_multimodal.py", *SMALL_SYNTHETIC, "--runs-dir", str(tmp_path), "--name", "real",
                      "--fusion", "concat", "--max-epochs", "1", "--batch-size", "16", "--num-threads", "1"])
    assert out.returncode == 0, out.stderr
    fake = write_run(tmp_path, "fake", model="multimodal", fusion="concat", regimes=(0.5, 0.5, 0.5))
    real_m, fake_m = (json.loads(open(os.path.join(d, "metrics.json")).read()) for d in (tmp_path / "real", fake))
    assert set(fake_m) <= set(real_m), set(fake_m) - set(real_m)
    assert set(fake_m["test"]) <= set(real_m["test"]), set(fake_m["test"]) - set(real_m["test"])
    read = {c.source[0] for c in COLUMNS}
    assert read <= set(fake_m), read - set(fake_m)  # every field the report's columns read is in the fake
    real_c, fake_c = (json.loads(open(os.path.join(d, "config.json")).read()) for d in (tmp_path / "real", fake))
    assert set(fake_c["args"]) <= set(real_c["args"]), set(fake_c["args"]) - set(real_c["args"])


def test_bad_out_paths_of_report_and_data_commands(finished, tmp_path):
    (tmp_path / "file").write_text("x")
    bad = str(tmp_path / "file" / "out")
    out = run_cli(["report.py", str(finished), "--out", bad + "/results.md", "--no-figures"])
    assert out.returncode == 2 and "Traceback" not in out.stderr and "is a file, not a folder" in out.stderr
    for command in ("wav", "show"):
        target = bad if command == "wav" else bad + "/pairs.png"
        out = run_cli(["-m", "common.data", command, *SMALL_SYNTHETIC, "--out", target])
        assert out.returncode != 0 and "Traceback" not in out.stderr
        assert "is a file, not a folder" in out.stderr.strip().splitlines()[-1]
        assert "building" not in out.stderr  # refused before the data


def test_9_delta_late_only_against_a_late_row_trained_the_same_way(tmp_path, capsys):
    from test_report import write_robustness, write_run

    import report
    for name, fusion, extra in (("multimodal-late-mdrop0.3-s0", "late", {"modality_dropout": 0.3}),
                                ("multimodal-concat-mel-s0", "concat", {"audio_frontend": "mel"})):
        write_robustness(write_run(tmp_path, name, model="multimodal", fusion=fusion, **extra), lambda p: 0.5,
                         lambda snr: 0.9)
    assert report.main([str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("| multimodal-concat (audio_frontend=mel) | 1 |")
             and "–" in line and line.count("|") == 9]
    assert row.split("|")[6].strip() == "–"  # no late row trained like it, none trained as the exam did


def test_10_damaged_side_files_are_named(tmp_path, capsys):
    from pathlib import Path

    from test_report import write_robustness, write_run

    import report
    runs = [Path(write_run(tmp_path, f"multimodal-{f}-s0", model="multimodal", fusion=f)) for f in ("concat", "gated")]
    for run in runs:
        ids = range(20)
        (run / "predictions_test.csv").write_text("id,digit,label\n" + "".join(f"{i},{i % 10},{i % 10}\n" for i in ids))
    truncated = runs[1] / "predictions_test.csv"
    truncated.write_text("\n".join(truncated.read_text().splitlines()[:8]) + "\n")
    write_robustness(str(runs[0]), lambda p: float("nan"), lambda snr: 0.9)
    assert report.main([str(tmp_path), "--no-figures"]) == 0
    captured = capsys.readouterr()
    assert "Left out of these tests: multimodal-gated seed 0" in captured.out
    assert "image_sweep does not hold a number for each of the levels" in captured.err


def test_14_wrong_figure_format_and_unmakeable_out_are_one_line(finished, tmp_path):
    out = run_cli(["-m", "common.data", "show", *SMALL_SYNTHETIC, "--out", str(tmp_path / "x.txt")])
    assert out.returncode == 2 and "needs one of the extensions" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(["report.py", str(finished), "--out", "/proc/nope/x.md", "--no-figures"])
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.strip().startswith("error: --out")


def test_the_cluster_bootstrap_widens_by_the_design_effect_of_a_known_clustering():
    """200 recordings heard in 16 pairs each, every pair of a recording right or wrong together: the
    design effect is the cluster size and the interval sqrt(16) = 4 times wider than the iid one; with
    one pair per recording the two agree."""
    rng = random.Random(3)
    right = [rng.random() < 0.7 for _ in range(200)]
    acc, low, high, deff = cluster_bootstrap([r for r in right for _ in range(16)],
                                             [c for c in range(200) for _ in range(16)])
    iid_width = 2 * 1.96 * (acc * (1 - acc) / 3200) ** 0.5
    assert abs(deff - 16) < 16 * 0.2 and abs((high - low) / iid_width - 4) < 4 * 0.15
    assert low < acc < high
    _, low1, high1, deff1 = cluster_bootstrap(right, list(range(200)))
    assert abs(deff1 - 1) < 0.2 and abs((high1 - low1) / (2 * 1.96 * (acc * (1 - acc) / 200) ** 0.5) - 1) < 0.15
    assert cluster_bootstrap(right, list(range(200))) == (acc, low1, high1, deff1)  # seeded


def test_p_values_below_the_floor_are_not_printed_as_digits():
    assert fmt_p(1e-316) == "< 1e-16" and fmt_p(0.0) == "< 1e-16" and fmt_p(0.031) == "0.031"


def test_runs_with_recordings_get_intervals_over_recordings(tmp_path, capsys):
    """predictions_test.csv's recording column feeds the per-run table and the paired column."""
    for seed in (0, 1):
        for name, acc in (("c", 0.9), ("a", 0.6)):
            folder = write_run(tmp_path, f"{name}-s{seed}", model="multimodal", fusion="concat" if name == "c" else
                               "add", seed=seed, acc=acc)
            with open(os.path.join(folder, "predictions_test.csv"), "w") as f:
                f.write("id,digit,label,recording\n")
                for i in range(100):
                    f.write(f"{i},{1 if i < int(100 * acc) else 0},1,1_spk{i // 10}_0\n")
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    section = out.split("intervals that count recordings")[1]
    rows = table_rows(section.split("\n\n")[1])
    seed0 = rows["multimodal-concat"][0]  # 10 recordings of 10 pairs each: 9 all right, 1 all wrong
    assert seed0[1:3] == ["0", "90.00"] and seed0[-2] == "10" and seed0[-1] == "–" and float(seed0[5]) > 5
    low, high = (float(x) for x in seed0[3].strip("[]").split(", "))
    iid_low, iid_high = (float(x) for x in seed0[4].strip("[]").split(", "))
    assert low < 90 < high and high - low > 2 * (iid_high - iid_low)
    paired = out.split("### Paired against multimodal-concat")[1]
    assert "Δ per seed, 95% over recordings" in paired and "-30.00 [" in paired


def test_the_fusion_map_reads_regret_against_the_better_single_view(tmp_path, capsys):
    """A fold with an image-only, an audio-only and a fused run on the same 8 test pairs: the regret is
    the fused accuracy minus the better single view at each cell, the oracle takes either view's right
    pairs, and the map and its table say so."""
    def cells(view_levels, correct_of):
        out = []
        for levels in view_levels:
            bits = correct_of(*levels)
            packed = base64.b64encode(bytes([int("".join("1" if b else "0" for b in bits), 2)])).decode()
            out.append({**{k: v for k, v in zip(("p", "snr_db"), levels) if v is not None},
                        "acc": sum(bits) / 8, "correct": packed})
        return out
    image_right = [True] * 6 + [False] * 2    # 75%
    audio_right = [False] * 4 + [True] * 4    # 50%, right where the image is wrong on two pairs
    fused_right = [True] * 4 + [False] * 4    # 50%: worse than the image alone
    grids = {"image": cells([(p, None) for p in GRID_IMAGE_P], lambda p, s: image_right),
             "audio": cells([(None, s) for s in GRID_AUDIO_SNR], lambda p, s: audio_right),
             "multimodal": cells([(p, s) for p in GRID_IMAGE_P for s in GRID_AUDIO_SNR], lambda p, s: fused_right)}
    for model, grid in grids.items():
        folder = write_run(tmp_path, f"{model}-s0", model=model, fusion="concat" if model == "multimodal" else None,
                           seed=0, acc=0.5, holdout_speaker="spk1")
        views = ["image", "audio"] if model == "multimodal" else [model]
        with open(os.path.join(folder, "robustness.json"), "w") as f:
            json.dump({"grid": {"views": views, "n": 8, "cells": grid}}, f)
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    section = out.split("## The fusion map on unheard voices")[1].split("\n\n")
    rows = table_rows(section[4])
    # regret: 50 - max(75, 50) = -25 everywhere; oracle: image or audio right on all 8 pairs -> 50 - 100
    assert rows["concat [exam]"][0][2:7] == ["-25.00", "p 0, clean", "-25.00", "-25.00", "-50.00"]
    accuracy = table_rows(section[2])
    assert accuracy["image [exam]"][0][1:4] == ["1", "1", "75.00"] and "image [exam]" not in rows
    assert accuracy["concat [exam]"][0][3] == "50.00" and accuracy["concat [exam]"][0][5] == "–"  # one fold


def write_grid(folder, model, view_levels, right):
    """A robustness.json whose --grid has the same 8 test pairs' correctness `right` at every level."""
    packed = base64.b64encode(bytes([int("".join("1" if b else "0" for b in right), 2)])).decode()
    cells = [{**{k: v for k, v in zip(("p", "snr_db"), levels) if v is not None}, "acc": sum(right) / 8,
              "correct": packed} for levels in view_levels]
    with open(os.path.join(folder, "robustness.json"), "w") as f:
        json.dump({"grid": {"views": ["image", "audio"] if model == "multimodal" else [model], "n": 8,
                            "cells": cells}}, f)


def test_the_regret_reads_the_audio_run_picked_on_validation_and_the_strict_one_every_run(tmp_path, capsys):
    """Two audio-only runs of a fold: the one with the lower validation loss (50% on test) is the single
    view the regret is read against; the other (87.5% on test, picked on the test pairs) is the strict
    reference. A fused run as good as the image (75%) has regret 0, strict regret -12.5."""
    image_levels, audio_levels = [(p, None) for p in GRID_IMAGE_P], [(None, s) for s in GRID_AUDIO_SNR]
    runs = {"image": ("image", image_levels, [True] * 6 + [False] * 2, 0.5, {}),
            "audio-picked": ("audio", audio_levels, [False] * 4 + [True] * 4, 1.0, {}),
            "audio-other": ("audio", audio_levels, [True] * 7 + [False], 2.0, {"speed_perturb": 0.15}),
            "fused": ("multimodal", [(p, s) for p in GRID_IMAGE_P for s in GRID_AUDIO_SNR], [True] * 6 + [False] * 2,
                      0.4, {}),
            "gated": ("multimodal", [(p, s) for p in GRID_IMAGE_P for s in GRID_AUDIO_SNR], [True] * 7 + [False],
                      0.3, {"fusion": "late", "calibrate": True, "experts": ["image-s0", "audio-other-s0"],
                            "gate": "confidence"})}
    for name, (model, levels, right, val_loss, args) in runs.items():
        fusion = args.pop("fusion", "concat") if model == "multimodal" else None
        folder = write_run(tmp_path, f"{name}-s0", model=model, fusion=fusion,
                           seed=0, acc=sum(right) / 8, loss=val_loss, holdout_speaker="spk1", **args)
        write_grid(folder, model, levels, right)
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    rows = table_rows(out.split("## The fusion map on unheard voices")[1].split("\n\n")[4])
    assert rows["concat [exam]"][0][2:7] == ["+0.00", "p 0, clean", "+0.00", "-12.50", "-25.00"]
    assert rows["experts [exam] --gate confidence"][0][2:6] == ["+12.50", "p 0, clean", "+12.50", "+0.00"]


def test_fold_means_carry_intervals_over_recordings_and_over_speakers():
    """Two folds of one seed, 40 pairs from 10 recordings each (4 pairs a recording, right or wrong
    together): the fold mean, a t interval over the two fold means, and a resampled interval that
    lies around the mean and narrows as the recordings get more."""
    def run(fold, right_recordings, n_recordings=10):
        recordings = [f"{fold}-{i // 4}" for i in range(4 * n_recordings)]
        correct = [int(i // 4) < right_recordings for i in range(4 * n_recordings)]
        return {"fold": fold, "correct": {(0.1, None): correct}, "test_correct": correct, "recordings": recordings}
    runs = [run("ann", 8), run("bob", 6)]                    # 80% and 60%
    mean, over_recordings, over_speakers, folds = fold_mean(runs, (0.1, None))
    assert (mean, folds) == (70.0, 2)
    half = scipy_stats.t.ppf(0.975, 1) * statistics.stdev([80.0, 60.0]) / 2 ** 0.5
    assert over_speakers == pytest.approx((70 - half, 70 + half))
    assert over_recordings[0] < 70 < over_recordings[1] and over_recordings[1] - over_recordings[0] < 2 * half
    wide = over_recordings[1] - over_recordings[0]
    _, more, _, _ = fold_mean([run("ann", 80, 100), run("bob", 60, 100)], TEST_MIX)
    assert more[1] - more[0] < wide / 2  # ten times the recordings: about a third of the width
    _, none, one_fold, folds = fold_mean([{**runs[0], "recordings": None}], (0.1, None))
    assert none is None and one_fold is None and folds == 1


def test_a_run_whose_config_cannot_be_read_is_left_out_not_read_as_the_exams(tmp_path, capsys):
    """A damaged config.json would make a mel concat run look exam-trained: it is left out, with a note."""
    write_run(tmp_path, "mel-s0", model="multimodal", fusion="concat", acc=0.97, audio_frontend="mel")
    write_run(tmp_path, "exam-s0", model="multimodal", fusion="concat", acc=0.94)
    with open(os.path.join(tmp_path, "mel-s0", "config.json"), "w") as f:
        f.write("{not json")
    code, out, err = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0 and "97.00" not in out and "94.00" in out
    assert "unreadable config.json" in out and "leaving out the run of unreadable" in err


def test_seeds_keeps_the_runs_of_the_seeds_named(tmp_path, capsys):
    """--seeds 0: a seed-1 run of the same row is left out of every table, with a note saying how many."""
    write_run(tmp_path, "image-s0", seed=0, acc=0.80)
    write_run(tmp_path, "image-s1", seed=1, acc=0.90)
    code, out, err = run_report(capsys, tmp_path, "--no-figures", "--seeds", "0")
    assert code == 0 and "left out 1 run(s) of other seeds" in err
    row = table_rows(out)["image-only"][0]
    assert row[2] == "1" and row[4].strip("*").startswith("80.00")
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0 and table_rows(out)["image-only"][0][2] == "2"


def test_a_fold_with_more_seeds_counts_once_in_the_regret_map(tmp_path, capsys):
    """Fold spk1 kept at seeds 0 and 1 (fused regret -25 and 0), fold spk2 at seed 0 only (regret 0): the
    map is the mean over folds of each fold's seed mean (-6.25, not the run mean -8.33), and the seed-by-seed
    column reads only seed 0, the one kept at both folds (its own map: -12.50)."""
    image_levels, audio_levels = [(p, None) for p in GRID_IMAGE_P], [(None, s) for s in GRID_AUDIO_SNR]
    fused_levels = [(p, s) for p in GRID_IMAGE_P for s in GRID_AUDIO_SNR]
    good, bad = [True] * 6 + [False] * 2, [True] * 4 + [False] * 4   # 75% and 50%
    for fold, seed, fused in (("spk1", 0, bad), ("spk1", 1, good), ("spk2", 0, good)):
        for model, levels, right in (("image", image_levels, good), ("audio", audio_levels, bad),
                                     ("multimodal", fused_levels, fused)):
            folder = write_run(tmp_path, f"{model}-{fold}-s{seed}", model=model, seed=seed, acc=sum(right) / 8,
                               fusion="concat" if model == "multimodal" else None, holdout_speaker=fold)
            write_grid(folder, model, levels, right)
    code, out, _ = run_report(capsys, tmp_path, "--no-figures")
    assert code == 0
    section = out.split("## The fusion map on unheard voices")[1].split("\n\n")
    row = table_rows(section[4])["concat [exam]"][0]
    assert row[1:5] == ["3", "-6.25", "p 0, clean", "-6.25"] and row[-1] == "s0 -12.50"
    assert "the mean over 2 fold(s) of each fold's mean over its seeds, 3 run(s)" in out
    assert "| 0 | -6.2 |" in out

"""The shell scripts: scripts/reproduce.sh (the study loop), contrastive.sh and beyond.sh.

They run with a stub interpreter (PYTHON=stub) that records its arguments and writes a finished
run's files for each training; nothing is trained.
"""
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from common.facts import FUSION_CHOICES
from common.runfolder import command_flags, expand_recipes

from conftest import run_cli
from test_report import REPRODUCE, ROOT, run_report, table_rows, write_run


def meaning(words):
    """A training command's flags with its recipes expanded: {"--flag": (value, ...)}."""
    return expand_recipes(command_flags(words))


def stub_interpreter(tmp_path, text):
    """An executable stand-in for $PYTHON at tmp_path/stub-python, and the environment that uses it
    (its calls are appended to tmp_path/calls.log): (stub path, log path, env)."""
    stub, log = tmp_path / "stub-python", tmp_path / "calls.log"
    stub.write_text(text)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return stub, log, {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), "REAL_PYTHON": sys.executable}


def test_reproduce_syntax_and_help():
    assert subprocess.run(["bash", "-n", REPRODUCE]).returncode == 0
    for flag in ("--help", "-h"):
        r = subprocess.run(["bash", REPRODUCE, flag], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0
        assert r.stdout.startswith("usage: scripts/reproduce.sh") and "--seeds" in r.stdout
    r = subprocess.run(["bash", REPRODUCE, "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "error:" in r.stderr


STUB = r"""#!/usr/bin/env bash
# Stand-in interpreter: records its arguments, then acts like the script it was asked to run;
# the scripts' questions to scripts/runs.py (which trains nothing) go to the real interpreter, unrecorded.
if [[ $(basename "$1") == runs.py ]]; then exec "$REAL_PYTHON" "$@"; fi
printf '%s\n' "$*" >> "$STUB_LOG"
script=$(basename "$1"); shift
runs=""; name=""; fusion=""; seed=0; out=""; prev=""
for a in "$@"; do
    case "$prev" in
        --runs-dir) runs=$a ;; --name) name=$a ;; --fusion) fusion=$a ;; --seed) seed=$a ;; --out) out=$a ;;
    esac
    prev=$a
done
if [[ $script == report.py ]]; then echo "# stub report" > "$out"; exit 0; fi
model=${script#train_}; model=${model%.py}
fusion_json=null; [[ -n $fusion ]] && fusion_json="\"$fusion\""
mkdir -p "$runs/$name"
cat > "$runs/$name/config.json" <<EOF
{"model": "$model", "command": "$script $*", "args": {}, "dataset": {"name": "synthetic"}}
EOF
cat > "$runs/$name/metrics.json" <<EOF
{"model": "$model", "fusion": $fusion_json, "dataset": "synthetic", "synthetic": true, "fingerprint": "fp",
 "seed": $seed, "limit": 8, "best_epoch": 1, "epochs_run": 1, "params": 10, "seconds_per_epoch": 0.5,
 "test": {"labeled": true, "n": 8, "loss": 1.5, "acc": 0.5$seed}}
EOF
"""


def test_reproduce_loop_with_stub_interpreter(tmp_path, capsys):
    stub = tmp_path / "stub-python"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    runs = tmp_path / "study"
    # image-s0 finished before; audio-s1 was interrupted after saving a checkpoint
    write_run(runs, "image-s0", seed=0, acc=0.50, loss=1.5, dataset="synthetic", synthetic=True,
              fingerprint="fp", limit=8, params=10, seconds_per_epoch=0.5, best_epoch=1, epochs_run=1,
              config=False)
    (runs / "audio-s1" / "checkpoints").mkdir(parents=True)
    (runs / "audio-s1" / "checkpoints" / "last.pt").write_bytes(b"")
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), "REAL_PYTHON": sys.executable}
    extra = ["--data", "synthetic", "--limit", "8", "--max-epochs", "1"]
    r = subprocess.run(["bash", REPRODUCE, "--seeds", "0 1", "--runs-dir", str(runs), "--", *extra],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "skip image-s0" in r.stdout and "# stub report" in r.stdout

    calls = log.read_text().splitlines()
    train_calls = [c.split() for c in calls if "report.py" not in c]
    names = [c[c.index("--name") + 1] for c in train_calls]
    expected = [n for s in (0, 1) for n in [f"image-s{s}", f"audio-s{s}"]
                + [f"multimodal-{f}-s{s}" for f in FUSION_CHOICES]]
    expected.remove("image-s0")
    assert names == expected  # every model and fusion, every seed, in order; the finished run skipped
    for c in train_calls:
        name = c[c.index("--name") + 1]
        assert c[c.index("--runs-dir") + 1] == str(runs)
        assert c[c.index("--seed") + 1] == name[-1]
        assert " ".join(extra) in " ".join(c)
        assert ("--resume" in c) == (name == "audio-s1")
        if name.startswith("multimodal-"):
            assert os.path.basename(c[0]) == "train_multimodal.py"
            assert c[c.index("--fusion") + 1] == name[len("multimodal-"):-3]
        else:
            assert os.path.basename(c[0]) == f"train_{name.split('-')[0]}.py"
    report_calls = [c.split() for c in calls if "report.py" in c]
    assert [c[1:] for c in report_calls] == [[str(runs), "--out", str(runs / "results.md")]]

    # the real report over what the loop left: one row per model/fusion, two seeds each
    code, out, _ = run_report(capsys, runs)
    assert code == 0
    rows = [r for rs in table_rows(out).values() for r in rs if len(r) == 10]
    assert [r[0] for r in rows] == ["image-only", "audio-only"] + [f"multimodal-{f}" for f in FUSION_CHOICES]
    assert all(r[2] == "2" for r in rows)
    assert "SYNTHETIC data" in out

    # a second pass trains nothing
    log.write_text("")
    r = subprocess.run(["bash", REPRODUCE, "--seeds", "0 1", "--runs-dir", str(runs), "--", *extra],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [c for c in log.read_text().splitlines() if "report.py" not in c] == []
    assert len(re.findall(r"== skip ", r.stdout)) == len(expected) + 1
    # ... also when only runtime flags change; another variant under the same names is refused, not skipped
    r = subprocess.run(["bash", REPRODUCE, "--seeds", "0 1", "--runs-dir", str(runs), "--", *extra, "--max-epochs", "3",
                        "--data-root", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and len(re.findall(r"== skip ", r.stdout)) == len(expected) + 1, r.stderr
    r = subprocess.run(["bash", REPRODUCE, "--seeds", "0 1", "--runs-dir", str(runs), "--", *extra,
                        "--speed-perturb", "0.1"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "skip audio-s0" not in r.stdout  # image-s0 has no config.json: skipped
    assert f"{runs}/audio-s0 was trained with other flags than asked: --speed-perturb: trained with (not given), " \
           "asked 0.1" in r.stderr and "give this variant its own --tag" in r.stderr
    assert [c for c in log.read_text().splitlines() if "report.py" not in c] == []


def test_reproduce_refuses_half_made_folder(tmp_path):
    _, _, env = stub_interpreter(tmp_path, STUB)
    runs = tmp_path / "study"
    (runs / "image-s0").mkdir(parents=True)
    (runs / "image-s0" / "config.json").write_text("{}")
    r = subprocess.run(["bash", REPRODUCE, "--seeds", "0", "--runs-dir", str(runs)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert "image-s0" in r.stderr and "neither metrics.json nor checkpoints/last.pt" in r.stderr


def test_reproduce_list_prints_one_self_contained_command_per_run():
    out = subprocess.run(["bash", REPRODUCE, "--list", "--seeds", "0 1", "--models", "image concat",
                          "--results", "results/study", "--", "--data", "avdigits", "--data-root", "../shared data"],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PYTHON"})  # $PYTHON would lead each line
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    assert lines[0] == (f"{REPRODUCE} --seeds 0 --models image --runs-dir runs/study --results results/study "
                        "--no-report -- --data avdigits --data-root '../shared data'")
    assert [line.split()[2:5] for line in lines] == [["0", "--models", "image"], ["0", "--models", "concat"],
                                                     ["1", "--models", "image"], ["1", "--models", "concat"]]


def test_list_lines_are_read_back_by_posix_sh_word_for_word(tmp_path):
    """A tab, a quote and a space in a path: bash's printf %q would write $'\\t', which sh cannot read."""
    odd = "runs/a\tb c'd"
    out = subprocess.run(["bash", REPRODUCE, "--list", "--models", "image", "--runs-dir", odd],
                         capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items()
                                                                         if k != "PYTHON"})
    [line] = out.stdout.splitlines()
    words = subprocess.run(["sh", "-c", f"set -- {line}; printf '%s\\n' \"$@\""], capture_output=True, text=True,
                           timeout=60).stdout.splitlines()
    assert words[words.index("--runs-dir") + 1] == odd


def test_beyond_runs_each_variant_seed_by_seed_with_its_tag_and_flags(tmp_path):
    stub, log, env = stub_interpreter(tmp_path, STUB)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "beyond.sh"), "--seeds", "0 1", "--runs-dir",
                        str(tmp_path / "runs"), "--results", str(tmp_path / "kept"), "--", "--data", "synthetic"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = [c.split() for c in log.read_text().splitlines()]
    names = [c[c.index("--name") + 1] for c in calls]
    mdrop, mel, lean = {"--modality-dropout": ("0.3",)}, {"--audio-frontend": ("mel",)}, {"--mel-channels": ("8", "16")}
    variants = {"multimodal-concat-mdrop0.3": mdrop, "multimodal-late-mdrop0.3": mdrop, "audio-mel": mel,
                "multimodal-concat-mel": mel, "multimodal-concat-mel-mdrop0.3": {**mel, **mdrop},
                "audio-mel-lean": {**mel, **lean}, "multimodal-concat-mel-lean": {**mel, **lean}}
    assert names == [f"{v}-s{s}" for s in (0, 1) for v in variants]
    for c, name in zip(calls, names):
        flags = meaning(c)  # the recipes the script names, as the flags they set
        assert all(flags.get(k) == v for k, v in variants[name[:-3]].items()) and c[-2:] == ["--data", "synthetic"]
        assert c[c.index("--seed") + 1] == name[-1]
        assert ("--modality-dropout" in flags) == ("mdrop" in name) and ("--audio-frontend" in flags) == ("mel" in name)
    bad = subprocess.run(["bash", REPRODUCE, "--tag", "-x", "--list"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--tag -x" in bad.stderr
    # --list: the same runs as one reproduce.sh command each, in the same order, and nothing trained
    log.write_text("")
    listed = subprocess.run(["bash", os.path.join(ROOT, "scripts", "beyond.sh"), "--seeds", "0 1", "--list", "--",
                             "--data", "synthetic"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0 and log.read_text() == ""
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert [f"{'audio' if c[c.index('--models') + 1] == 'audio' else 'multimodal-' + c[c.index('--models') + 1]}"
            f"-{c[c.index('--tag') + 1]}-s{c[c.index('--seeds') + 1]}" for c in lines] == names
    for c, n in zip(lines, names):
        after = meaning(c[c.index("--") + 1:])
        assert all(after.get(k) == v for k, v in variants[n[:-3]].items()) and c[-2:] == ["--data", "synthetic"]


def test_speakers_runs_fold_by_fold_with_the_held_out_voice_and_the_known_speaker_reference(tmp_path):
    stub, log, env = stub_interpreter(tmp_path, STUB)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "speakers.sh"), "--speakers", "spk0 spk1", "--runs-dir",
                        str(tmp_path / "runs"), "--results", str(tmp_path / "kept"), "--", "--data", "synthetic"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = [c.split() for c in log.read_text().splitlines()]
    trained = [c for c in calls if "--name" in c]
    names = [c[c.index("--name") + 1] for c in trained]
    fold = ["audio-spk-{}-s0", "multimodal-concat-spk-{}-s0", "audio-mel-lean-spk-{}-s0",
            "multimodal-concat-mel-lean-mdrop0.3-spk-{}-s0"]
    assert names == ["multimodal-concat-mel-lean-mdrop0.3-s0"] + [n.format(s) for s in ("spk0", "spk1") for n in fold]
    for c, name in zip(trained, names):
        held = c[c.index("--holdout-speaker") + 1] if "--holdout-speaker" in c else None
        assert held == (name.split("-spk-")[1][:-3] if "-spk-" in name else None), c
        flags = meaning(c)
        assert (flags.get("--mel-channels") == ("8", "16")) == ("mel-lean" in name)
        assert ("--modality-dropout" in flags) == ("mdrop" in name) and c[-2:] == ["--data", "synthetic"]
    for speakers, extra in [("../x", []), ("bob", []), ("spk0", [])]:  # spk0 only with -- --data synthetic
        bad = subprocess.run(["bash", os.path.join(ROOT, "scripts", "speakers.sh"), "--speakers", speakers, "--list",
                              *extra], capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and not bad.stdout, speakers
        assert bad.stderr.strip() == f"error: --speakers: {speakers} is not one of FSDD's speakers (george jackson " \
            "lucas nicolas theo yweweler)"


RUN_STUB = r"""#!/usr/bin/env bash
# Stand-in interpreter for scripts/contrastive.sh: records each call; a training script leaves a finished
# run with a best.pt (a contrastive one scores its validation probe by the length of its name), evaluate.py
# a robustness.json; any other Python (the script's own helpers) runs for real.
case "$(basename "${1:-}")" in
    train_*.py|evaluate.py|evaluate_contrastive.py|combine.py) ;;
    *) exec python3 "$@" ;;
esac
printf '%s\n' "$*" >> "$STUB_LOG"
script=$(basename "$1"); shift
if [[ $script == evaluate.py ]]; then echo '{}' > "$1/robustness.json"; exit 0; fi
if [[ $script == evaluate_contrastive.py ]]; then
    out="$1/probes.json"; prev=""
    for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
    echo '{}' > "$out"; exit 0
fi
runs=""; name=""; prev=""
for a in "$@"; do
    case "$prev" in --runs-dir) runs=$a ;; --name) name=$a ;; esac
    prev=$a
done
if [[ $script == combine.py ]]; then  # a fused run's files, no checkpoint needed here
    mkdir -p "$runs/$name"; echo '{}' > "$runs/$name/config.json"; echo 'id,digit' > "$runs/$name/predictions_test.csv"
    echo '{"model": "multimodal"}' > "$runs/$name/metrics.json"; exit 0
fi
mkdir -p "$runs/$name/checkpoints"
: > "$runs/$name/checkpoints/best.pt"
echo '{"model": "stub", "args": {"loss": "nt_log", "tau": 0.1, "learn_tau": true, "learn_bias": true}}' \
    > "$runs/$name/config.json"
echo "{\"model\": \"stub\", \"val\": {\"probe\": {\"both\": ${#name}}}}" > "$runs/$name/metrics.json"
"""


def test_fusionmap_runs_each_fold_with_the_next_voice_for_validation_and_the_grid(tmp_path):
    stub, log, env = stub_interpreter(tmp_path, RUN_STUB)  # leaves a best.pt: evaluate.py is called
    script = os.path.join(ROOT, "scripts", "fusionmap.sh")
    r = subprocess.run(["bash", script, "--speakers", "yweweler george", "--runs-dir", str(tmp_path / "runs"),
                        "--results", str(tmp_path / "kept"), "--", "--data", "synthetic"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    calls = [c.split() for c in log.read_text().splitlines()]
    trained = [c for c in calls if os.path.basename(c[0]).startswith("train_")]
    names = [c[c.index("--name") + 1] for c in trained]
    fold = ["image-fm-{}-s0", "multimodal-concat-fm-{}-s0", "audio-fm-mel-lean-db40-{}-s0",
            "multimodal-concat-fm-mel-lean-db40-{}-s0", "multimodal-late-fm-mel-lean-db40-{}-s0",
            "multimodal-concat-fm-mel-lean-db40-mdrop0.3-{}-s0", "audio-fm-mel-lean-db40-speed0.15-{}-s0",
            "multimodal-concat-fm-mel-lean-db40-mdrop0.3-speed0.15-{}-s0", "multimodal-late-fm-mel-lean-db40-cal-{}-s0"]
    assert names == [n.format(s) for s in ("yweweler", "george") for n in fold]
    for c, name in zip(trained, names):
        flags = meaning(c)
        test, val = ("yweweler", "george") if "yweweler" in name else ("george", "jackson")  # round the end
        assert flags["--holdout-speaker"] == (test,) and flags["--val-speaker"] == (val,), c
        assert (flags.get("--mel-top-db") == ("40.0",)) == ("db40" in name)
        assert ("--calibrate" in flags) == ("-cal-" in name) and c[-2:] == ["--data", "synthetic"]
        assert (flags.get("--speed-perturb") == ("0.15",)) == ("speed" in name), c
    evaluated = [c for c in calls if os.path.basename(c[0]) == "evaluate.py"]
    assert len(evaluated) == len(names) + 4 and all("--grid" in c for c in evaluated)
    combined = [c for c in calls if os.path.basename(c[0]) == "combine.py"]
    assert [[os.path.basename(w) for w in c[1:3]] + [c[c.index("--name") + 1]] for c in combined] == \
        [[f"image-fm-{s}-s0", f"audio-fm-mel-lean-db40-speed0.15-{s}-s0", f"experts{gate}-fm-{s}-s0"]
         for s in ("yweweler", "george") for gate in ("", "-confidence")]
    assert [meaning(c).get("--gate") for c in combined] == [None, ("confidence",)] * 2
    for name in ("experts-fm-george-s0", "experts-confidence-fm-george-s0"):
        assert (tmp_path / "kept" / name / "robustness.json").exists()
    floors = [c for c in calls if os.path.basename(c[0]) == "evaluate_contrastive.py"]
    assert [c[1] for c in floors] == ["raw", "raw"]
    floors = [meaning(c) for c in floors]
    assert [(f["--holdout-speaker"], f["--val-speaker"]) for f in floors] == [(("yweweler",), ("george",)),
                                                                              (("george",), ("jackson",))]
    assert all(f["--data"] == ("synthetic",) and f["--fractions"] == ("1",) for f in floors)
    assert (tmp_path / "kept" / "floor-raw-george" / "probes.json").exists()
    bad = subprocess.run(["bash", script, "--speakers", "spk0", "--list", "--", "--data", "synthetic"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "spk0 is not one of FSDD's speakers" in bad.stderr  # the rotation is FSDD's


def test_contrastive_study_sweeps_then_pre_trains_from_the_best_validation_probe(tmp_path):
    stub, log, env = stub_interpreter(tmp_path, RUN_STUB)
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    script = os.path.join(ROOT, "scripts", "contrastive.sh")
    r = subprocess.run(["bash", script, "--study", "v1", "--runs-dir", str(runs), "--results", str(kept), "--", "--data",
                        "synthetic"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    calls = [c.split() for c in log.read_text().splitlines() if not c.split()[0].endswith("evaluate.py")
             and not c.split()[0].endswith("evaluate_contrastive.py")]
    names = [c[c.index("--name") + 1] for c in calls]
    sweep = [f"contrastive-{loss}-{t}-s0" for loss in ("nt_xent", "nt_log")
             for t in ("t0.03", "t0.1", "t0.3", "t1", "t3", "learn")] + ["contrastive-nt_log-learn-bias-s0"]
    efficiency = [f"multimodal-concat-f{f}{pre}-s{s}" for s, f in [(0, "0.01"), (0, "0.1"), (1, "0.01"), (1, "0.1"),
                                                                  (2, "0.01"), (2, "0.1"), (0, "1")]
                  for pre in ("", "-pre")]
    assert names == sweep + efficiency
    for c, name in zip(calls, names):
        flags = " ".join(c)
        assert flags.endswith("--data synthetic")
        if name.startswith("contrastive-"):
            given = meaning(c)
            assert [given.get(k) for k in ("--batch-size", "--max-epochs", "--patience")] == [("128",), ("10",), ("10",)]
            assert "--epoch-pairs" not in c
            assert ("--learn-tau" in c) == ("learn" in name) and ("--learn-bias" in c) == ("bias" in name)
        else:
            assert c[c.index("--label-fraction") + 1] == name.split("-f")[1].split("-")[0]
            assert c[c.index("--epoch-pairs") + 1] == "1400"  # validation every ~1,400 pairs at every F
            best = str(runs / "contrastive-nt_log-learn-bias-s0" / "checkpoints" / "best.pt")  # the longest name
            assert ("--init-from " + best in flags) == name.endswith("-pre-s" + name[-1])
    assert "best contrastive run (validation probe accuracy, both featurizers): contrastive-nt_log-learn-bias-s0" \
        in r.stdout
    assert sorted(os.listdir(kept)) == sorted(sweep + efficiency)

    def fresh_machine():  # runs/ is gone; results/ survives
        shutil.rmtree(runs, ignore_errors=True)
        log.write_text("")
        r = subprocess.run(["bash", script, "--study", "v1", "--runs-dir", str(runs), "--results", str(kept), "--",
                            "--data", "synthetic"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return [c.split() for c in log.read_text().splitlines() if not c.split()[0].endswith("evaluate.py")
                and not c.split()[0].endswith("evaluate_contrastive.py")]

    # everything kept: nothing is trained, not even the best checkpoint (nothing needs it)
    assert fresh_machine() == []
    # a pre-trained run still to do: the best checkpoint, never kept, is trained again with its saved flags
    shutil.rmtree(kept / "multimodal-concat-f0.1-pre-s2")
    again = fresh_machine()
    assert [c[c.index("--name") + 1] for c in again] == ["contrastive-nt_log-learn-bias-s0",
                                                         "multimodal-concat-f0.1-pre-s2"]
    assert "--loss nt_log --tau 0.1 --learn-tau --learn-bias --data synthetic" in " ".join(again[0])

    def listed(*extra):  # --list: the runs as commands, nothing trained
        log.write_text("")
        r = subprocess.run(["bash", script, "--study", "v1", "--runs-dir", str(runs), "--results", str(kept), "--list",
                            *extra, "--", "--data", "synthetic"], capture_output=True, text=True, env=env, timeout=120)
        assert log.read_text() == ""
        return r, [line.split() for line in r.stdout.splitlines()]

    # the checkpoint is there now, so every run is listed: the sweep, then label efficiency, one per line
    r, lines = listed()
    assert r.returncode == 0, r.stderr
    # $PYTHON (the stub) travels with each line, so a line run elsewhere uses the same interpreter
    assert all(c[:2] == ["env", f"PYTHON={stub}"] and c[2].endswith("reproduce.sh") and c[c.index("--seeds") + 1]
               in "012" for c in lines)
    def run_name(c):
        model, tag, seed = (c[c.index(flag) + 1] for flag in ("--models", "--tag", "--seeds"))
        return f"{'contrastive' if model == 'contrastive' else 'multimodal-' + model}-{tag}-s{seed}"
    assert [run_name(c) for c in lines] == sweep + efficiency
    assert all(("--epoch-pairs" in c) == ("contrastive" not in c) for c in lines)
    # without the checkpoint, a pre-trained run still to do cannot be listed: an error, after the sweep's lines
    shutil.rmtree(runs)
    shutil.rmtree(kept / "multimodal-concat-f0.1-pre-s2")
    r, lines = listed()
    assert r.returncode == 1 and "is gone" in r.stderr and len(lines) == 13
    # with sweep runs still to do, only the sweep is listed
    shutil.rmtree(kept / "contrastive-nt_xent-t1-s0")
    r, lines = listed()
    assert r.returncode == 0 and len(lines) == 13 and "1 sweep runs are not kept" in r.stderr


def test_contrastive_study_v2_measures_the_floors_then_trains_and_measures_each_run(tmp_path):
    stub, log, env = stub_interpreter(tmp_path, RUN_STUB)
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    script = os.path.join(ROOT, "scripts", "contrastive.sh")
    command = ["bash", script, "--runs-dir", str(runs), "--results", str(kept), "--", "--data", "synthetic",
               "--limit", "64"]
    r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    calls = [c.split() for c in log.read_text().splitlines()]
    floors = [c for c in calls if c[0].endswith("evaluate_contrastive.py") and c[1] in ("raw", "random")]
    assert [c[1] for c in floors] == ["raw", "random"]
    for c in floors:  # the data flags only: a floor trains nothing, so --limit is not its business
        assert c[c.index("--out") + 1] == str(kept / f"floor-{c[1]}" / "probes.json")
        assert c[c.index("--data") + 1] == "synthetic" and ("--finetune" in c) == (c[1] == "random")
        assert "--limit" not in c
    trained = [c for c in calls if c[0].endswith("train_contrastive.py")]
    names = [c[c.index("--name") + 1] for c in trained]
    assert names == ["contrastive-nt_xent-s0", "contrastive-nt_log-s0", "contrastive-nt_xent-noaug-s0",
                     "contrastive-nt_xent-s1", "contrastive-nt_xent-s2", "contrastive-nt_log-s1", "contrastive-nt_log-s2",
                     "contrastive-nt_log-b-10-s0", "contrastive-nt_xent-t0.05-s0", "contrastive-nt_xent-t0.2-s0",
                     "contrastive-nt_xent-mel-s0", "contrastive-nt_log-mel-s0", "contrastive-nt_xent-e48-s0"]
    for c, name in zip(trained, names):
        flags = meaning(c)  # the second recipe (--recipe contrastive-v2) and each run's own flags
        assert [flags.get(k) for k in ("--head", "--feat-dropout", "--optimizer", "--schedule", "--select")] == \
            [("mlp-bn",), ("0.1",), ("adamw",), ("cosine",), ("val_digit1",)]
        assert float(flags["--weight-decay"][0]) == 1e-4 and float(flags["--warmup-epochs"][0]) == 1
        epochs = ("48",) if "e48" in name else ("24",)
        assert flags["--max-epochs"] == flags["--patience"] == epochs
        assert (flags.get("--audio-frontend") == ("mel",)) == ("mel" in name)
        assert flags["--augment"] == (("none",) if "noaug" in name else ("views",))
        nt_log_prior = flags.get("--bias-init") == ("prior",) and float(flags.get("--own-lr", ("0",))[0]) == 1e-2
        assert nt_log_prior == (name.startswith("contrastive-nt_log-") and "b-10" not in name)
    measured = [c[1] for c in calls if c[0].endswith("evaluate_contrastive.py") and c[1] not in ("raw", "random")
                and "--finetune" not in c]
    assert measured == [str(runs / n) for n in names]  # each run measured right after its training
    tuned = [c[1] for c in calls if c[0].endswith("evaluate_contrastive.py") and "--finetune" in c]
    assert tuned == ["random", str(runs / "contrastive-nt_xent-s0"), str(runs / "contrastive-nt_log-s0")]
    for name in names:  # kept with its probes.json
        assert (kept / name / "probes.json").is_file() and (kept / name / "metrics.json").is_file()
    # a fresh machine: everything is kept, nothing runs again
    shutil.rmtree(runs)
    log.write_text("")
    r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == ""
    r = subprocess.run(["bash", script, "--study", "v3"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--study must be v1 or v2" in r.stderr


def test_5_kept_means_every_kept_file_readable(tmp_path):
    kept = tmp_path / "kept" / "image-s0"
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    (kept / "config.json").write_text("{}")
    assert run_cli(["scripts/runs.py", "kept", str(kept), "metrics.json", "config.json"]).returncode == 0
    assert run_cli(["scripts/runs.py", "kept", str(kept), "metrics.json", "robustness.json"]).returncode == 1
    (kept / "metrics.json").write_text("{trunc")
    out = run_cli(["scripts/runs.py", "kept", str(kept), "metrics.json"])
    assert out.returncode == 1 and "not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_15_beyond_with_no_seeds_says_so():
    import subprocess

    from conftest import ROOT
    out = subprocess.run(["bash", "scripts/beyond.sh", "--seeds", "", "--list"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--seeds is empty" in out.stderr


@pytest.mark.parametrize("extra", [["--seed", "5"], ["--seed=5"], ["--name", "x"], ["--runs-dir", "elsewhere"],
                                   ["--resume"]])
def test_reproduce_refuses_the_flags_it_sets_itself_after_the_separator(extra):
    out = subprocess.run(["bash", "scripts/reproduce.sh", "--seeds", "0 1", "--list", "--", *extra], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "would override what scripts/reproduce.sh sets" in out.stderr
    assert out.stdout == ""


def test_reproduce_refuses_an_empty_runs_dir():
    out = subprocess.run(["bash", "scripts/reproduce.sh", "--runs-dir", "", "--list"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--runs-dir is empty" in out.stderr

"""What a hostile tester found: each case reproduced, each now one clear line or the stated behaviour."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from common.data.fsdd import list_recordings, read_wav
from common.training.loop import TrainingError, load_checkpoint
from conftest import SMALL_SYNTHETIC, make_avdigits_root, run_cli, run_script, train_on_course, write_wav

FAST = ["--batch-size", "16", "--num-threads", "1", "--precision", "fp32"]


def train(script, course, runs_dir, name, *extra):
    return train_on_course(script, course, runs_dir, "--precision", "fp32", *extra, name=name, max_epochs=None)


def one_line_error(out, code=2):
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ")
    return lines[-1]


@pytest.fixture(scope="module")
def finished(labelled_course, tmp_path_factory):
    """A finished multimodal run and a finished image run, shared by the resume cases."""
    runs = tmp_path_factory.mktemp("runs")
    assert train("train_multimodal.py", labelled_course, runs, "mm", "--max-epochs", "1").returncode == 0
    assert train("train_image.py", labelled_course, runs, "img", "--max-epochs", "1").returncode == 0
    return runs


def test_resume_with_the_wrong_script_names_the_right_one(finished):
    out = run_script(["train_audio.py", "--runs-dir", str(finished), "--name", "mm", "--resume"])
    line = one_line_error(out)
    assert "'multimodal' run, not 'audio'" in line and "train_multimodal.py" in line


@pytest.mark.parametrize("script", ["train_image.py", "train_contrastive.py"])
def test_unusable_runs_dir_fails_before_the_data_loads(script, labelled_course, tmp_path):
    (tmp_path / "file").write_text("x")
    out = train(script, labelled_course, tmp_path / "file" / "runs", "r", "--max-epochs", "1")
    assert "is a file, not a folder" in one_line_error(out)
    assert "dataset" not in out.stdout  # nothing was loaded
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "is not writable" in one_line_error(train(script, labelled_course, locked, "r"))


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


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_run_names_stay_inside_runs_dir(name, labelled_course, tmp_path):
    runs = tmp_path / "runs"
    out = train("train_image.py", labelled_course, runs, name, "--max-epochs", "1")
    assert out.returncode == 2 and "must be a plain folder name" in out.stderr
    assert not (tmp_path / "escape").exists() and not runs.exists()


def test_a_run_that_died_before_its_first_checkpoint_is_started_again(labelled_course, tmp_path):
    out = train("train_image.py", labelled_course, tmp_path, "nan", "--lr", "1e30", "--max-epochs", "2")
    assert out.returncode == 1 and "non-finite training loss" in out.stderr
    assert (tmp_path / "nan" / "config.json").exists() and not (tmp_path / "nan" / "checkpoints").exists()
    again = train("train_image.py", labelled_course, tmp_path, "nan", "--max-epochs", "1")
    assert again.returncode == 0, again.stderr
    assert "never reached a checkpoint" in again.stdout and "starting it again" in again.stdout
    assert json.loads((tmp_path / "nan" / "config.json").read_text())["args"]["lr"] == 0.001
    assert (tmp_path / "nan" / "metrics.json").exists()


def test_a_damaged_best_checkpoint_is_found_at_resume(labelled_course, tmp_path):
    assert train("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1").returncode == 0
    os.remove(tmp_path / "r" / "metrics.json")  # as if stopped before the test
    (tmp_path / "r" / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 damaged")
    out = run_script(["train_image.py", "--runs-dir", str(tmp_path), "--name", "r", "--resume", "--max-epochs", "3"])
    line = one_line_error(out, code=1)
    assert "best.pt" in line
    assert "epoch   2" not in out.stdout  # refused before any training


def test_resume_of_a_finished_run_changes_nothing_unless_asked(finished):
    run = finished / "img"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    out = run_script(["train_image.py", "--runs-dir", str(finished), "--name", "img", "--resume"])
    assert out.returncode == 0 and "is finished" in out.stdout and "--retest" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    metrics = json.loads((run / "metrics.json").read_text())
    out = run_script(["train_image.py", "--runs-dir", str(finished), "--name", "img", "--resume", "--retest"])
    assert out.returncode == 0, out.stderr
    assert (run / "metrics.json").stat().st_mtime_ns != before[run / "metrics.json"]
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0"])
def test_lr_must_be_positive_and_finite(value, labelled_course, tmp_path):
    out = train("train_image.py", labelled_course, tmp_path, "r", f"--lr={value}")
    assert out.returncode == 2 and "must be a positive finite number" in out.stderr


@pytest.mark.parametrize("limit", ["3", "20"])
def test_limits_that_leave_a_split_too_small_are_refused_before_the_data(limit, labelled_course, tmp_path):
    out = train("train_image.py", labelled_course, tmp_path, "r", "--limit", limit)
    assert "each split needs at least 10" in one_line_error(out)
    assert "dataset" not in out.stdout and not (tmp_path / "r").exists()
    assert train("train_image.py", labelled_course, tmp_path, "ok", "--limit", "60", "--max-epochs", "1").returncode == 0


def test_init_from_a_last_checkpoint(finished, labelled_course, tmp_path):
    out = train("train_multimodal.py", labelled_course, tmp_path, "mm", "--max-epochs", "1",
                "--init-from", str(finished / "img" / "checkpoints" / "last.pt"))
    assert out.returncode == 0, out.stderr
    assert "initialised the image featurizer(s)" in out.stdout
    # an older last.pt without `kind`: the run's config.json says what it holds
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    ckpt = torch.load(finished / "img" / "checkpoints" / "last.pt", weights_only=True)
    del ckpt["kind"]
    torch.save(ckpt, old / "last.pt")
    shutil.copy(finished / "img" / "config.json", tmp_path / "old" / "config.json")
    out = train("train_multimodal.py", labelled_course, tmp_path, "mm2", "--max-epochs", "1",
                "--init-from", str(old / "last.pt"))
    assert out.returncode == 0, out.stderr


def test_a_text_file_is_not_a_checkpoint(tmp_path, labelled_course):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(TrainingError, match="is not a PyTorch checkpoint"):
        load_checkpoint(str(tmp_path / "notes.pt"))
    out = train("train_multimodal.py", labelled_course, tmp_path, "mm", "--init-from", str(tmp_path / "notes.pt"))
    assert "is not a PyTorch checkpoint" in one_line_error(out, code=1)


def test_an_empty_wav_says_so(tmp_path):
    (tmp_path / "3_ann_0.wav").write_bytes(b"")
    with pytest.raises(Exception, match=r"3_ann_0.wav: an empty file \(0 bytes\)"):
        read_wav(str(tmp_path / "3_ann_0.wav"))


def test_a_stray_wav_among_the_recordings_is_named_once(tmp_path, capsys):
    for name in ("3_ann_0.wav", "3_ann_5.wav", "x_y_z.wav", "notes.txt"):
        write_wav(tmp_path / name, np.ones(100, np.int16))
    assert [e[0] for e in list_recordings(str(tmp_path))] == ["3_ann_0", "3_ann_5"]
    assert list_recordings(str(tmp_path))  # a second listing does not warn again
    err = capsys.readouterr().err
    assert err.count("x_y_z.wav") == 1 and "not named digit_speaker_take.wav" in err and "notes.txt" not in err


def test_a_stray_wav_is_named_by_the_data_command(tmp_path):
    root = make_avdigits_root(tmp_path / "data")
    write_wav(root / "fsdd" / "recordings" / "x_y_z.wav", np.ones(100, np.int16))
    out = run_cli(["-m", "common.data", "info", "--data", "avdigits", "--data-root", str(root)],
                  env={"AVDIGITS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("x_y_z.wav") == 1


def test_a_run_held_by_a_live_process_is_neither_replaced_nor_resumed(labelled_course, tmp_path):
    import subprocess
    import sys
    out = train("train_image.py", labelled_course, tmp_path, "r", "--lr", "1e30", "--max-epochs", "2")
    assert out.returncode == 1  # died in epoch 1: a folder with config.json and nothing else of note
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(tmp_path / 'r' / 'config.json')!r})\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = train("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1")
        assert "is being trained by another process" in one_line_error(refused)
        assert (tmp_path / "r" / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    again = train("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1")
    assert again.returncode == 0 and "starting it again" in again.stdout


def test_only_what_a_run_writes_counts_as_a_failed_start(labelled_course, tmp_path):
    for extra in ("config.json.orig", "checkpoints_mine/x.pt", "split_indices.json.notes"):
        folder = tmp_path / extra.split("/")[0].replace(".", "_")
        (folder / extra).parent.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        (folder / extra).write_text("mine")
        out = train("train_image.py", labelled_course, tmp_path, folder.name, "--max-epochs", "1")
        assert "already exists" in one_line_error(out)
        assert (folder / extra).read_text() == "mine"


def test_contrastive_pre_training_refuses_a_label_fraction(labelled_course, tmp_path):
    out = train("train_contrastive.py", labelled_course, tmp_path, "c", "--label-fraction", "0.5")
    assert "uses no labels" in one_line_error(out) and not (tmp_path / "c").exists()


# ---------------------------------------------------------------- the fifteen defects of the second probe

SYNTH_TRAIN = [*SMALL_SYNTHETIC, "--max-epochs", "1", *FAST]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A finished image run on the small synthetic set, with a robustness.json of its fresh draw."""
    runs = tmp_path_factory.mktemp("evaluated")
    assert run_script(["train_image.py", *SYNTH_TRAIN, "--runs-dir", str(runs), "--name", "img-s0"]).returncode == 0
    out = run_script(["evaluate.py", str(runs / "img-s0"), "--sweeps", "fresh", "--num-threads", "1"])
    assert out.returncode == 0, out.stderr
    return runs / "img-s0"


def copy_run(run, tmp_path):
    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def test_1_two_starts_of_one_name_do_not_share_its_folder(labelled_course, tmp_path):
    import subprocess
    import sys
    from conftest import ROOT
    common = [sys.executable, "train_multimodal.py", "--data", "course", "--data-root", str(labelled_course),
              "--runs-dir", str(tmp_path), "--name", "race", "--max-epochs", "2", *FAST]
    first = subprocess.Popen([*common, "--fusion", "concat"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*common, "--fusion", "late", "--seed", "7"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    [refusal] = [err for code, err in results if code == 2]
    assert "Traceback" not in refusal and refusal.strip().splitlines()[-1].startswith("error: run folder")
    config = json.loads((tmp_path / "race/config.json").read_text())
    metrics = json.loads((tmp_path / "race/metrics.json").read_text())
    assert (config["args"]["fusion"], config["args"]["seed"]) == (metrics["fusion"], metrics["seed"])
    assert len(list((tmp_path / "race").glob("events.out.tfevents.*"))) == 1


def test_2_a_robustness_json_of_other_weights_is_named_and_left_out(evaluated, tmp_path, capsys):
    import report
    run = copy_run(evaluated, tmp_path)
    robustness = json.loads((run / "robustness.json").read_text())
    assert robustness["best_epoch"] == 1 and len(robustness["best_sha256"]) == 64
    robustness["best_epoch"] = 7  # as if the run had trained on after the evaluation
    (run / "robustness.json").write_text(json.dumps(robustness))
    runs, _, _ = report.read_runs(str(tmp_path))
    assert runs[0]["robustness"] is None and "ignoring stale robustness" in capsys.readouterr().err
    out = run_cli(["scripts/runs.py", "current", str(run)])
    assert out.returncode == 1 and "measured the weights of epoch 7" in out.stderr


def test_2_a_partial_evaluation_of_the_same_weights_keeps_the_earlier_sweeps(evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    assert run_script(["evaluate.py", str(run), "--sweeps", "image", "--num-threads", "1"]).returncode == 0
    robustness = json.loads((run / "robustness.json").read_text())
    assert robustness["sweeps"] == ["fresh", "image"] and "fresh" in robustness and "image_sweep" in robustness


def test_3_atomic_writes_refuse_symlinks_and_special_files(evaluated, tmp_path):
    target = tmp_path / "target.md"
    target.write_text("mine")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    for out_path, message in ((str(link), "is a symbolic link"), ("/dev/full", "not a regular file")):
        out = run_cli(["report.py", str(evaluated.parent), "--out", out_path, "--no-figures"])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert link.is_symlink() and target.read_text() == "mine" and os.path.exists("/dev/full")
    from common.io import OutputError, save_text
    with pytest.raises(OutputError):
        save_text("x", str(link))


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


def test_6_evaluate_checks_what_it_reads_and_writes_before_the_work(evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    (run / "metrics.json").write_text("{broken")
    out = run_script(["evaluate.py", str(run), "--num-threads", "1"])
    assert "not valid JSON" in one_line_error(out) and "building" not in out.stderr + out.stdout
    run = copy_run(evaluated, tmp_path / "second")
    (run / "robustness.json").unlink()
    (run / "robustness.json").symlink_to(tmp_path / "elsewhere.json")
    assert "is a symbolic link" in one_line_error(run_script(["evaluate.py", str(run)]))


@pytest.mark.parametrize("bad", [10 ** 7, -3])
def test_7_split_indices_outside_the_splits_are_refused(bad, evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    indices = json.loads((run / "split_indices.json").read_text())
    indices["test"][0] = bad
    (run / "split_indices.json").write_text(json.dumps(indices))
    assert "names test rows outside" in one_line_error(run_script(["evaluate.py", str(run), "--num-threads", "1"]))


def test_8_the_fresh_draw_is_never_the_test_split_and_bad_numbers_are_one_line(evaluated):
    assert "its test split, not a fresh one" in one_line_error(run_script(["evaluate.py", str(evaluated),
                                                                           "--data-seed", "0"]))
    for flags in (["--data-seed", "-1"], ["--num-threads", "-2"]):
        out = run_script(["evaluate.py", str(evaluated), *flags])
        assert out.returncode == 2 and "Traceback" not in out.stderr


def test_9_delta_late_only_against_a_late_row_trained_the_same_way(tmp_path, capsys):
    import report
    from test_report import write_robustness, write_run
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

    import report
    from test_report import write_robustness, write_run
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


def test_11_an_unsafe_checkpoint_is_refused_in_our_words(tmp_path):
    import pickle
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": 1, "x": shutil.rmtree}, f)  # a callable: weights_only refuses it
    with pytest.raises(TrainingError) as e:
        load_checkpoint(str(path))
    assert "refused checkpoint" in str(e.value) and "weights_only" not in str(e.value)
    assert "False" not in str(e.value)


def test_12_sizes_beyond_reason_are_refused_at_once(labelled_course, tmp_path):
    out = train("train_audio.py", labelled_course, tmp_path, "r", "--audio-frontend", "mel", "--mel-channels", "100000",
                "100000")
    assert out.returncode == 2 and "from 1 to 1,024" in out.stderr
    out = train("train_image.py", labelled_course, tmp_path, "r", "--epoch-pairs", "1000000000000")
    assert out.returncode == 2 and "from 0 to 10,000,000" in out.stderr
    assert not (tmp_path / "r").exists()


def test_14_wrong_figure_format_and_unmakeable_out_are_one_line(finished, tmp_path):
    out = run_cli(["-m", "common.data", "show", *SMALL_SYNTHETIC, "--out", str(tmp_path / "x.txt")])
    assert out.returncode == 2 and "needs one of the extensions" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(["report.py", str(finished), "--out", "/proc/nope/x.md", "--no-figures"])
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.strip().startswith("error: --out")


def test_15_beyond_with_no_seeds_says_so():
    import subprocess
    from conftest import ROOT
    out = subprocess.run(["bash", "scripts/beyond.sh", "--seeds", "", "--list"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--seeds is empty" in out.stderr


def test_4_a_full_disk_while_saving_a_checkpoint_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    import torch as real_torch

    from common.training.loop import save_checkpoint
    save_checkpoint(str(tmp_path / "last.pt"), epoch=1)

    def full_disk(obj, path):
        with open(path, "wb") as f:
            f.write(b"PK")  # a torn write, as torch leaves it
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed; unexpected pos 64 vs 0")
    monkeypatch.setattr(real_torch, "save", full_disk)
    with pytest.raises(TrainingError) as e:
        save_checkpoint(str(tmp_path / "last.pt"), epoch=2)
    assert "cannot write" in str(e.value) and "--resume continues from it" in str(e.value)
    assert load_checkpoint(str(tmp_path / "last.pt"))["epoch"] == 1  # the previous checkpoint, intact
    assert not list(tmp_path.glob(".tmp-*"))  # no torn temp file left
    with pytest.raises(TrainingError, match="no checkpoint yet: starting it again"):
        save_checkpoint(str(tmp_path / "first.pt"), epoch=1)

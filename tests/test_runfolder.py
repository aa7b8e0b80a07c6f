"""common/runfolder.py, the one reader of run folders, and scripts/runs.py, the shell scripts' questions to it."""
import json
import subprocess
import sys

import pytest

from common.runfolder import RecordError, RunFolder, flags_differ, init_source, run_args, source_label

from conftest import ROOT


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_readers_say_what_is_wrong_in_one_line(tmp_path):
    run = RunFolder(str(tmp_path / "r"))
    with pytest.raises(RecordError, match="config.json"):
        run.read_config()
    write(tmp_path / "r/config.json", "{not json")
    with pytest.raises(RecordError, match="is not valid JSON"):
        run.read_config()
    write(tmp_path / "r/metrics.json", "[1, 2]")
    with pytest.raises(RecordError, match="is not a JSON object"):
        run.read_metrics()
    assert run.read_robustness() is None and run.read_probes() is None and run.read_predictions() is None
    write(tmp_path / "r/split_indices.json", {"train": [1, "x"], "test": [0]})
    with pytest.raises(RecordError, match="not integers"):
        run.read_indices()
    write(tmp_path / "r/predictions_test.csv", "id,digit,label\n0,3,3\n1,4,5\n")
    assert run.read_predictions() == {0: True, 1: False}


def test_run_args_adds_the_precision_and_device_the_run_used():
    config = {"args": {"lr": 0.1, "precision": "auto"}, "precision": "float32", "device": "cuda:0",
              "init_from_source": "contrastive-nt_log"}
    assert run_args(config) == {"lr": 0.1, "precision": "fp32", "device_used": "cuda",
                                "init_from_source": "contrastive-nt_log"}
    assert run_args({"args": []}) == {}


def test_the_source_of_featurizers_is_the_recorded_one_else_the_folder_name(tmp_path):
    # a source run with a custom name: its seed comes from its own config, so the name is not guessed at
    write(tmp_path / "runs/my-pretraining/config.json", {"args": {"seed": 2}})
    assert source_label(str(tmp_path / "runs/my-pretraining/checkpoints/best.pt")) == "my-pretraining"
    write(tmp_path / "runs/xent-s2/config.json", {"args": {"seed": 2}})
    assert source_label(str(tmp_path / "runs/xent-s2/checkpoints/best.pt")) == "xent"
    assert source_label(str(tmp_path / "gone/ntlog-s1/checkpoints/best.pt")) == "ntlog"  # no config: the name
    assert init_source(["a/x-s1/checkpoints/best.pt", "b/y-s0/checkpoints/best.pt"]) == "x+y"
    assert init_source(["a/x-s1/checkpoints/best.pt"], recorded="my-pretraining") == "my-pretraining"
    assert init_source(None) is None


def runs_py(*args):
    return subprocess.run([sys.executable, "scripts/runs.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_runs_py_answers_the_shell_scripts(tmp_path):
    for name, score in (("contrastive-a-s0", 0.5), ("contrastive-b-s0", 0.7), ("contrastive-c-s0", 0.7),
                        ("other-s0", 0.9)):
        write(tmp_path / name / "metrics.json", {"val": {"probe": {"both": score}}})
    write(tmp_path / "contrastive-b-s0/config.json", {"args": {"loss": "nt_log", "tau": 0.1, "learn_tau": True,
                                                              "learn_bias": False}})
    out = runs_py("best", str(tmp_path), "contrastive-*-s0", "val.probe.both")
    assert out.returncode == 0 and out.stdout == "contrastive-b-s0\n"  # the first of equal scores
    out = runs_py("flags", str(tmp_path / "contrastive-b-s0"), "loss", "tau", "learn_tau", "learn_bias")
    assert out.stdout.split() == ["--loss", "nt_log", "--tau", "0.1", "--learn-tau"]
    out = runs_py("best", str(tmp_path), "nothing-*", "val.probe.both")
    assert out.returncode == 2 and out.stderr.startswith("error: no finished run matching")
    write(tmp_path / "broken-s0/metrics.json", "{")
    out = runs_py("best", str(tmp_path), "broken-*", "val")
    assert out.returncode == 2 and "is not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_flags_differ_compares_what_a_run_trained_with_what_is_asked():
    config = {"command": "train_audio.py --runs-dir runs/x --name a-s0 --seed 0 --mel-channels 8 16 --lr=0.0010 "
                         "--data avdigits --data-root /old --log-diagnostics",
              "args": {"seed": 0, "mel_channels": [8, 16], "lr": 0.001, "weight_decay": 0.0001, "clip_grad": 1.0},
              "dataset": {"name": "avdigits"}}
    same = ["--seed", "0", "--mel-channels", "8", "16", "--lr", "1e-3", "--log-diagnostics"]
    assert flags_differ(config, same) == []  # numbers as numbers, --flag=value, runtime flags and --data left out
    assert flags_differ(config, same + ["--data", "auto", "--max-epochs", "3", "--data-root", "/new"]) == []
    assert flags_differ(config, same + ["--weight-decay", "1e-4"]) == []  # not given then, but that value
    assert flags_differ(config, same + ["--data", "synthetic"]) == ["--data: trained on avdigits, asked synthetic"]
    assert flags_differ(config, same[:-1]) == []  # --log-diagnostics changes no number of a run
    assert flags_differ(config, same + ["--modality-dropout", "0"]) == []  # older than the flag: its old default
    moved = {**config, "command": config["command"] + " --init-from runs/c/contrastive-s0/checkpoints/best.pt"}
    assert flags_differ(moved, same + ["--init-from", "/abs/elsewhere/contrastive-s0/checkpoints/best.pt"]) == []
    assert flags_differ(moved, same + ["--init-from", "runs/c/contrastive-s1/checkpoints/best.pt"]) == [
        "--init-from: trained with runs/c/contrastive-s0/checkpoints/best.pt, "
        "asked runs/c/contrastive-s1/checkpoints/best.pt"]
    assert flags_differ(config, same + ["--speed-perturb", "0.1"]) == [
        "--speed-perturb: trained with (not given), asked 0.1"]
    assert flags_differ(config, ["--seed", "1", *same[2:]]) == ["--seed: trained with 0, asked 1"]
    assert flags_differ({"args": {}}, same) is None  # no command recorded: cannot tell

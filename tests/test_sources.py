"""Which data a run gets: --data auto, the synthetic dataset end to end, labelling in outputs."""
import json

import torch

from common.data import load_dataset

from conftest import SMALL_SYNTHETIC, make_avdigits_root, run_cli, run_script, write_course


def test_auto_falls_back_to_synthetic_and_says_how_to_get_real_data(tmp_path):
    messages = []
    ds = load_dataset("auto", str(tmp_path), synthetic_size=200, log=messages.append)
    assert ds.name == "synthetic" and ds.is_synthetic
    assert (len(ds.train), len(ds.test)) == (150, 50)
    assert any("SYNTHETIC" in m and "common.data fetch" in m for m in messages)
    assert "SYNTHETIC" in ds.describe()


def test_auto_prefers_avdigits_then_course(tmp_path):
    write_course(tmp_path / "course")
    messages = []
    assert load_dataset("auto", str(tmp_path), log=messages.append).name == "course"
    make_avdigits_root(tmp_path / "both")
    write_course(tmp_path / "both")
    from common.data.sources import resolve_source
    assert resolve_source("auto", str(tmp_path / "both"), log=messages.append) == "avdigits"


def test_synthetic_dataset_is_deterministic_in_its_seed():
    a = load_dataset("synthetic", synthetic_size=200, data_seed=0, log=lambda m: None)
    b = load_dataset("synthetic", synthetic_size=200, data_seed=0, log=lambda m: None)
    c = load_dataset("synthetic", synthetic_size=200, data_seed=1, log=lambda m: None)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.train.image.shape == (150, 1, 28, 28) and a.train.audio.shape == (150, 1, 8000)
    assert a.train.image.min() >= 0 and a.train.image.max() <= 1
    assert torch.isfinite(a.train.audio).all()


def test_info_and_training_name_the_synthetic_data(tmp_path):
    out = run_cli(["-m", "common.data", "info", *SMALL_SYNTHETIC, "--json"])
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "synthetic" and info["synthetic"] is True
    assert info["splits"]["train"]["n"] == 150 and info["splits"]["test"]["labeled"]
    assert sum(info["splits"]["test"]["regime_counts"].values()) == 50
    run = run_script(["train_image.py", *SMALL_SYNTHETIC, "--max-epochs", "1", "--runs-dir", str(tmp_path),
                      "--name", "syn", "--num-threads", "1"])
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "syn" / "config.json").read_text())
    metrics = json.loads((tmp_path / "syn" / "metrics.json").read_text())
    assert config["dataset"]["name"] == "synthetic" and config["dataset"]["synthetic"] is True
    assert metrics["dataset"] == "synthetic" and metrics["synthetic"] is True
    assert "SYNTHETIC" in run.stdout
    assert set(metrics["test"]["per_regime_acc"]) == {"image_noisy", "audio_noisy", "both_mild"}


def test_show_and_wav_write_files(tmp_path):
    out = run_cli(["-m", "common.data", "show", *SMALL_SYNTHETIC, "--out", str(tmp_path / "grid.png")])
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "grid.png").stat().st_size > 10_000
    out = run_cli(["-m", "common.data", "wav", *SMALL_SYNTHETIC, "--out", str(tmp_path / "wav"), "--n", "3"])
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "wav").glob("synthetic_train_*_digit*.wav"))) == 3

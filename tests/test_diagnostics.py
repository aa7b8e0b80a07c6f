"""common/training/diagnostics.py (--log-diagnostics): what it logs, and that it changes no number of a run."""
import csv
import json

import pytest
import torch

from conftest import run_script, train_on_course


def train(script, course, runs_dir, *extra, name="run"):
    return train_on_course(script, course, runs_dir, *extra, name=name, batch_size=32, max_epochs=None)


@pytest.mark.parametrize("script, fusion", [("train_image.py", None), ("train_multimodal.py", "attention-tokens"),
                                            ("train_multimodal.py", "concat")])
def test_diagnostics_are_logged_and_change_no_number(script, fusion, larger_course, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    extra = ["--max-epochs", "2"] + (["--fusion", fusion] if fusion else [])
    assert train(script, larger_course, tmp_path, *extra, name="plain").returncode == 0
    out = train(script, larger_course, tmp_path, *extra, "--log-diagnostics", name="diag")
    assert out.returncode == 0, out.stderr
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("plain", "diag"))
    for key in ("best_epoch", "epochs_run", "val", "test"):
        assert a[key] == b[key], key
    la, lb = (torch.load(tmp_path / n / "checkpoints/last.pt", weights_only=True) for n in ("plain", "diag"))
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"])
    assert torch.equal(la["rng"]["torch"], lb["rng"]["torch"])  # no random number drawn by the diagnostics
    events = EventAccumulator(str(tmp_path / "diag"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert any(t.startswith("diag/grad_norm/") for t in tags) and any(t.startswith("diag/dead_relu/") for t in tags)
    assert all(0 <= e.value <= 1 for t in tags if t.startswith("diag/dead_relu/") for e in events.Scalars(t))
    if fusion == "attention-tokens":
        entropies = [t for t in tags if t.startswith("diag/attention_entropy/")]
        assert entropies
        for tag in entropies:  # each attention layer's entropy lies between 0 and ln(keys)
            ceiling = tag.replace("attention_entropy/", "attention_entropy_max/")
            assert 0 <= events.Scalars(tag)[-1].value <= events.Scalars(ceiling)[-1].value + 1e-6
    # the first steps one by one, in diag_steps/: every step of this short run (3 a epoch), from step 1
    assert not any(t.startswith("diag_step/") for t in tags)
    trace = EventAccumulator(str(tmp_path / "diag" / "diag_steps"))
    trace.Reload()
    step_tags = trace.Tags()["scalars"]
    assert any(t.startswith("diag_step/grad_norm/") for t in step_tags)
    assert any(t.startswith("diag_step/dead_relu/") for t in step_tags)
    assert all([e.step for e in trace.Scalars(t)] == list(range(1, 7)) for t in step_tags)
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--steps", "--out", str(tmp_path / "s.csv")])
    assert out.returncode == 0, out.stderr
    trace = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["step"] for r in trace] == [str(i) for i in range(1, 7)] and set(trace[0]) == {"step", *step_tags}
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "plain"), "--steps"])
    assert out.returncode == 2 and "no first-steps trace" in out.stderr
    tag = step_tags[0]
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), str(tmp_path / "diag"), "--steps",
                      "--figure", str(tmp_path / "f.png"), "--tags", tag])
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--figure", str(tmp_path / "g.png"),
                      "--tags", "diag/nothing"])
    assert out.returncode == 2 and "no scalar diag/nothing" in out.stderr and not (tmp_path / "g.png").exists()
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), str(tmp_path / "plain")])
    assert out.returncode == 2 and "one RUN_DIR for a CSV" in out.stderr
    plain = EventAccumulator(str(tmp_path / "plain"))
    plain.Reload()
    assert not any(t.startswith("diag/") for t in plain.Tags()["scalars"])
    # scripts/diagnostics.py: the same numbers, one row per epoch, curves first
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--out", str(tmp_path / "diag.csv")])
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(open(tmp_path / "diag.csv")))
    assert [r["epoch"] for r in table] == ["1", "2"] and list(table[0])[:3] == ["epoch", "loss/train", "loss/val"]
    tag = next(t for t in tags if t.startswith("diag/grad_norm/"))
    assert [float(r[tag]) for r in table] == pytest.approx([e.value for e in events.Scalars(tag)], rel=1e-5)


def test_a_resume_keeps_the_first_steps_trace_and_may_switch_diagnostics_on(larger_course, tmp_path):
    """The trace lives in diag_steps/, which a resume's purge of later epochs does not touch; a run
    trained without --log-diagnostics may be resumed with it (it changes no number)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--log-diagnostics",
                 name="diag").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", name="diag")
    assert out.returncode == 0, out.stderr
    assert "the first steps' trace is not logged again" in out.stdout
    trace = EventAccumulator(str(tmp_path / "diag" / "diag_steps"))
    trace.Reload()
    tag = next(t for t in trace.Tags()["scalars"] if t.startswith("diag_step/grad_norm/"))
    assert [e.step for e in trace.Scalars(tag)] == [1, 2, 3]  # the first epoch's three steps, all kept
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", name="plain").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--log-diagnostics",
                name="plain")
    assert out.returncode == 0, out.stderr
    epochs = EventAccumulator(str(tmp_path / "plain"))
    epochs.Reload()
    assert any(t.startswith("diag/grad_norm/") for t in epochs.Tags()["scalars"])

"""Shared fixtures: small raw files written by the tests, a private dataset cache; the slow marker.

A test is marked `slow` when it starts a script or trains: when its body, one of its fixtures, or a
function of its module that either calls (followed transitively) calls one of SLOW_HELPERS; a few
tests that train full-size networks in-process, or read every kept run of results/, carry the marker
by hand. So `python -m pytest -m "not slow" -q` is the quick tier to run while working; the full suite runs all.
"""
import gzip
import inspect
import os
import re
import shutil
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
REAL_DATA = os.environ.get("AVDIGITS_DATA")
needs_real = pytest.mark.skipif(not (REAL_DATA and os.path.isdir(os.path.join(REAL_DATA, "mnist"))),
                                reason="set AVDIGITS_DATA to the raw data root to run")
SMALL_SYNTHETIC = ["--data", "synthetic", "--synthetic-size", "200"]
# what starts a script or a training: a test that reaches one of these is slow
SLOW_HELPERS = ("run_script", "run_cli", "train_on_course", "subprocess.run", "subprocess.Popen", "check_output")


def _source(func):
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ""


def _reaches_a_slow_helper(funcs, module):
    """True when any of `funcs`, or a function of the tests they call (transitively), names a slow helper."""
    seen, todo = set(), list(funcs)
    while todo:
        func = todo.pop()
        if func in seen:
            continue
        seen.add(func)
        source = _source(func)
        if any(re.search(rf"\b{re.escape(h)}\(", source) for h in SLOW_HELPERS):
            return True
        for name in set(re.findall(r"\b([A-Za-z_]\w*)\(", source)):
            other = getattr(func, "__globals__", {}).get(name, getattr(module, name, None))
            if inspect.isfunction(other) and os.path.dirname(inspect.getfile(other)) == TESTS:
                todo.append(other)
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if _reaches_a_slow_helper([function, *fixtures], item.module):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test session writes its dataset caches to a temp folder, never ~/.cache."""
    folder = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("AVDIGITS_CACHE", str(folder))
    return folder


def write_idx(path, array, gz=True):
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    blob = header + array.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(blob)


def write_wav(path, samples, rate=8000, channels=1, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def make_avdigits_root(root, n_takes=6, speakers=("ann", "bob")):
    """A data root with full-size (but blank-ish) MNIST files and a few short recordings."""
    mnist = root / "mnist"
    mnist.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60_000), ("t10k", 10_000)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 10:18, 12:16] = 200  # a bar, enough to be an image
        write_idx(mnist / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(mnist / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for d in range(10):
        for s in speakers:
            for t in range(n_takes):
                write_wav(rec / f"{d}_{s}_{t}.wav", (rng.standard_normal(1200) * 3000).astype(np.int16))
    return root


class ScriptResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_script(args):
    """Run a top-level script in this process (no interpreter start-up): argv, exit code, output.

    For behaviour that needs a real process (signals), use run_cli.
    """
    import contextlib
    import io
    import runpy
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = list(args)
    code = 0
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(os.path.join(ROOT, args[0]), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return ScriptResult(code, out.getvalue(), err.getvalue())


def run_cli(args, env=None, timeout=300):
    """Run a project command in a subprocess; returns CompletedProcess with text output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def write_course(folder, n_train=30, n_test=12, audio_len=8100, train_audio_2d=False, test_labels=False):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n_train,), generator=g)
    train_audio = torch.randn(n_train, audio_len, generator=g)
    torch.save(torch.rand(n_train, 1, 28, 28, generator=g), folder / "training_images.pth")
    torch.save(train_audio if train_audio_2d else train_audio.unsqueeze(1), folder / "training_audio.pth")
    torch.save(labels, folder / "training_images_labels.pth")
    torch.save(labels.clone(), folder / "training_audio_labels.pth")
    torch.save(torch.rand(n_test, 1, 28, 28, generator=g), folder / "test_images.pth")
    torch.save(torch.randn(n_test, 1, 7000, generator=g), folder / "test_audio.pth")
    if test_labels:
        torch.save(torch.randint(0, 10, (n_test,), generator=g), folder / "test_labels.pth")


@pytest.fixture(scope="module")
def labelled_course(tmp_path_factory):
    """A small course-format dataset with a labelled test split: 60 training and 20 test pairs."""
    root = tmp_path_factory.mktemp("course")
    write_course(root, n_train=60, n_test=20, test_labels=True)
    return root


@pytest.fixture(scope="module")
def larger_course(tmp_path_factory):
    """The same with 100 training and 30 test pairs: enough batches for a warm-up, a schedule, a resume."""
    root = tmp_path_factory.mktemp("course")
    write_course(root, n_train=100, n_test=30, test_labels=True)
    return root


def train_on_course(script, course_root, runs_dir, *extra, name=None, batch_size=16, max_epochs=1, process=False):
    """A short training of `script` on a course-format dataset, one thread; its ScriptResult.

    name: the run's --name (default: the script's own); max_epochs: None leaves it to `extra` or the
    script's default; process: run it in a fresh interpreter (run_cli), for signals and exit paths.
    Flags in `extra` come last, so they win over these."""
    args = [script, "--data", "course", "--data-root", str(course_root), "--runs-dir", str(runs_dir),
            "--batch-size", str(batch_size), "--num-threads", "1"]
    args += ["--name", name] if name is not None else []
    args += ["--max-epochs", str(max_epochs)] if max_epochs else []
    return (run_cli if process else run_script)([*args, *extra])


# ---------------------------------------------------------------- runs shared by several test files

FAST = ["--batch-size", "16", "--num-threads", "1", "--precision", "fp32"]


def train_named(script, course, runs_dir, name, *extra):
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
    assert train_named("train_multimodal.py", labelled_course, runs, "mm", "--max-epochs", "1").returncode == 0
    assert train_named("train_image.py", labelled_course, runs, "img", "--max-epochs", "1").returncode == 0
    return runs


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

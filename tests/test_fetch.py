"""`fetch` against an HTTP server on 127.0.0.1 serving fixture files, and offline."""
import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading

import numpy as np
import pytest

from common.data import DataError
from common.data.fetch import fetch_all
from common.data.mnist import FILES as MNIST_FILES

from conftest import run_cli, write_idx, write_wav


@pytest.fixture
def served(tmp_path):
    """A folder of fixture files behind a loopback HTTP server; yields (folder, base_url)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def make_fixtures(folder, n_wavs=12, bad_wav=False):
    md5 = {}
    for split, n in (("train", 60_000), ("t10k", 10_000)):
        img_name, lab_name = MNIST_FILES[split]
        write_idx(folder / img_name, np.zeros((n, 28, 28), np.uint8))
        write_idx(folder / lab_name, np.arange(n) % 10)
        for name in (img_name, lab_name):
            md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    wav_dir = folder / "wavs"
    wav_dir.mkdir()
    for i in range(n_wavs):
        write_wav(wav_dir / f"{i % 10}_ann_{i}.wav", np.zeros(800, np.int16), rate=16000 if bad_wav and i == 3 else 8000)
    with tarfile.open(folder / "fsdd.tar.gz", "w:gz") as tar:
        tar.add(wav_dir, arcname="free-spoken-digit-dataset-1.0.10/recordings")
        readme = b"not a recording"
        info = tarfile.TarInfo("free-spoken-digit-dataset-1.0.10/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return md5


def test_fetch_downloads_checks_and_renames(served, tmp_path):
    folder, url = served
    md5 = make_fixtures(folder)
    root = tmp_path / "data"
    fetch_all(str(root), log=lambda m: None, mnist_base_url=url, mnist_md5=md5,
              fsdd_url=url + "fsdd.tar.gz", fsdd_expected_count=12)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(md5)
    wavs = sorted(p.name for p in (root / "fsdd" / "recordings").iterdir())
    assert len(wavs) == 12 and all(w.endswith(".wav") for w in wavs)
    leftovers = [p for p in root.rglob("*") if p.name.startswith((".part", ".fetch", ".tmp")) or "download" in p.name]
    assert leftovers == []
    # a second fetch finds everything in place and downloads nothing
    fetch_all(str(root), log=lambda m: None, mnist_base_url="http://127.0.0.1:9/", mnist_md5=md5,
              fsdd_url="http://127.0.0.1:9/x", fsdd_expected_count=12)


def test_fetch_rejects_a_wrong_checksum(served, tmp_path):
    folder, url = served
    md5 = make_fixtures(folder)
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    with pytest.raises(DataError, match="checksum mismatch for train-images"):
        fetch_all(str(tmp_path / "data"), log=lambda m: None, mnist_base_url=url, mnist_md5=md5,
                  fsdd_url=url + "fsdd.tar.gz", fsdd_expected_count=12)
    assert not (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_fetch_rejects_a_bad_or_incomplete_archive(served, tmp_path):
    folder, url = served
    md5 = make_fixtures(folder, bad_wav=True)
    with pytest.raises(DataError, match="16000 Hz"):
        fetch_all(str(tmp_path / "a"), log=lambda m: None, mnist_base_url=url, mnist_md5=md5,
                  fsdd_url=url + "fsdd.tar.gz", fsdd_expected_count=12)
    assert not (tmp_path / "a" / "fsdd" / "recordings").exists()


def test_fetch_counts_the_recordings(served, tmp_path):
    folder, url = served
    md5 = make_fixtures(folder)
    with pytest.raises(DataError, match="held 12 recordings, expected 3000"):
        fetch_all(str(tmp_path / "b"), log=lambda m: None, mnist_base_url=url, mnist_md5=md5,
                  fsdd_url=url + "fsdd.tar.gz")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_offline_is_one_clear_line(tmp_path):
    port = closed_port()
    out = run_cli(["-m", "common.data", "fetch", "--data-root", str(tmp_path / "d"),
                   "--mnist-url", f"http://127.0.0.1:{port}/", "--fsdd-url", f"http://127.0.0.1:{port}/f.tgz"])
    assert out.returncode != 0
    lines = [l for l in out.stderr.splitlines() if l.strip() and "%" not in l]
    assert "Traceback" not in out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: download of") and "offline" in lines[0]

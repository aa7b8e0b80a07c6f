"""Download the raw data: MNIST IDX files and the Free Spoken Digit Dataset recordings.

Every download goes to a temp file that is renamed only once it is complete
and checked, so an interrupted fetch never leaves a file that looks finished.
"""
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

from tqdm import tqdm

from ..io import atomic_path
from ..runfolder import file_digest
from .errors import DataError
from .fsdd import NAME_PATTERN, read_wav
from .mnist import FILES as MNIST_FILES

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# The well-known MD5 sums of the four original .gz archives.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FSDD_VERSION = "1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.tar.gz"
FSDD_COUNT = 3000
TIMEOUT_S = 30


def _download(url, dest, desc):
    """Stream `url` into `dest` through a temp file that is renamed once complete."""
    try:
        with atomic_path(dest) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=None) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"download of {url} failed ({reason}); are you offline?") from None
    except OSError as e:
        raise DataError(f"cannot write {dest}: {e.strerror or e}") from None


def fetch_mnist(root, base_url=MNIST_URL, md5=MNIST_MD5, log=print):
    folder = os.path.join(root, "mnist")
    for name in (f for pair in MNIST_FILES.values() for f in pair):
        dest = os.path.join(folder, name)
        if os.path.exists(dest) and file_digest(dest, "md5") == md5[name]:
            log(f"mnist: {name} already present")
            continue
        tmp_dest = dest + ".download"
        _download(base_url + name, tmp_dest, name)
        if file_digest(tmp_dest, "md5") != md5[name]:
            os.remove(tmp_dest)
            raise DataError(f"checksum mismatch for {name} from {base_url}: the file is damaged or not MNIST")
        os.replace(tmp_dest, dest)


def fetch_fsdd(root, url=FSDD_URL, expected_count=FSDD_COUNT, log=print):
    dest = os.path.join(root, "fsdd", "recordings")
    if os.path.isdir(dest) and sum(f.endswith(".wav") for f in os.listdir(dest)) == expected_count:
        log(f"fsdd: {expected_count} recordings already present")
        return
    os.makedirs(os.path.join(root, "fsdd"), exist_ok=True)
    work = tempfile.mkdtemp(dir=os.path.join(root, "fsdd"), prefix=".fetch-")
    try:
        archive = os.path.join(work, "fsdd.tar.gz")
        _download(url, archive, "free-spoken-digit-dataset")
        staged = os.path.join(work, "recordings")
        os.makedirs(staged)
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    parts = member.name.split("/")
                    if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" \
                            and NAME_PATTERN.match(parts[-1]):
                        with tar.extractfile(member) as src, open(os.path.join(staged, parts[-1]), "wb") as dst:
                            shutil.copyfileobj(src, dst)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"the spoken-digit archive from {url} is damaged: {e}") from None
        wavs = sorted(os.listdir(staged))
        for name in wavs:
            read_wav(os.path.join(staged, name))  # raises DataError naming a bad file
        if len(wavs) != expected_count:
            raise DataError(f"the spoken-digit archive held {len(wavs)} recordings, expected {expected_count}")
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(staged, dest)
        log(f"fsdd: {len(wavs)} recordings in {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch_all(root, log=print, **overrides):
    fetch_mnist(root, **{k[6:]: v for k, v in overrides.items() if k.startswith("mnist_")}, log=log)
    fetch_fsdd(root, **{k[5:]: v for k, v in overrides.items() if k.startswith("fsdd_")}, log=log)

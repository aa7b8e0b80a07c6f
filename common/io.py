"""Atomic writes: every output file appears complete or not at all.

Each writer saves to a temp file beside the target, fsyncs it, then renames it
over the target with os.replace, which is atomic on one filesystem.
"""
import json
import os
import sys
import tempfile
from contextlib import contextmanager

try:
    import fcntl  # POSIX advisory locks; without them (Windows) runs are simply not locked
except ImportError:  # pragma: no cover
    fcntl = None

_held = {}  # path -> open file holding this process's lock on it


_UMASK = os.umask(0)
os.umask(_UMASK)


def output_dir_problem(folder):
    """Why `folder` cannot become a writable folder, or None: checked before the work, so a bad
    --out or --runs-dir costs one line instead of a traceback after the data has loaded."""
    probe = os.path.abspath(folder or ".")
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


class OutputError(OSError):
    """An output path this project will not write: a symlink or a special file (a device, a pipe)."""


def replace_problem(path):
    """Why an atomic write must not replace what is at `path`, or None: a rename would turn a symlink
    into a plain file (leaving its target stale) and a device node into a file."""
    if os.path.islink(path):
        return f"{path} is a symbolic link; give its target ({os.path.realpath(path)}) or another path"
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        return f"{path} is not a regular file (a device, a pipe or a socket)"
    return None


def output_file_problem(path):
    """Why a file cannot be written at `path`, or None (its folder as output_dir_problem sees it)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return f"{path} is a folder, not a file"
    return replace_problem(path) or output_dir_problem(os.path.dirname(os.path.abspath(path)))


@contextmanager
def atomic_path(path):
    """Yield a temp path in the target's folder; rename it to `path` if the block succeeds. Refuses
    (OutputError) to replace a symlink or a special file."""
    problem = replace_problem(path)
    if problem:
        raise OutputError(problem)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]  # keep the extension: savefig picks its format from it
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(obj, path):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def save_text(text, path):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_output(text, out):
    """A command's text: to the file `out` (atomically, saying so on stderr), or to stdout when out is
    None. Returns the exit code: 2, with one line naming the file, when it cannot be written."""
    if not out:
        sys.stdout.write(text)
        return 0
    try:
        save_text(text, out)
    except OSError as e:
        print(f"error: --out {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out}", file=sys.stderr)
    return 0


def save_torch(obj, path):
    import torch  # here, so that the reading side (report.py) never loads it
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_figure(fig, path, dpi=110):
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def save_drawn_figure(fig, path):
    """Write the PNG of a figure whose canvas is already drawn (e.g. by TensorBoard's
    add_figure), from its pixel buffer: the figure is not rendered a second time."""
    import matplotlib.image
    import matplotlib.pyplot as plt
    import numpy as np
    pixels = np.asarray(fig.canvas.buffer_rgba())
    with atomic_path(path) as tmp:
        matplotlib.image.imsave(tmp, pixels, format="png")
    plt.close(fig)


def hold_lock(path):
    """Lock `path` exclusively for this process until release_locks() or the process ends.
    False when another process (or another open file here) holds it."""
    if fcntl is None or path in _held:
        return True
    f = open(path)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _held[path] = f
    return True


def is_locked(path):
    """True when some process holds hold_lock(path)."""
    if fcntl is None or not os.path.exists(path):
        return False
    if path in _held:
        return True
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def release_locks():
    """Give up every lock this process holds (run_main calls it when a command ends)."""
    while _held:
        _held.popitem()[1].close()


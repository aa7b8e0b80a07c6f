"""Loader for the course's six tensor files (test split unlabelled)."""
import os
import pickle

import torch

from .dataset import Dataset, Split, fingerprint_splits
from .errors import DataError

AUDIO_LENGTH = 8000
FILES = {
    "train": ("training_images.pth", "training_audio.pth", "training_images_labels.pth",
              "training_audio_labels.pth"),
    "test": ("test_images.pth", "test_audio.pth", None, None),
}
OPTIONAL_TEST_LABELS = "test_labels.pth"  # not shipped by the course; used when present


def course_files_present(folder):
    return all(os.path.exists(os.path.join(folder, f))
               for names in FILES.values() for f in names if f is not None)


def _load_tensor(path):
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise DataError(f"missing course file: {path}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read course file {path} as plain tensors: {first}") from None
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"course file {path} holds a {type(obj).__name__}, expected a tensor")
    return obj


def _check_images(t, path):
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or tuple(t.shape[1:]) != (1, 28, 28):
        raise DataError(f"course file {path} has shape {list(t.shape)}, expected [N,1,28,28]")
    if not t.is_floating_point():
        raise DataError(f"course file {path} has dtype {t.dtype}, expected floating point")
    return t.float()


def _check_audio(t, path, notes):
    if t.dim() == 2:
        t = t.unsqueeze(1)
    if t.dim() != 3 or t.shape[1] != 1:
        raise DataError(f"course file {path} has shape {list(t.shape)}, expected [N,1,L] or [N,L]")
    if not t.is_floating_point():
        raise DataError(f"course file {path} has dtype {t.dtype}, expected floating point")
    length = t.shape[2]
    if length > AUDIO_LENGTH:
        cut = (length - AUDIO_LENGTH) // 2
        t = t[:, :, cut:cut + AUDIO_LENGTH]
        notes.append(f"{os.path.basename(path)}: centre-cropped {length} -> {AUDIO_LENGTH} samples")
    elif length < AUDIO_LENGTH:
        t = torch.nn.functional.pad(t, (0, AUDIO_LENGTH - length))
        notes.append(f"{os.path.basename(path)}: zero-padded {length} -> {AUDIO_LENGTH} samples")
    return t.float().contiguous()


def _check_labels(t, path, n):
    if t.dim() != 1 or t.shape[0] != n:
        raise DataError(f"course file {path} has shape {list(t.shape)}, expected [{n}]")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise DataError(f"course file {path} holds non-integer labels")
    t = t.long()
    if t.numel() and (t.min() < 0 or t.max() > 9):
        raise DataError(f"course file {path} has labels outside 0-9")
    return t


def load_course(folder, log=print):
    """Dataset from the course's files in `folder`; test labels only if test_labels.pth exists."""
    notes, splits = [], {}
    for split, (img_f, aud_f, img_lab_f, aud_lab_f) in FILES.items():
        img_path, aud_path = os.path.join(folder, img_f), os.path.join(folder, aud_f)
        image = _check_images(_load_tensor(img_path), img_path)
        audio = _check_audio(_load_tensor(aud_path), aud_path, notes)
        if audio.shape[0] != image.shape[0]:
            raise DataError(f"{split} split: {image.shape[0]} images but {audio.shape[0]} audio clips")
        label = None
        if img_lab_f is not None:
            p = os.path.join(folder, img_lab_f)
            label = _check_labels(_load_tensor(p), p, image.shape[0])
            p2 = os.path.join(folder, aud_lab_f)
            audio_label = _check_labels(_load_tensor(p2), p2, image.shape[0])
            if not torch.equal(label, audio_label):
                raise DataError(f"{img_lab_f} and {aud_lab_f} disagree: the pairs are not aligned")
        elif os.path.exists(os.path.join(folder, OPTIONAL_TEST_LABELS)):
            p = os.path.join(folder, OPTIONAL_TEST_LABELS)
            label = _check_labels(_load_tensor(p), p, image.shape[0])
        splits[split] = Split(image=image, audio=audio, label=label)
    for note in notes:
        log(f"course data: {note}")
    return Dataset(name="course", train=splits["train"], test=splits["test"],
                   fingerprint=fingerprint_splits(splits["train"], splits["test"]),
                   info={"source": "course", "folder": os.path.abspath(folder)})

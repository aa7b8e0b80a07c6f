"""In-memory dataset containers: a dataset is two splits of aligned tensors."""
import hashlib
from dataclasses import dataclass, field

import torch

from ..facts import REGIMES  # noqa: F401  (defined without torch, for the reading side)


@dataclass
class Split:
    image: torch.Tensor                 # float32 [N,1,28,28] in [0,1]
    audio: torch.Tensor                 # float32 [N,1,8000]
    label: torch.Tensor | None          # int64 [N], None for an unlabelled split
    meta: dict = field(default_factory=dict)  # per-sample tensors [N] (regime codes, noise levels, ids)
    recording_names: list = field(default_factory=list)  # names indexed by meta["recording_index"]

    def __len__(self):
        return self.image.shape[0]

    @property
    def labeled(self):
        return self.label is not None

    def subset(self, index):
        """The samples at `index` (a 1-D index tensor or slice), metadata included."""
        return Split(image=self.image[index], audio=self.audio[index],
                     label=None if self.label is None else self.label[index],
                     meta={k: v[index] for k, v in self.meta.items()},
                     recording_names=self.recording_names)

    def regime_names(self):
        """Regime of each sample as a string, or None when the source has no regimes."""
        if "regime" not in self.meta:
            return None
        return [REGIMES[int(r)] for r in self.meta["regime"]]

    def to_state(self):
        """Plain tensors and types only: safe for torch.load(weights_only=True)."""
        return {"image": self.image, "audio": self.audio, "label": self.label,
                "meta": dict(self.meta), "recording_names": list(self.recording_names)}

    @classmethod
    def from_state(cls, state):
        return cls(image=state["image"], audio=state["audio"], label=state["label"],
                   meta=dict(state["meta"]), recording_names=list(state["recording_names"]))


@dataclass
class Dataset:
    name: str                 # avdigits, course or synthetic: printed in every output
    train: Split
    test: Split
    fingerprint: str          # hash of the built tensors
    info: dict = field(default_factory=dict)  # how it was built (recipe, seed, sizes, source)

    @property
    def is_synthetic(self):
        return self.name == "synthetic"

    def describe(self):
        """One line saying which data this is, loud about synthetic data."""
        tag = " (SYNTHETIC: generated offline, not real handwriting or speech)" if self.is_synthetic else ""
        if self.info.get("clean_views"):
            tag += " [clean views: no noise added]"
        return (f"dataset {self.name}{tag}: {len(self.train)} train / {len(self.test)} test pairs, "
                f"fingerprint {self.fingerprint[:12]}")


def fingerprint_splits(*splits):
    """sha256 over the image, audio and label tensors of the splits, in order."""
    h = hashlib.sha256()
    for split in splits:
        for t in (split.image, split.audio, split.label):
            if t is None:
                h.update(b"unlabelled")
                continue
            t = t.contiguous()
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()

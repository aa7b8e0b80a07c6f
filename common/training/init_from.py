"""--init-from: featurizer weights from another run's checkpoint, checked before anything is copied.

The networks (common/nets/) know nothing of run folders; this module reads a checkpoint's `kind`,
or its run's config.json, to tell which featurizer a unimodal checkpoint holds.
"""
import torch

from ..nets.models import MODALITIES
from ..runfolder import RecordError, checkpoint_run, source_label
from .cli import UsageError
from .loop import load_checkpoint

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers


def _strip_wrappers(key):
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_featurizer_weights(model, state_dict, modality=None):
    """Copy featurizer weights from ``state_dict`` into ``model``; return what was loaded.

    Accepted key layouts:
    - ``image_featurizer.*`` / ``audio_featurizer.*`` (a multimodal or
      contrastive checkpoint): loads each featurizer present, or only
      ``modality`` when given; other keys (fusion, head, projections) are ignored;
    - ``featurizer.*`` (a unimodal Conv2Net / Conv1Net checkpoint): needs
      ``modality="image"`` or ``"audio"`` to say which featurizer it fills.
    ``module.`` / ``_orig_mod.`` wrapper prefixes are stripped first.

    Each loaded featurizer must be complete: every tensor of the target
    featurizer present with the same shape (for a token-fusion model, whose fc
    is removed, the source's fc is skipped). Nothing is copied unless
    everything checks out. Returns e.g. ``["image", "audio"]``; raises
    ValueError when nothing matches or a shape or key disagrees.
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be 'image' or 'audio', got {modality!r}")
    state = {_strip_wrappers(k): v for k, v in state_dict.items()}

    sources = {}  # modality -> {key inside the featurizer: tensor}
    for mod in MODALITIES:
        prefix = f"{mod}_featurizer."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub and (modality is None or modality == mod):
            sources[mod] = sub
    if not sources:
        unimodal = {k[len("featurizer."):]: v for k, v in state.items() if k.startswith("featurizer.")}
        if unimodal:
            if modality is None:
                raise ValueError("unimodal checkpoint (keys 'featurizer.*'): "
                                 "pass modality='image' or modality='audio'")
            sources[modality] = unimodal
    if not sources:
        wanted = f"'{modality}_featurizer.*' or 'featurizer.*'" if modality else \
            "'image_featurizer.*', 'audio_featurizer.*' or 'featurizer.*'"
        sample = ", ".join(list(state)[:4]) or "none"
        raise ValueError(f"no featurizer weights found: expected keys {wanted}, got e.g. {sample}")

    plan = []  # (target tensor, source tensor)
    for mod, sub in sources.items():
        featurizer = getattr(model, f"{mod}_featurizer")
        target = featurizer.state_dict(keep_vars=True)
        missing = sorted(set(target) - set(sub))
        if missing:
            raise ValueError(f"{mod} featurizer: checkpoint lacks {', '.join(missing)}")
        has_fc = "fc.weight" in target
        extra = sorted(k for k in set(sub) - set(target) if has_fc or not k.startswith("fc."))
        if extra:
            raise ValueError(f"{mod} featurizer: checkpoint has unexpected {', '.join(extra)}")
        for key, dst in target.items():
            src = sub[key]
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"{mod} featurizer: {key} has shape {tuple(src.shape)} in the "
                                 f"checkpoint but {tuple(dst.shape)} in the model")
            plan.append((dst, src))
    with torch.no_grad():
        for dst, src in plan:
            dst.copy_(src)
    return list(sources)



def init_featurizers(model, paths, load_checkpoint):
    """--init-from: copy the featurizers held by each checkpoint in `paths` into `model`.

    A unimodal checkpoint says which featurizer it holds by its `kind` (best.pt and,
    since the run bookkeeping moved to common/training/lifecycle.py, last.pt carry it); for an older
    last.pt the config.json of its run folder tells. Each featurizer may come from one
    checkpoint only. Returns {featurizer: path}; raises ValueError with a one-line reason.
    """
    loaded_from = {}
    for path in paths:
        ckpt = load_checkpoint(path)
        kind = ckpt.get("kind")
        if kind is None:
            try:
                kind = checkpoint_run(path).read_config().get("model")
            except RecordError:
                kind = None
        try:
            loaded = load_featurizer_weights(model, ckpt["model"], kind if kind in MODALITIES else None)
        except ValueError as e:
            if "pass modality=" in str(e):
                e = ValueError("it holds one featurizer but not which (no 'kind' in it, no config.json "
                               "beside its checkpoints/ folder)")
            raise ValueError(f"--init-from {path}: {e}") from None
        for featurizer in loaded:
            if featurizer in loaded_from:
                raise ValueError(f"--init-from: both {loaded_from[featurizer]} and {path} hold the {featurizer} "
                                 "featurizer; give each featurizer once")
            loaded_from[featurizer] = path
    return loaded_from


def apply_init_from(model, args):
    """train_multimodal.py's --init-from: load the featurizers (one line printed per checkpoint) and
    return what config.json records of it, {"init_from_source": "X+Y"} (report.py groups rows by the
    pre-training, seeds dropped), or {} for none and for a resumed run (its weights are in last.pt)."""
    if args.resume or not args.init_from:
        return {}
    try:
        loaded_from = init_featurizers(model, args.init_from, load_checkpoint)
    except ValueError as e:  # a checkpoint that does not fit
        raise UsageError(str(e)) from None
    for path in dict.fromkeys(loaded_from.values()):
        print(f"initialised the {' and '.join(f for f, p in loaded_from.items() if p == path)} featurizer(s) "
              f"from {path}")
    return {"init_from_source": "+".join(sorted({source_label(p) for p in args.init_from}))}

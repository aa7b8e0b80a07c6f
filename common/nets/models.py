"""The multimodal network: two featurizers, a fusion, a small head.

``MultimodalNet`` is the exam's early-fusion model (section 1.5, "1e"):
ImageFeaturizer and AudioFeaturizer (dropout 0.5 each) give 128-d vectors,
a fusion from ``common.nets.fusions`` merges them, and the head
fc(out_dim -> 64)-ReLU-fc(64 -> 10) classifies. ``LateFusionNet`` is the
baseline every fusion is measured against: each featurizer gets its own
fc(128 -> 10) and the two logit vectors are averaged (trained jointly with
cross-entropy on the average). ``build_multimodal`` builds either by name.

``ContrastiveModel`` is Problem 2's pre-training network: both featurizers,
projection heads and a contrastive loss. ``load_featurizer_weights`` copies
pre-trained featurizers (unimodal, multimodal or contrastive checkpoints)
into any of these networks: they all name them ``image_featurizer`` /
``audio_featurizer``.
"""
import torch
from torch import nn

from ..facts import FUSION_CHOICES  # noqa: F401  (list(FUSIONS) + late, defined without torch)
from ..facts import AUDIO_FRONTENDS, PROJECTION_HEADS, STAND_INS, AudioFrontend  # noqa: F401
from .fusions import FUSIONS, build_fusion
from .mel import MelAudioFeaturizer
from .featurizers import FEATURE_DIM, NUM_CLASSES, AudioFeaturizer, Conv2Net, ImageFeaturizer, UnimodalNet

HEAD_HIDDEN = 64
MODALITIES = ("image", "audio")


def build_audio_featurizer(frontend=AudioFrontend(), dropout=0.5, out_dim=FEATURE_DIM):
    """The audio featurizer of an AudioFrontend (--audio-frontend): raw (the exam's, the default) or mel."""
    if frontend.kind == "raw":
        return AudioFeaturizer(dropout, out_dim=out_dim)
    if frontend.kind == "mel":
        return MelAudioFeaturizer(dropout, out_dim=out_dim, channels=tuple(frontend.channels), top_db=frontend.top_db)
    raise ValueError(f"unknown audio front-end {frontend.kind!r}; valid: {', '.join(AUDIO_FRONTENDS)}")


def audio_classifier(frontend=AudioFrontend(), dropout=0.5):
    """Conv1Net (raw) or its log-mel counterpart: an audio featurizer and fc(128 -> 10)."""
    return UnimodalNet(build_audio_featurizer(frontend, dropout))


class _RemovedFC(nn.Module):
    """Stands in for a featurizer's fc when the fusion reads the conv map instead.

    It has no parameters, so the unused fc(3136->128) / fc(32000->128) is not
    in the model (every parameter that exists is trained), and calling the
    featurizer's vector path fails loudly instead of returning junk.
    """

    def forward(self, x):
        raise RuntimeError("this featurizer has no fc: its model fuses conv-map tokens "
                           "(attention-tokens); use .feature_map(x)")


class MultimodalNet(nn.Module):
    """image [B,1,28,28], audio [B,1,8000] -> logits [B,10].

    For vector fusions: fusion(image_featurizer(image), audio_featurizer(audio)).
    For token fusions (``fusion.uses_tokens``): the featurizers' conv maps,
    after the featurizers' own dropout, go to the fusion, and the featurizers'
    fc layers are removed (see ``_RemovedFC``).
    """

    def __init__(self, fusion="concat", dropout=0.5, image_dim=FEATURE_DIM, audio_dim=FEATURE_DIM,
                 audio_frontend=AudioFrontend(), **widths):
        super().__init__()
        if fusion == "late":
            raise ValueError("late fusion is LateFusionNet; use build_multimodal('late')")
        self.fusion_name = fusion
        self.image_featurizer = ImageFeaturizer(dropout, out_dim=image_dim)
        self.audio_featurizer = build_audio_featurizer(audio_frontend, dropout, audio_dim)
        token_options = {}
        if fusion in FUSIONS and FUSIONS[fusion].uses_tokens:
            self.image_featurizer.fc = _RemovedFC()
            self.audio_featurizer.fc = _RemovedFC()
            n_img = self.image_featurizer.map_channels
            n_aud = self.audio_featurizer.map_channels
            token_options = getattr(self.audio_featurizer, "token_options", {})  # mel: 25 time steps, unpooled
        else:
            n_img, n_aud = self.image_featurizer.out_dim, self.audio_featurizer.out_dim
        self.fusion = build_fusion(fusion, n_img, n_aud, **widths, **token_options)
        self.uses_tokens = self.fusion.uses_tokens
        self.head = nn.Sequential(nn.Linear(self.fusion.out_dim, HEAD_HIDDEN), nn.ReLU(),
                                  nn.Linear(HEAD_HIDDEN, NUM_CLASSES))

    def fused(self, image, audio):
        """The fused representation [B, fusion.out_dim] that the head classifies."""
        if self.uses_tokens:
            img = self.image_featurizer.dropout(self.image_featurizer.feature_map(image))
            aud = self.audio_featurizer.dropout(self.audio_featurizer.feature_map(audio))
        else:
            img, aud = self.image_featurizer(image), self.audio_featurizer(audio)
        return self.fusion(img, aud)

    def forward(self, image, audio):
        return self.head(self.fused(image, audio))


def entropy(logits):
    """The entropy (nats) of each row's softmax, in fp32: [B, C] -> [B, 1]."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1, keepdim=True)


def confidence_scaled(logits, gate):
    """One head's logits times exp(a + b * H), H the entropy of the head's own softmax: gate = (a, b).
    With b < 0 a head that is unsure of a pair counts for less in that pair's sum (fp32 out)."""
    return logits.float() * torch.exp(gate[0] + gate[1] * entropy(logits))


class LateFusionNet(nn.Module):
    """Late fusion: (image_classifier(f_img) + audio_classifier(f_aud)) / 2.

    Each classifier is fc(128 -> 10), like UnimodalNet's ``classifier``. The
    whole network is trained at once on the averaged logits; ``branch_logits``
    gives the two halves separately (for a missing-modality check).
    """

    fusion_name = "late"
    uses_tokens = False

    def __init__(self, dropout=0.5, image_dim=FEATURE_DIM, audio_dim=FEATURE_DIM, audio_frontend=AudioFrontend(),
                 calibrated=False, drops_blank_views=False, confidence_gate=False):
        super().__init__()
        # combine.py's fusion of two single-view runs: a view that is all zeros (missing) leaves the average,
        # so the fused run answers as the other view's run; it must see the views themselves, not features
        self.drops_blank_views = self.reads_raw_views = drops_blank_views
        self.image_featurizer = ImageFeaturizer(dropout, out_dim=image_dim)
        self.audio_featurizer = build_audio_featurizer(audio_frontend, dropout, audio_dim)
        self.image_classifier = nn.Linear(self.image_featurizer.out_dim, NUM_CLASSES)
        self.audio_classifier = nn.Linear(self.audio_featurizer.out_dim, NUM_CLASSES)
        if calibrated:  # --calibrate: each head's logits divided by its temperature (1, 1 until fitted)
            self.register_buffer("view_temperature", torch.ones(2))
        if confidence_gate:  # combine.py --gate confidence: rows (a, b) of the image and audio heads, 0 until fitted
            self.register_buffer("view_gate", torch.zeros(2, 2))

    def branch_logits(self, image, audio):
        """The two heads' logits, before any temperature."""
        return (self.image_classifier(self.image_featurizer(image)),
                self.audio_classifier(self.audio_featurizer(audio)))

    def forward(self, image, audio, present=None):
        """present: None, or a bool [B, 2] of which views (image, audio) each pair still has
        (modality dropout): a missing view's head is left out of that pair's average."""
        if present is None and self.drops_blank_views:
            present = torch.stack([image.flatten(1).abs().amax(1) > 0, audio.flatten(1).abs().amax(1) > 0], 1)
            present[~present.any(1)] = True  # neither view: the plain average, as good as any
        img_logits, aud_logits = self.branch_logits(image, audio)
        if hasattr(self, "view_temperature"):
            img_logits = img_logits / self.view_temperature[0].to(img_logits.dtype)
            aud_logits = aud_logits / self.view_temperature[1].to(aud_logits.dtype)
        if hasattr(self, "view_gate"):
            img_logits, aud_logits = (confidence_scaled(z, gate) for z, gate in zip((img_logits, aud_logits),
                                                                                     self.view_gate))
        if present is None:
            return (img_logits + aud_logits) / 2
        weight = present.to(img_logits.dtype)
        return (weight[:, :1] * img_logits + weight[:, 1:] * aud_logits) / weight.sum(1, keepdim=True)




class L2Normalize(nn.Module):
    """Scales each row to unit length (the last step of the mlp-bn projection head)."""

    def forward(self, x):
        return nn.functional.normalize(x, dim=-1)


def projection_head(kind, proj_dim, width=FEATURE_DIM):
    """A contrastive projection head on a 128-d featurizer output.

    mlp (the first recipe's): fc(128->128)-ReLU-fc(128->proj_dim), no normalisation, so the
    projections of a fresh network start nearly collapsed (image-image cosine ~0.99).
    mlp-bn: fc(128->128)-BatchNorm-ReLU-fc(128->proj_dim), then L2 norm: BatchNorm spreads the
    projections from the first step (SimCLR's head), and the unit length makes the dot product
    a cosine."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, proj_dim))
    if kind == "mlp-bn":
        return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, proj_dim),
                             L2Normalize())
    raise ValueError(f"unknown projection head {kind!r}; valid: {', '.join(PROJECTION_HEADS)}")


class ContrastiveModel(nn.Module):
    """Both featurizers, their projection heads and the loss (with its tau / bias) in one module.

    forward(image, audio) returns the contrastive loss of the batch; `embed`
    gives the projections, `features` the 128-d featurizer outputs. Keeping
    the loss inside makes model.state_dict() hold a learnable temperature and
    bias too, so checkpoints resume exactly; the featurizers keep the
    `image_featurizer.` / `audio_featurizer.` key prefixes that
    `load_featurizer_weights` reads (it ignores the other keys).
    """

    def __init__(self, loss, proj_dim, dropout=0.5, audio_frontend=AudioFrontend(), head="mlp"):
        super().__init__()
        self.image_featurizer = ImageFeaturizer(dropout)
        self.audio_featurizer = build_audio_featurizer(audio_frontend, dropout)
        self.image_proj = projection_head(head, proj_dim)
        self.audio_proj = projection_head(head, proj_dim)
        self.loss = loss

    def features(self, image, audio):
        return self.image_featurizer(image), self.audio_featurizer(audio)

    def embed(self, image, audio):
        f_img, f_aud = self.features(image, audio)
        return self.image_proj(f_img), self.audio_proj(f_aud)

    @property
    def bias(self):
        """NT-Log's bias b as a float (learned or fixed); None for NT-Xent, which has none."""
        return float(self.loss.bias.detach()) if hasattr(self.loss, "bias") else None

    def forward(self, image, audio):
        emb_image, emb_audio = self.embed(image, audio)
        with torch.autocast(emb_image.device.type, enabled=False):  # the loss in fp32 under any autocast
            return self.loss(emb_image.float(), emb_audio.float())


def build_multimodal(fusion, fused_dim=None, hidden_dim=None, heads=None, dropout=0.5,
                     image_dim=FEATURE_DIM, audio_dim=FEATURE_DIM, audio_frontend=AudioFrontend(), calibrated=False,
                     drops_blank_views=False, confidence_gate=False):
    """MultimodalNet with the named fusion, or LateFusionNet for ``"late"``.

    Width options left at None take the defaults of ``common.nets.fusions``
    (fused_dim 128, hidden_dim 256, heads 4); ``late`` ignores them.
    image_dim / audio_dim are the featurizers' output widths (the exam: 128 each);
    audio_frontend (an AudioFrontend) picks the audio featurizer (raw, the exam's, or mel);
    calibrated: late fusion with a temperature per head (--calibrate); drops_blank_views: late fusion
    leaving out a view that is all zeros (combine.py's runs); confidence_gate: late fusion weighing
    each head pair by pair by its own entropy (combine.py --gate confidence).
    """
    if fusion == "late":
        return LateFusionNet(dropout, image_dim=image_dim, audio_dim=audio_dim, audio_frontend=audio_frontend,
                             calibrated=calibrated, drops_blank_views=drops_blank_views,
                             confidence_gate=confidence_gate)
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSION_CHOICES)}")
    return MultimodalNet(fusion, dropout, image_dim=image_dim, audio_dim=audio_dim, audio_frontend=audio_frontend,
                         fused_dim=fused_dim, hidden_dim=hidden_dim, heads=heads)


def draw_present_views(batch, p):
    """Modality dropout's draw for one training batch: each pair, with probability p, loses one of
    its two views, the image or the audio with equal odds. Returns a bool [batch, 2]: the views
    (image, audio) each pair keeps. The draws come from torch's global generator, so --seed and
    the checkpointed RNG state govern them."""
    dropped = torch.rand(batch) < p
    image_goes = torch.rand(batch) < 0.5
    return torch.stack([~(dropped & image_goes), ~(dropped & ~image_goes)], dim=1)




def missing_view_stand_in(train_split, train_index, view, fill):
    """The input that replaces a missing view, shaped like one batch row [1, ...]: zeros, or the mean
    of that view over the training pairs train_split[train_index]. evaluate.py's missing-view
    measurements and train_multimodal.py's --modality-dropout both use it."""
    inputs = getattr(train_split, view)
    if fill == "zeros":
        return torch.zeros_like(inputs[:1])
    if fill == "train_mean":
        return inputs[train_index].mean(0, keepdim=True)
    raise ValueError(f"unknown stand-in {fill!r}; valid: {', '.join(STAND_INS)}")


def fill_missing(image, audio, present, stand_ins):
    """The batch with each missing view replaced by its stand-in (stand_ins: the image and the audio
    that a missing view becomes, zeros or the training mean, as evaluate.py uses)."""
    present = present.to(image.device)
    image = torch.where(present[:, 0].view(-1, 1, 1, 1), image, stand_ins[0].to(image.device, image.dtype))
    audio = torch.where(present[:, 1].view(-1, 1, 1), audio, stand_ins[1].to(audio.device, audio.dtype))
    return image, audio


def build_from_config(config):
    """The classifier a run trained, rebuilt from its config.json (weights not loaded).

    image / audio runs give Conv2Net / Conv1Net, multimodal runs the network with
    the run's fusion and widths. Raises ValueError for any other kind of run.
    """
    kind, args = config.get("model"), config.get("args", {})
    frontend = AudioFrontend.of(args)
    if kind == "image":
        return Conv2Net()
    if kind == "audio":
        return audio_classifier(frontend)
    if kind == "multimodal":
        return build_multimodal(args["fusion"], args.get("fused_dim"), args.get("hidden_dim"), args.get("heads"),
                                image_dim=args.get("image_dim", FEATURE_DIM),
                                audio_dim=args.get("audio_dim", FEATURE_DIM), audio_frontend=frontend,
                                calibrated=bool(args.get("calibrate")) and args.get("gate") != "confidence",
                                drops_blank_views=bool(args.get("experts")),
                                confidence_gate=args.get("gate") == "confidence")
    raise ValueError(f"a {kind!r} run has no classifier to evaluate (image, audio or multimodal runs only)")

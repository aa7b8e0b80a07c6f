"""The exam's two featurizers and the unimodal classifiers built on them.

Conv2Net (image) and Conv1Net (audio) each split into a `featurizer` that maps
an input to a 128-d vector and a `classifier` fc(128 -> 10). The split is what
lets the multimodal network and contrastive pre-training reuse the featurizers,
and `--init-from` load them by the `featurizer.` prefix of a state dict.
"""
import torch
from torch import nn

from .layers import Dropout, MaxPool2x2, PhaseSplitConv1d  # the exam's layers, computed faster

FEATURE_DIM = 128
NUM_CLASSES = 10


class Featurizer(nn.Module):
    """What both featurizers do with their conv stack: conv map -> dropout -> fc -> ReLU. The token
    fusions use the conv map itself (feature_map); everything else the 128-d vector (forward)."""

    def feature_map(self, x):
        """[B,1,28,28] -> [B,64,7,7] (image); [B,1,8000] -> [B,64,500] (audio)."""
        return self.conv(x)

    def head(self, fmap):
        """Conv map -> 128-d feature vector."""
        return torch.relu(self.fc(self.dropout(fmap.flatten(1))))

    def forward(self, x):
        return self.head(self.feature_map(x))


class ImageFeaturizer(Featurizer):
    """conv3x3(1->32)-ReLU-pool2, conv3x3(32->64)-ReLU-pool2, dropout, fc(3136->128)-ReLU."""

    map_channels = 64  # channels of the 7x7 conv map (tokens for attention-tokens fusion)

    def __init__(self, dropout=0.5, out_dim=FEATURE_DIM):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), MaxPool2x2(),
        )
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(64 * 7 * 7, out_dim)
        self.out_dim = out_dim


class AudioFeaturizer(Featurizer):
    """conv(1->32,k100,s4)-ReLU, conv(32->64,k25,s4)-ReLU, dropout, fc(64*500->128)-ReLU.

    Paddings 48 and 12 make each stride-4 conv exactly quarter the length
    (8000 -> 2000 -> 500), the exam's "same"-style padding. The first conv is computed
    by PhaseSplitConv1d (same layer, faster); the second, whose 25 taps do not split
    into 4 phases, measured no faster that way and stays nn.Conv1d.
    """

    map_channels = 64  # channels per time step (500 steps) of the conv map

    def __init__(self, dropout=0.5, out_dim=FEATURE_DIM):
        super().__init__()
        self.conv = nn.Sequential(
            PhaseSplitConv1d(1, 32, kernel_size=100, stride=4, padding=48), nn.ReLU(),
            nn.Conv1d(32, 64, kernel_size=25, stride=4, padding=12), nn.ReLU(),
        )
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(64 * 500, out_dim)
        self.out_dim = out_dim


class UnimodalNet(nn.Module):
    """A featurizer followed by fc(128 -> 10): the exam's Conv2Net / Conv1Net."""

    def __init__(self, featurizer):
        super().__init__()
        self.featurizer = featurizer
        self.classifier = nn.Linear(featurizer.out_dim, NUM_CLASSES)

    def forward(self, x):
        return self.classifier(self.featurizer(x))


def Conv2Net(dropout=0.5):
    return UnimodalNet(ImageFeaturizer(dropout))


def Conv1Net(dropout=0.5):
    return UnimodalNet(AudioFeaturizer(dropout))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

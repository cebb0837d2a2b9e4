"""Expression consistency: a frozen FER classifier that the FER -> person translation must agree with.

Without it, a CycleGAN whose person domain is one face learns to paint that face over every
FER image and hides the source in invisible detail to pass the cycle loss: the expression,
the one thing the labels are about, is lost. This is CyCADA's semantic-consistency loss
(Hoffman et al. 2018): a classifier trained on the labelled domain (FER) looks at a FER image
and at its translation, and the generator is penalised when the two predictions differ. The
target is the classifier's soft prediction on the source rather than the dataset label, so
the generator keeps what is visible in the face and is not asked to fix FER's label noise.

The classifier is the CNN the classify stage trains too (`fertransfer.expression.cnn`): one
place for the network that reads expressions. It sees translations exactly as it sees FER faces: gray,
resized to its input size, centre crop, standardised per image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fertransfer.expression.cnn import CnnClassifier, standardise

from .tensors import match_channels


class ExpressionConsistency(nn.Module):
    """Loss between a frozen classifier's predictions on source images and on their translations."""

    def __init__(self, classifier: CnnClassifier):
        super().__init__()
        self.net = classifier.model
        self.channels, self.size, self.crop = classifier.channels, classifier.size, classifier.config.crop
        self.net.eval()  # batch norm uses its running statistics; dropout is off
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ExpressionConsistency:
        return super().train(False)  # frozen: never back to training mode (DDP, .train() calls)

    def classifier_input(self, x: torch.Tensor, jitter: int = 0) -> torch.Tensor:
        """Generator images (N, C, H, W) in [-1, 1] -> what the classifier was trained on; with `jitter`,
        the crop moved by up to that many pixels each way and flipped half the time (torch's RNG)."""
        x = match_channels(x.float(), self.channels)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        top = left = (self.size - self.crop) // 2
        if jitter:
            x = F.pad(x, (jitter,) * 4, mode="replicate")
            dy, dx = torch.randint(0, 2 * jitter + 1, (2,)).tolist()
            top, left = top + dy, left + dx
            x = x.flip(-1) if torch.rand(()).item() < 0.5 else x
        x = x[..., top : top + self.crop, left : left + self.crop]
        return standardise((x + 1.0) * 127.5)

    def logits(self, x: torch.Tensor, jitter: int = 0) -> torch.Tensor:
        return self.net(self.classifier_input(x, jitter))

    def forward(self, translated: torch.Tensor, source: torch.Tensor, jitter: int = 0) -> torch.Tensor:
        """Cross-entropy of the translation's prediction against the source's soft prediction.

        Always in fp32, also inside the training step's bf16 autocast: the loss lives on small
        differences between two soft predictions, which bf16's 8-bit mantissa rounds away (the
        small classifier costs little next to the generators). `jitter` moves and flips the
        translation (not the source) before the classifier reads it: a change the classifier reads
        as an expression only at one exact position is an adversarial pattern, not a face's."""
        with torch.autocast(translated.device.type, enabled=False):
            with torch.no_grad():
                target = F.softmax(self.logits(source.float()), dim=1)
            return -(target * F.log_softmax(self.logits(translated.float(), jitter), dim=1)).sum(1).mean()

"""The person score: does a translation look like the person to someone who knows them?

A domain classifier that had no part in training the generator: a small CNN trained to tell
the person's *held-out* crops (footage the generator never saw) from FER validation faces. The
person score of a set of images is the share it takes for the person. Judge agreement says
whether a translation kept the expression; the person score says whether it reached the
person. A near-identity map scores high on the first and near zero on the second.

Every image, person crop, FER face or translation, goes through the same gray resize (gray,
to the generator's size, then to `size`), so that resolution and colour depth are no cue: the
classifier has to look at the face. Training is balanced (half of each batch from each side),
seeded and a fixed number of steps; a part of the person's crops is kept out of its training
as a control (its score on them should be near 1; on untranslated FER faces near 0).

A third control says whether the score can be met without translating: hybrid images, a person
crop's blur plus a FER face's fine lines (what `reference_detail` makes untrained, and what took
both axes on W009 in session 24). Its share of them, per detail scale, is `blend_control`; with
`blend_negatives` they are also among its negatives, so that it must read the person's own detail.

Arrays in, arrays out; no files (the cyclegan stage saves and loads it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fertransfer.data.images import fit_square, to_channels

from .tensors import hybrids

MIN_CROPS = 5  # fewer held-out person crops: no score (nothing to learn the person from)
WARN_CROPS = 20  # fewer: the score is computed, with a warning naming the count
# The hybrids' fine-detail scales, in pixels at the generator's size (session 24's W009 hybrids:
# 1 and 2 met both axes' numbers, 4 kept the FER face's look).
BLEND_SIGMAS = (1.0, 2.0, 4.0)


@dataclass
class PersonScoreConfig:
    size: int = 32  # every image ends at size x size gray
    steps: int = 300
    batch_size: int = 32  # per side: each step sees this many person crops and as many FER faces
    width: int = 16  # channels of the first of three conv blocks (doubled per block)
    lr: float = 2e-3
    control_fraction: float = 0.3  # share of the person's crops kept out of training, as the control
    blend_negatives: float = 0.0  # share of each batch's FER half that is hybrids (`blends`) instead
    seed: int = 0


def gray_resize(images: np.ndarray, via_size: int, size: int) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> (N, size, size, 1): gray, to via_size (the generator's), then to size."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    out = np.empty((len(images), size, size, 1), np.uint8)
    for i, image in enumerate(images):
        gray = fit_square(to_channels(image, 1), via_size)
        out[i] = fit_square(gray.reshape(via_size, via_size, 1), size).reshape(size, size, 1)
    return out


def blends(person: np.ndarray, fer: np.ndarray, via_size: int, sigma: float, seed: int = 0) -> np.ndarray:
    """Hybrid images, gray at the generator's size: a person crop's Gaussian blur plus a FER face's
    detail finer than `sigma` pixels, one per FER face (crops drawn at random). uint8 (N, via, via, 1)."""
    rng = np.random.default_rng(seed)
    crops = _tensor(gray_resize(person, via_size, via_size))[rng.integers(0, len(person), len(fer))]
    faces = _tensor(gray_resize(fer, via_size, via_size))
    return ((hybrids(crops, faces, sigma) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class DomainNet(nn.Module):
    """A 3x3 convolution, then four stride-2 blocks (width doubling), global average pooling, one
    logit: the person. Small on purpose: it trains in seconds on one CPU thread."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
        for cout in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, s, s, 1) uint8 -> (N, 1, s, s) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 127.5 - 1.0


def _augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random mirror and a shift of up to `shift` pixels (reflect-padded): a few crops go further."""
    n, _, s, _ = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    top = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    return torch.stack([padded[i, :, top[i] : top[i] + s, left[i] : left[i] + s] for i in range(n)])


class PersonScorer:
    """The trained domain classifier; `share(images)` is the person score of a set."""

    def __init__(self, net: DomainNet, via_size: int, config: PersonScoreConfig):
        self.net = net.eval()
        self.via_size = via_size
        self.config = config

    @torch.no_grad()
    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """P(person) per image (any size, gray or RGB uint8)."""
        if len(images) == 0:
            return np.zeros(0, np.float32)
        x = _tensor(gray_resize(images, self.via_size, self.config.size))
        return np.concatenate([torch.sigmoid(self.net(x[i : i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    def is_person(self, images: np.ndarray) -> np.ndarray:
        return self.probabilities(images) > 0.5

    def share(self, images: np.ndarray) -> float:
        """The share of `images` taken for the person (the person score); nan for no images."""
        return float(self.is_person(images).mean()) if len(images) else float("nan")

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "via_size": self.via_size, "weights": self.net.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict) -> PersonScorer:
        config = PersonScoreConfig(**state["config"])
        net = DomainNet(config.width)
        net.load_state_dict(state["weights"])
        return cls(net, int(state["via_size"]), config)


def split_control(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, control) indices of the person's crops: at least one in each once there are two."""
    control = min(count - 1, max(1, int(round(count * fraction)))) if count >= 2 else 0
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[control:]), np.sort(order[:control])


def train_person_scorer(person: np.ndarray, fer: np.ndarray, via_size: int,
                        config: PersonScoreConfig | None = None,
                        control_fer: np.ndarray | None = None) -> tuple[PersonScorer, dict]:
    """Train on the person's held-out crops (minus the control part) against FER faces (and, with
    `config.blend_negatives`, hybrids of the two at BLEND_SIGMAS).

    Returns the scorer and what it was trained on: counts, the control share on the kept-out
    person crops, its training accuracy, and with `control_fer` (FER faces it never saw) its share
    of hybrids of those with the kept-out crops. Raises ValueError with fewer than MIN_CROPS crops.
    """
    config = config or PersonScoreConfig()
    if len(person) < MIN_CROPS:
        raise ValueError(f"{len(person)} held-out person crop(s): at least {MIN_CROPS} are needed to train "
                         "the person score's classifier")
    if len(fer) < 2:
        raise ValueError(f"{len(fer)} FER image(s): the person score's classifier needs FER faces to train on")
    train_index, control_index = split_control(len(person), config.control_fraction, config.seed)
    x_person = _tensor(gray_resize(person[train_index], via_size, config.size))
    x_fer = _tensor(gray_resize(fer, via_size, config.size))
    x_blend = (_tensor(gray_resize(np.concatenate([blends(person[train_index], fer, via_size, sigma, config.seed + k)
                                                    for k, sigma in enumerate(BLEND_SIGMAS)]), via_size, config.size))
               if config.blend_negatives > 0 else None)
    generator = torch.Generator().manual_seed(config.seed)
    threads = torch.get_num_threads()
    torch.manual_seed(config.seed)
    net = DomainNet(config.width)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.2)
    half = config.batch_size
    hybrids = int(round(half * config.blend_negatives)) if x_blend is not None else 0
    targets = torch.cat([torch.ones(half), torch.zeros(half)])
    try:
        torch.set_num_threads(1)  # small enough that one thread is the fastest on a shared CPU
        net.train()
        for _ in range(config.steps):
            p = torch.randint(0, len(x_person), (half,), generator=generator)
            f = torch.randint(0, len(x_fer), (half - hybrids,), generator=generator)
            parts = [x_person[p], x_fer[f]]
            if hybrids:
                parts.append(x_blend[torch.randint(0, len(x_blend), (hybrids,), generator=generator)])
            batch = _augment(torch.cat(parts), generator)
            loss = F.binary_cross_entropy_with_logits(net(batch), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        scorer = PersonScorer(net, via_size, config)
        info = {
            "person_crops": int(len(person)), "person_train": int(len(train_index)),
            "person_control": int(len(control_index)), "fer_train": int(len(fer)),
            "person_control_score": round(scorer.share(person[control_index]), 4) if len(control_index) else None,
            "train_accuracy": round(float((scorer.share(person[train_index]) + 1 - scorer.share(fer)) / 2), 4),
            "final_loss": round(float(loss.item()), 4),
            "blend_control": ({f"{sigma:g}": round(scorer.share(blends(person[control_index], control_fer, via_size,
                                                                       sigma, config.seed)), 4)
                               for sigma in BLEND_SIGMAS}
                              if control_fer is not None and len(control_fer) and len(control_index) else None),
            "config": asdict(config), "via_size": via_size,
        }
    finally:
        torch.set_num_threads(threads)
    return scorer, info


def crops_warning(count: int) -> str | None:
    """The warning a score from few held-out person crops carries, or None."""
    if count < WARN_CROPS:
        return (f"person score from only {count} held-out person crops (fewer than {WARN_CROPS}): a rough figure; "
                "the footage held out is swd_images, at most a fifth of it: more footage, or labelled footage "
                "(extract's person_test), gives a firmer one")
    return None


def blends_note(control: dict | None) -> str:
    """The hybrid control in words, e.g. 'σ1 0.96, σ2 0.49, σ4 0.07' ('not measured' without one)."""
    if not control:
        return "not measured"
    return ", ".join(f"σ{sigma} {share:.2f}" for sigma, share in control.items())


def person_score_by_class(scorer: PersonScorer, images: np.ndarray, labels: np.ndarray,
                          class_names: list[str] | tuple[str, ...]) -> dict:
    """The person score overall and per source class (classes with no image are left out)."""
    taken = scorer.is_person(images) if len(images) else np.zeros(0, bool)
    per_class = {name: round(float(taken[labels == k].mean()), 4)
                 for k, name in enumerate(class_names) if np.any(labels == k)}
    return {"images": int(len(images)), "overall": round(float(taken.mean()), 4) if len(taken) else None,
            "per_class": per_class}

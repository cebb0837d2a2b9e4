"""CycleGAN training, readable top to bottom (in the spirit of nanoGPT's train.py).

One step: sample an unpaired batch from each domain (random crop + flip), update both
generators with adversarial + cycle + identity losses (+ expression consistency: a frozen FER
classifier must read the same expression in F(b) as in b, see expression.py), then both
discriminators on real images and on fakes from a pool of past fakes. Adam(2e-4, 0.5), constant learning rate,
then linear decay to zero over the last `decay_steps`. Every `sample_every` steps a sample
grid and the SWD metric; every `checkpoint_every` steps a checkpoint.

The loop is the same for every `model`; what a step does is the objective's (`build_objective`):
`CycleGAN` here, the shared-encoder autoencoder in autoencoder.py, CUT/FastCUT in cut.py, the
edit of the person's own crops in reference.py. All export G_AB and G_BA, so samples, SWD,
checkpoints, resume and `Translator` are one path.

Multi-GPU: run this module under `torchrun --nproc_per_node N -m fertransfer.cyclegan.train
SPEC.json` (the stage does this when `processes > 1`). It uses plain torch.distributed
DDP: no extra dependency, and the loop stays explicit. Each rank draws its own batches;
rank 0 alone writes files. With one process nothing of this is touched.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fertransfer.data import write_png
from fertransfer.devices import resolve_device, use_bf16
from fertransfer.options import declared_default
from fertransfer.progress import progress as progress_bar

from .autoencoder import SharedAutoencoder
from .checkpoint import ARCHITECTURE_KEYS, load_newest_valid, save_checkpoint
from .cut import ContrastiveTranslation
from .data import Domains
from .expression import ExpressionConsistency
from .losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from .models import MODELS, build_discriminator, build_generator
from .options import CycleganOptions
from .parts import ImagePool, adam, descend, set_requires_grad, source_losses, structure_distance, with_hybrids  # noqa: F401  (re-exported)
from .reference import ReferenceEdit
from .swd import swd
from .tensors import from_tensor, match_channels, to_tensor

log = logging.getLogger("fertransfer.cyclegan")

SWD_COLUMNS = ("step", "AtoB_translated", "AtoB_untranslated", "BtoA_translated", "BtoA_untranslated")


def _option(name: str):
    """The [cyclegan] option's default: each knob the loop shares with the stage is declared once."""
    return declared_default(CycleganOptions, name)


@dataclass
class TrainConfig:
    """The loop's settings: the [cyclegan] options it uses (their defaults taken from there), plus
    what the stage derives (load_size, seed, device) and fixed choices of the recipe."""

    model: str = _option("model")  # the objective and network layout (models.MODELS, build_objective)
    image_size: int = _option("image_size")
    load_size: int = 72  # images are resized to this, then randomly cropped to image_size
    a_channels: int = _option("a_channels")
    b_channels: int = _option("b_channels")
    generator: str = _option("generator")
    ngf: int = _option("ngf")
    ndf: int = _option("ndf")
    n_layers: int = _option("n_layers")
    gan_mode: str = _option("gan_mode")
    diffaugment: tuple[str, ...] = ()  # what every image a discriminator scores goes through (diffaugment.py)
    lambda_cycle: float = _option("lambda_cycle")
    lambda_identity: float = _option("lambda_identity")  # times lambda_cycle
    lambda_expression: float = _option("lambda_expression")  # expression consistency of F(b) with b (needs a classifier)
    expression_jitter: int = _option("expression_jitter")  # random shift (px) and flip of F(b) before that classifier
    lambda_structure: float = _option("lambda_structure")  # L1 between the coarse gray layouts of F(b) and b
    structure_scale: int = _option("structure_scale")  # the layout is the image average-pooled by this factor
    structure_crop: float = _option("structure_crop")  # the centred part of the image whose layout is held
    lambda_gp: float = 10.0  # wgangp only
    lambda_r1: float = _option("lambda_r1")  # R1 penalty on the discriminators' real images (0: off)
    hybrid_fakes: bool = _option("hybrid_fakes")  # D_A also sees hybrids (person blur + FER lines) as fakes
    # autoencoder (autoencoder.py)
    bottleneck: int = _option("bottleneck")  # size of the shared code: small, so that identity lives in the decoders
    warp: float = _option("warp")  # strength of the random warp of the encoder's inputs (0: off)
    lambda_reconstruction: float = _option("lambda_reconstruction")  # L1 of each decoder's reconstruction
    lambda_adversarial: float = _option("lambda_adversarial")  # on F(b) (autoencoder, cut; 0: no discriminator)
    # cut, fastcut (cut.py)
    lambda_nce: float | None = _option("lambda_nce")  # PatchNCE weight; None: the paper's (1 for cut, 10 for fastcut)
    nce_patches: int = _option("nce_patches")  # patches per image and layer
    nce_temperature: float = 0.07
    # reference (reference.py)
    reference_bank: int = _option("reference_bank")  # the person's crops the generator starts from (0: all)
    reference_detail: float = _option("reference_detail")  # share of the FER face's fine detail put on the crop
    reference_detail_sigma: float = _option("reference_detail_sigma")  # the blur that parts fine detail off
    pool_size: int = _option("pool_size")
    lr: float = _option("lr")
    beta1: float = 0.5
    batch_size: int = _option("batch_size")
    steps: int = _option("steps")  # with a time budget: the upper bound
    decay_steps: int | None = _option("decay_steps")  # None: the second half of training
    time_budget_minutes: float = _option("time_budget_minutes")  # > 0: steps resolved from the measured speed
    flip: bool = True
    checkpoint_every: int = _option("checkpoint_every")
    keep_checkpoints: int = _option("keep_checkpoints")
    sample_every: int = _option("sample_every")
    sample_images: int = _option("sample_images")
    swd_every_sample: bool = True
    seed: int = 0
    deterministic: bool = _option("deterministic")
    device: str = "auto"
    precision: str = _option("precision")  # auto (bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16), fp32, bf16
    threads: int = _option("threads")
    compile: bool = _option("compile")

    def architecture(self) -> dict:
        return {k: getattr(self, k) for k in ARCHITECTURE_KEYS}


# --- small pieces ---------------------------------------------------------------------


class LinearDecay:
    """LR factor: 1 for the first steps, then linearly down to (almost) zero at the end."""

    def __init__(self, steps: int, decay_steps: int):
        self.resize(steps, decay_steps)

    def resize(self, steps: int, decay_steps: int) -> None:
        """A new length (a time budget resolved into steps): the schedulers hold this very object."""
        self.decay_steps = min(decay_steps, steps)
        self.constant = steps - self.decay_steps

    def __call__(self, step: int) -> float:
        return 1.0 - max(0, step - self.constant) / float(self.decay_steps + 1)


CALIBRATION_STEPS = 50  # steps timed before a time budget is turned into a number of steps
CALIBRATION_SKIP = 5  # the first steps (allocations, oneDNN's first calls) are not timed


def budget_steps(budget_seconds: float, elapsed: float, done: int, seconds_per_step: float, upper: int) -> int:
    """The steps a time budget holds: those done plus what the time left buys at the measured
    speed, less 5% for the sample grids, SWD and checkpoints; at most `upper`, at least `done`."""
    left = max(0.0, budget_seconds - elapsed) * 0.95
    return int(min(upper, max(done, done + left // max(seconds_per_step, 1e-9))))


def calibration_step(cfg: TrainConfig) -> int:
    """The step at which a time budget is resolved: before the first checkpoint, so that every
    checkpoint carries it (resume is exact) and while the learning rate is still constant."""
    return max(1, min(CALIBRATION_STEPS, cfg.checkpoint_every, cfg.steps))


class TimeBudget:
    """`time_budget_minutes` turned into a number of steps, once, from the speed of the first timed
    steps of a run; what it resolved to is kept in every checkpoint, so a resumed run keeps it."""

    def __init__(self, cfg: TrainConfig, start: int, resolved: dict | None):
        self.cfg, self.resolved = cfg, resolved
        # Not yet resolved (a fresh run; or a checkpoint of a run without one): after a few timed steps.
        self.resolve_at = start + calibration_step(cfg) if cfg.time_budget_minutes > 0 and resolved is None else None
        self.first_timed = start + min(CALIBRATION_SKIP, calibration_step(cfg) - 1)
        self.seconds, self.steps = 0.0, 0

    @property
    def total(self) -> int:
        """The run's length: the resolved budget, else cfg.steps."""
        return int(self.resolved["steps"]) if self.resolved else self.cfg.steps

    def observe(self, step: int, step_seconds: float, elapsed: float, world: int) -> bool:
        """Time one step; True when this step resolved the budget (every rank gets rank 0's figure)."""
        if self.resolve_at is None:
            return False
        if step >= self.first_timed:
            self.seconds += step_seconds
            self.steps += 1
        done = step + 1
        if done != self.resolve_at:
            return False
        cfg = self.cfg
        per_step = self.seconds / max(1, self.steps)
        resolved = [budget_steps(cfg.time_budget_minutes * 60, elapsed, done, per_step, cfg.steps)]
        if world > 1:
            dist.broadcast_object_list(resolved, src=0)
        self.resolved = {"minutes": cfg.time_budget_minutes, "steps": resolved[0], "upper_bound": cfg.steps,
                         "resolved_at_step": done, "seconds_per_step": round(per_step, 4)}
        self.resolve_at = None
        return True


class Generators(nn.Module):
    """Both generators in one forward, so that DDP sees one call per step.

    With the identity loss each generator translates its own domain's images and is shown its
    target domain's images in one call (a batch of two halves): instance norm works per image, so
    the outputs are those of two calls, and one call of twice the batch was about 1.2x faster per
    training step on a 1-thread CPU at batch 1 (docs/benchmarks.md)."""

    def __init__(self, G_AB: nn.Module, G_BA: nn.Module, a_channels: int, b_channels: int, identity: bool):
        super().__init__()
        self.G_AB, self.G_BA = G_AB, G_BA
        self.a_channels, self.b_channels, self.identity = a_channels, b_channels, identity

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.identity:  # a generator shown its own target domain should leave it alone
            out = {}
            out["fake_B"], out["same_B"] = self.G_AB(torch.cat([real_A, match_channels(real_B, self.a_channels)])).chunk(2)
            out["fake_A"], out["same_A"] = self.G_BA(torch.cat([real_B, match_channels(real_A, self.b_channels)])).chunk(2)
        else:
            out = {"fake_B": self.G_AB(real_A), "fake_A": self.G_BA(real_B)}
        out["rec_A"] = self.G_BA(out["fake_B"])
        out["rec_B"] = self.G_AB(out["fake_A"])
        # In fp32 (a no-op unless a generator ends in bf16 under autocast): the gradients that several
        # losses send into one image then add up in fp32, and a small one (the expression loss's) is
        # not rounded away against a large one before it reaches the generator.
        return {name: image.float() for name, image in out.items()}


class Discriminators(nn.Module):
    """Both discriminators on real and pooled fake images, in one forward for DDP. Each scores
    its real and fake images in one call (instance norm is per image), which is cheaper than two."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module):
        super().__init__()
        self.D_A, self.D_B = D_A, D_B

    def forward(self, real_A, fake_A, real_B, fake_B) -> tuple[torch.Tensor, ...]:
        real_A_score, fake_A_score = self.D_A(torch.cat([real_A, fake_A])).split([len(real_A), len(fake_A)])
        real_B_score, fake_B_score = self.D_B(torch.cat([real_B, fake_B])).split([len(real_B), len(fake_B)])
        return real_A_score, fake_A_score, real_B_score, fake_B_score


class CycleGAN:
    """The CycleGAN objective (Zhu et al. 2017): two generators, two discriminators, adversarial +
    cycle + identity losses, plus the expression and structure losses on F(b).

    An objective is what the training loop needs of a model, and all it needs: `nets` (saved and
    loaded by name; G_AB and G_BA translate, for samples, SWD and the exported latest.pt),
    `optimizers` (one learning-rate schedule each), `pools` (per-process state kept in checkpoints),
    `columns` (its losses.csv columns), `shown` (the progress bar's) and `step()`. The autoencoder
    and CUT objectives (autoencoder.py, cut.py) have the same shape."""

    columns = ("G", "G_AB", "G_BA", "cycle_A", "cycle_B", "same_A", "same_B", "expression", "structure", "D_A", "D_B")
    shown = ("G", "D_A", "D_B", "cycle_A", "cycle_B")

    def __init__(self, cfg: TrainConfig, expression: ExpressionConsistency | None, wrap: Callable[[nn.Module], nn.Module]):
        self.cfg, self.expression = cfg, expression
        a, b = cfg.a_channels, cfg.b_channels
        G_AB = build_generator(cfg.generator, a, b, cfg.ngf, cfg.image_size)
        G_BA = build_generator(cfg.generator, b, a, cfg.ngf, cfg.image_size)
        D_A, D_B = (build_discriminator(c, cfg.ndf, cfg.n_layers, cfg.diffaugment) for c in (a, b))
        self.nets = {"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}
        self.pools = {"pool_A": ImagePool(cfg.pool_size), "pool_B": ImagePool(cfg.pool_size)}
        self.identity = cfg.lambda_identity > 0
        self.generators = wrap(Generators(G_AB, G_BA, a, b, self.identity))
        self.discriminators = wrap(Discriminators(D_A, D_B))

    def make_optimizers(self) -> None:
        n, cfg = self.nets, self.cfg
        self.optimizers = {
            "G": adam(cfg, [*n["G_AB"].parameters(), *n["G_BA"].parameters()]),
            "D": adam(cfg, [*n["D_A"].parameters(), *n["D_B"].parameters()]),
        }

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor, rng: np.random.Generator, autocast) -> dict[str, torch.Tensor]:
        cfg, l1 = self.cfg, F.l1_loss
        D_A, D_B = self.nets["D_A"], self.nets["D_B"]
        losses: dict[str, torch.Tensor] = {}
        # 1. Generators: fool both discriminators, and come back to the input after a round trip.
        set_requires_grad([D_A, D_B], False)
        with autocast():
            out = self.generators(real_A, real_B)
            # The raw discriminators (not the DDP wrapper): their gradients are not used here.
            losses["G_AB"] = generator_loss(cfg.gan_mode, D_B(out["fake_B"]))
            losses["G_BA"] = generator_loss(cfg.gan_mode, D_A(out["fake_A"]))
            losses["cycle_A"] = cfg.lambda_cycle * l1(out["rec_A"].float(), real_A)
            losses["cycle_B"] = cfg.lambda_cycle * l1(out["rec_B"].float(), real_B)
            if self.identity:
                weight = cfg.lambda_cycle * cfg.lambda_identity
                losses["same_A"] = weight * l1(out["same_A"].float(), real_A)
                losses["same_B"] = weight * l1(out["same_B"].float(), real_B)
            losses.update(source_losses(cfg, self.expression, out["fake_A"], real_B))
            loss_G = losses["G"] = sum(losses.values())
        opt_G, opt_D = self.optimizers["G"], self.optimizers["D"]
        descend(opt_G, loss_G)

        # 2. Discriminators: real images against fakes drawn from the pools of past fakes.
        set_requires_grad([D_A, D_B], True)
        fake_A = self.pools["pool_A"].query(out["fake_A"].detach().float(), rng)
        fake_B = self.pools["pool_B"].query(out["fake_B"].detach().float(), rng)
        with autocast():
            real_A_score, fake_A_score, real_B_score, fake_B_score = self.discriminators(
                real_A, with_hybrids(cfg, fake_A, real_A, real_B, rng), real_B, fake_B)
            loss_D_A = discriminator_loss(cfg.gan_mode, real_A_score.float(), fake_A_score.float())
            loss_D_B = discriminator_loss(cfg.gan_mode, real_B_score.float(), fake_B_score.float())
        if cfg.gan_mode == "wgangp":
            loss_D_A = loss_D_A + gradient_penalty(D_A, real_A, fake_A, cfg.lambda_gp)
            loss_D_B = loss_D_B + gradient_penalty(D_B, real_B, fake_B, cfg.lambda_gp)
        # R1 is left out of the logged D losses, which stay comparable across settings.
        penalty = r1_penalty(D_A, real_A, cfg.lambda_r1) + r1_penalty(D_B, real_B, cfg.lambda_r1) if cfg.lambda_r1 else 0
        descend(opt_D, loss_D_A + loss_D_B + penalty)
        losses["D_A"], losses["D_B"] = loss_D_A, loss_D_B
        return {k: v.detach() for k, v in losses.items()}


def build_objective(cfg: TrainConfig, expression: ExpressionConsistency | None,
                    wrap: Callable[[nn.Module], nn.Module], person: np.ndarray):
    """The objective `cfg.model` names (models.MODELS); `person` (domain A's training images) is
    what the reference model starts from."""
    if cfg.model == "cyclegan":
        return CycleGAN(cfg, expression, wrap)
    if cfg.model == "autoencoder":
        return SharedAutoencoder(cfg, expression, wrap)
    if cfg.model in ("cut", "fastcut"):
        return ContrastiveTranslation(cfg, expression, wrap)
    if cfg.model == "reference":
        return ReferenceEdit(cfg, expression, wrap, person)
    raise ValueError(f"unknown model '{cfg.model}'; choose one of {', '.join(MODELS)}")


def sample_batch(images: np.ndarray, rng: np.random.Generator, batch_size: int, size: int, flip: bool) -> np.ndarray:
    """Random images, each randomly cropped to size x size and flipped left-right half the time."""
    index = rng.integers(0, len(images), batch_size)
    load = images.shape[1]
    tops = rng.integers(0, load - size + 1, batch_size)
    lefts = rng.integers(0, load - size + 1, batch_size)
    flips = rng.random(batch_size) < 0.5
    batch = []
    for i, top, left, f in zip(index, tops, lefts, flips):
        crop = images[i, top : top + size, left : left + size]
        batch.append(crop[:, ::-1] if flip and f else crop)
    return np.stack(batch)


def rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(rng: np.random.Generator, state: dict, device: torch.device) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class CsvLog:
    """A CSV that, when resuming, first drops rows written after the checkpoint's step."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_until: int | None):
        self.path, self.columns = path, columns
        rows = []
        if keep_until is not None and path.exists():
            rows = self.kept_rows(path, keep_until)
        self.handle = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.handle, columns)
        self.writer.writeheader()
        self.writer.writerows(rows)

    @staticmethod
    def kept_rows(path: Path, keep_until: int) -> list[dict]:
        """Rows up to the checkpoint's step; rows cut short or unreadable (a crash mid-write) are
        dropped with a warning naming the file."""
        kept, bad = [], 0
        try:
            with open(path, newline="", errors="replace") as handle:
                for row in csv.DictReader(handle):
                    try:
                        step = int(row["step"])
                    except (KeyError, TypeError, ValueError):
                        bad += 1
                        continue
                    if any(value is None for value in row.values()):  # fewer fields than the header: cut short
                        bad += 1
                    elif step <= keep_until:
                        kept.append(row)
        except (OSError, csv.Error) as error:
            log.warning("%s: unreadable (%s); its rows before step %d are lost", path, error, keep_until)
            return []
        if bad:
            log.warning("%s: %d unreadable row(s) dropped", path, bad)
        return kept

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# --- evaluation: sample grids and SWD ------------------------------------------------


@torch.no_grad()
def translate_array(G: nn.Module, images: np.ndarray, in_channels: int, device: torch.device,
                    autocast, batch_size: int = 32) -> np.ndarray:
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], in_channels, device)
        with autocast():
            outs.append(from_tensor(G(x).float()))
    return np.concatenate(outs)


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


def sample_grid(rows: list[list[np.ndarray]], labels: list[str], min_tile: int = 96) -> np.ndarray:
    """Tiles (all the same size) in rows, with a gap between the A and B halves and a header."""
    import cv2

    tile = rows[0][0].shape[0]
    scale = max(1, -(-min_tile // tile))
    t, gap, header = tile * scale, 6, 18
    half = len(rows[0]) // 2
    width = len(rows[0]) * t + gap
    grid = np.full((header + len(rows) * t, width, 3), 255, np.uint8)
    for c, label in enumerate(labels):
        x = c * t + (gap if c >= half else 0)
        cv2.putText(grid, label, (x + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            x = c * t + (gap if c >= half else 0)
            big = np.repeat(np.repeat(_rgb(image[None])[0], scale, 0), scale, 1)
            grid[header + r * t : header + (r + 1) * t, x : x + t] = big
    return grid


class Sampler:
    """The sample grids (a fixed batch of held-out faces) and SWD on the held-out sets (rank 0)."""

    def __init__(self, cfg: TrainConfig, domains: Domains, out_dir: Path, device: torch.device, autocast):
        rows = max(1, min(cfg.sample_images, len(domains.held_a), len(domains.held_b)))
        self.fixed_a, self.fixed_b = domains.held_a[:rows], domains.held_b[:rows]
        self.cfg, self.domains, self.device, self.autocast = cfg, domains, device, autocast
        self.samples_dir = out_dir / "samples"
        self.untranslated: dict[str, float] = {}

    def __call__(self, G_AB: nn.Module, G_BA: nn.Module, step: int, with_swd: bool) -> dict | None:
        """Write samples/step_<step>.png; with_swd: also return the SWD row for swd.csv."""
        a, b, device, autocast, seed = self.cfg.a_channels, self.cfg.b_channels, self.device, self.autocast, self.cfg.seed
        for net in (G_AB, G_BA):
            net.eval()
        fake_b = translate_array(G_AB, self.fixed_a, a, device, autocast)
        fake_a = translate_array(G_BA, self.fixed_b, b, device, autocast)
        rec_a = translate_array(G_BA, fake_b, b, device, autocast)
        rec_b = translate_array(G_AB, fake_a, a, device, autocast)
        tiles = [[self.fixed_a[i], fake_b[i], rec_a[i], self.fixed_b[i], fake_a[i], rec_b[i]]
                 for i in range(len(self.fixed_a))]
        grid = sample_grid(tiles, ["A", "G(A)", "F(G(A))", "B", "F(B)", "G(F(B))"])
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        write_png(self.samples_dir / f"step_{step:06d}.png", grid)
        result = None
        if with_swd:
            held_a, held_b = self.domains.held_a, self.domains.held_b
            translated_b = translate_array(G_AB, held_a, a, device, autocast)
            translated_a = translate_array(G_BA, held_b, b, device, autocast)
            if not self.untranslated:
                self.untranslated["AtoB"] = swd(_channels_np(held_a, b), held_b, seed=seed)["mean"]
                self.untranslated["BtoA"] = swd(_channels_np(held_b, a), held_a, seed=seed)["mean"]
            result = {
                "step": step,
                "AtoB_translated": round(swd(translated_b, held_b, seed=seed)["mean"], 3),
                "AtoB_untranslated": round(self.untranslated["AtoB"], 3),
                "BtoA_translated": round(swd(translated_a, held_a, seed=seed)["mean"], 3),
                "BtoA_untranslated": round(self.untranslated["BtoA"], 3),
            }
        for net in (G_AB, G_BA):
            net.train()
        return result


# --- distributed set-up ----------------------------------------------------------------


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). torchrun sets WORLD_SIZE; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


# --- the training run ------------------------------------------------------------------


def train(cfg: TrainConfig, domains: Domains, out_dir: Path, resume: bool = False,
          stop_at: int | None = None, expression: ExpressionConsistency | None = None,
          after_step: Callable[[int], None] | None = None) -> dict:
    """Train (or continue training) into out_dir; returns the summary. `stop_at` ends the run
    early after that step, as an interruption would (used by the resume test). `expression`
    is the frozen classifier of the expression-consistency loss (needed when
    cfg.lambda_expression > 0). `after_step(step)` is called after each step's book-keeping,
    outside its timing: bench/cyclegan_bench.py runs a plain training step there, so that both
    see the same machine load."""
    if cfg.lambda_expression > 0 and expression is None:
        raise ValueError("lambda_expression > 0 needs an expression classifier")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _train(cfg, domains, Path(out_dir), resume, stop_at, expression, after_step)
    finally:  # these are process-wide: give them back (tests of other stages run in the same process)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(cfg: TrainConfig, domains: Domains, out_dir: Path, resume: bool, stop_at: int | None,
           expression: ExpressionConsistency | None, after_step: Callable[[int], None] | None) -> dict:
    rank, world, device = setup_distributed(cfg.device)
    main_process = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bf16 = use_bf16(cfg.precision, device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    # Channels-last only on CUDA: on a CPU (oneDNN, 64 px, batch 1) it made the step slower, 0.85x in
    # fp32 and 0.86x under bf16 autocast (docs/benchmarks.md).
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # Models, optimisers, schedules. Same seed on every rank (DDP also broadcasts rank 0's weights).
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, rank])  # batches, crops, flips and the pools
    a, b = cfg.a_channels, cfg.b_channels
    if cfg.lambda_expression > 0:
        expression = expression.to(device)

    def wrap(module: nn.Module) -> nn.Module:
        """What every objective does to the modules it calls per step: DDP, then torch.compile."""
        if world > 1:
            ddp_args = {"device_ids": [device.index]} if device.type == "cuda" else {}
            module = nn.parallel.DistributedDataParallel(module, **ddp_args)
        return torch.compile(module) if cfg.compile else module

    objective = build_objective(cfg, expression, wrap, domains.train_a)
    nets = objective.nets
    for net in nets.values():
        net.to(device, memory_format=memory_format)
    objective.make_optimizers()  # after .to(device): Adam's state lives with the parameters
    G_AB, G_BA = nets["G_AB"], nets["G_BA"]
    # The run's length: cfg.steps, or with a time budget what it resolved to (TimeBudget).
    decay_steps = lambda steps: cfg.decay_steps if cfg.decay_steps is not None else steps // 2  # noqa: E731
    decay = LinearDecay(cfg.steps, decay_steps(cfg.steps))
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, decay) for name, opt in objective.optimizers.items()}
    pools = objective.pools

    # Continue from the newest valid checkpoint, if asked and there is one.
    ckpt_dir = out_dir / "checkpoints"
    start = 0
    resumed_from = None
    resolved_budget = None
    if resume:
        state = load_newest_valid(ckpt_dir, cfg.architecture(), map_location=device)
        if state is not None:
            for name, net in nets.items():
                net.load_state_dict(state["models"][name])
            for name, opt in objective.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
                schedulers[name].load_state_dict(state["schedulers"][name])
            per_rank = state["rng"]
            if len(per_rank) == world:
                set_rng_state(rng, per_rank[rank]["rng"], device)
                for name, pool in pools.items():
                    pool.load_state_dict(per_rank[rank][name], device)
            else:
                log.warning("checkpoint made with %d process(es), now %d: batches and pools start afresh",
                            len(per_rank), world)
            start = resumed_from = int(state["step"])
            resolved_budget = state.get("budget")
            if main_process:
                log.info("resuming from step %d", start)
        elif main_process:
            log.info("no usable checkpoint in %s; starting from step 0", ckpt_dir)

    def to_device(batch: np.ndarray, channels: int) -> torch.Tensor:
        return to_tensor(batch, channels, device).contiguous(memory_format=memory_format)

    def checkpoint(step: int) -> None:
        per_rank = {"rng": rng_state(rng, device), **{name: pool.state_dict() for name, pool in pools.items()}}
        if world > 1:
            gathered: list = [None] * world
            dist.all_gather_object(gathered, per_rank)
        else:
            gathered = [per_rank]
        if main_process:
            save_checkpoint(ckpt_dir, {
                "step": step,
                "config": dataclasses.asdict(cfg),
                "models": {name: net.state_dict() for name, net in nets.items()},
                "optimizers": {name: opt.state_dict() for name, opt in objective.optimizers.items()},
                "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()},
                "rng": gathered,
                "budget": budget.resolved,
            }, keep=cfg.keep_checkpoints)
        if world > 1:
            dist.barrier()

    evaluate = Sampler(cfg, domains, out_dir, device, autocast)

    loss_log = swd_log = None
    writer = None
    if main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        keep_until = start if resume else None
        loss_log = CsvLog(out_dir / "losses.csv", ("step", "lr", *objective.columns, "seconds"), keep_until)
        swd_log = CsvLog(out_dir / "swd.csv", SWD_COLUMNS, keep_until)
        writer = _tensorboard(out_dir)

    budget = TimeBudget(cfg, start, resolved_budget)
    total = budget.total
    decay.resize(total, decay_steps(total))
    end = total if stop_at is None else min(total, stop_at)
    progress = progress_bar(range(start, cfg.steps), initial=start, total=total, desc="cyclegan", unit="step",
                    disable=not main_process, dynamic_ncols=True)
    t_start = time.perf_counter()
    train_seconds = 0.0
    last_swd = None
    for step in progress:
        if step >= end:
            break
        t0 = time.perf_counter()
        real_A = to_device(sample_batch(domains.train_a, rng, cfg.batch_size, cfg.image_size, cfg.flip), a)
        real_B = to_device(sample_batch(domains.train_b, rng, cfg.batch_size, cfg.image_size, cfg.flip), b)
        step_losses = objective.step(real_A, real_B, rng, autocast)
        lr = next(iter(objective.optimizers.values())).param_groups[0]["lr"]
        for sched in schedulers.values():
            sched.step()
        done = step + 1
        step_seconds = time.perf_counter() - t0
        train_seconds += step_seconds
        if budget.observe(step, step_seconds, time.perf_counter() - t_start, world):
            total = budget.total
            decay.resize(total, decay_steps(total))
            end = total if stop_at is None else min(total, stop_at)
            progress.total = total
            if main_process:
                log.info("time budget %.1f min at %.3f s/step: %d steps (upper bound %d)", cfg.time_budget_minutes,
                         budget.resolved["seconds_per_step"], total, cfg.steps)

        # 3. Book-keeping (rank 0): losses, samples + SWD, checkpoints.
        if main_process:
            losses = {k: float(step_losses.get(k, 0.0)) for k in objective.columns}
            loss_log.write({"step": done, "lr": f"{lr:.3g}", "seconds": f"{step_seconds:.4f}",
                            **{k: f"{v:.5f}" for k, v in losses.items()}})
            if writer is not None:
                for k, v in losses.items():
                    writer.add_scalar(f"loss/{k}", v, done)
            if done % 10 == 0 or done == end:
                progress.set_postfix({k: f"{losses[k]:.3f}" for k in objective.shown})
            if done % cfg.sample_every == 0 or done == total:
                result = evaluate(G_AB, G_BA, done, with_swd=cfg.swd_every_sample or done == total)
                if result is not None:
                    swd_log.write(result)
                    last_swd = result
                    if writer is not None:
                        for k, v in result.items():
                            if k != "step":
                                writer.add_scalar(f"swd/{k}", v, done)
        if done % cfg.checkpoint_every == 0 or done == total:
            checkpoint(done)
        if after_step is not None:
            after_step(done)
    progress.close()

    summary: dict = {}
    if main_process:
        loss_log.close()
        swd_log.close()
        if writer is not None:
            writer.close()
        steps_run = end - start
        summary = {
            "steps": end,
            "steps_planned": total,
            "time_budget": budget.resolved,
            "steps_this_run": steps_run,
            "resumed_from_step": resumed_from,
            "processes": world,
            "device": str(device),
            "precision": "bf16" if bf16 else "fp32",
            "seconds": round(time.perf_counter() - t_start, 2),
            "train_seconds": round(train_seconds, 2),
            "seconds_per_step": round(train_seconds / steps_run, 4) if steps_run else None,
            "images_per_s": round(steps_run * cfg.batch_size * world / train_seconds, 2) if steps_run else None,
            "swd": last_swd,
        }
    if world > 1:
        dist.barrier()
    return summary


def _channels_np(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) to `channels` (luma for gray, repeat for RGB)."""
    from fertransfer.data.images import to_channels

    if images.shape[3] == channels:
        return images
    return np.stack([to_channels(im, channels) for im in images]).reshape(*images.shape[:3], channels)


def _tensorboard(out_dir: Path):
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def plot_losses(csv_path: Path, png_path: Path) -> Path:
    """The loss curves (smoothed over ~1% of the steps) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    window = max(1, len(rows) // 100)
    kernel = np.ones(window) / window
    adversarial = ("G_AB", "G_BA", "D_A", "D_B")
    others = [k for k in (rows[0] if rows else {}) if k not in (*adversarial, "step", "lr", "seconds", "G")]
    for ax, keys, title in (
        (axes[0], adversarial, "adversarial losses"),
        (axes[1], others, ", ".join(others) or "no other losses"),
    ):
        for key in keys:
            if not rows or key not in rows[0]:  # a column this model or an older run does not have
                continue
            values = np.array([float(r[key] or 0) for r in rows])
            if not values.any():  # the loss was off
                continue
            if len(values) >= window:
                ax.plot(steps[window - 1 :], np.convolve(values, kernel, mode="valid"), label=key)
        ax.set_title(f"{title} (moving mean of {window})")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def main(argv: list[str] | None = None) -> int:
    """`torchrun ... -m fertransfer.cyclegan.train SPEC.json`: one rank of a multi-process run."""
    from .data import load_domains

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = TrainConfig(**spec["config"])
    domains = load_domains(**spec["data"])
    expression = None
    if spec.get("expression_classifier"):
        from fertransfer.expression.models import load_classifier

        expression = ExpressionConsistency(load_classifier(Path(spec["expression_classifier"])))
    summary = train(cfg, domains, Path(spec["out_dir"]), resume=spec["resume"], expression=expression)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["summary"]).write_text(json.dumps(summary))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CNN's network width and training recipe, without torch: the [classify] options take their
defaults from here, so `pipeline init` and the runner read them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

# The test-time views both engines average (expression/cnn.py, expression/keras_model.py).
TTA_VIEWS = ("center", "flip", "tencrop")


def check_tta(tta: str) -> None:
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be {', '.join(TTA_VIEWS[:-1])} or {TTA_VIEWS[-1]}, got {tta!r}")


@dataclass
class CnnConfig:
    """Network width and training recipe; stored with the model so it can be rebuilt."""

    width: int = 48  # channels of the first block; doubled in each of the 4 blocks
    dropout: float = 0.3
    crop: int = 44  # random crops of this size are cut from the 48x48 input
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: str = "sgd"  # sgd (Nesterov momentum) or adamw
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    resample_blur: float = 0.0  # share of training images resampled through a smaller size (0 = off)
    pseudo_share: float = 0.0  # share of each batch drawn from pseudo-labelled faces (self-training; 0 = off)
    patience: int = 8  # validations (epochs) without a better validation accuracy before stopping; 0 = never
    max_steps: int = 0  # optimizer steps, the schedule's length (0: `epochs` decide)
    eval_every: int = 0  # steps between validations (0: at each epoch's end); always at the end too
    warmup_share: float = 0.08  # with max_steps: the share of the steps spent warming up (1 of 12 epochs)
    time_budget_minutes: float = 0.0  # 0 = no limit
    tta: str = "tencrop"  # final evaluation: center, flip or tencrop
    ema: float = 0.999  # decay of the weights' moving average per step; 0 = off
    bf16: str = "auto"  # auto (GPU, or a CPU with native bf16: AMX or AVX512-BF16), on, off
    # Fine-tuning: BatchNorm keeps the initial model's running statistics (its scale and shift still
    # learn), so that images unlike the real ones in the added sets do not move them.
    freeze_batchnorm: bool = False

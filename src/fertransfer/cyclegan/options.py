"""The [cyclegan] section: every knob of the stage and of its training loop, declared once.

`train.TrainConfig` takes its defaults from here (no torch here, so `pipeline init` and the
runner read it without loading torch; a core module may import it, as it imports no runner).
"""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.options import THREADS_HELP, option

GENERATORS = ("resnet_6blocks", "resnet_9blocks", "unet", "resnet_6blocks_residual",
              "resnet_6blocks_residual_resize")  # as models.py's (no torch here)
GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")


@dataclass
class CycleganOptions:
    fer_splits: list[str] = option(["train"], "Splits of [data] fer used as domain B (train, val, test).")
    fer_classes: list[str] = option([], "Expression classes used as domain B (empty: all seven, or FER+'s eight with "
                                    "[data] labels = \"ferplus\").")
    a_channels: int = option(3, "Channels domain A runs as (3: RGB faces; 1: gray, like FER).", choices=(1, 3))
    b_channels: int = option(1, "Channels domain B runs as (1: FER is grayscale).", choices=(1, 3))
    image_size: int = option(64, "Training image size in pixels (64 on a CPU; 128 or 256 on a GPU).")
    load_size: int | None = option(None, "Images are resized to this, then randomly cropped (default: 9/8 image_size).")
    generator: str = option("resnet_6blocks_residual_resize", "Generator architecture. The residual ones start as "
                            "the identity and learn a change of their input, which keeps aligned faces' expressions; "
                            "_resize (the default) upsamples by resizing, without the checkerboard of the transposed "
                            "convolutions of resnet_6blocks_residual (docs/results.md); resnet_6blocks is the paper's.",
                            choices=GENERATORS)
    ngf: int = option(64, "Generator width (filters in the first layer); 32 is about 2x faster on a CPU.")
    ndf: int = option(64, "Discriminator width.")
    n_layers: int = option(3, "PatchGAN discriminator layers (3: 70x70 patches).")
    gan_mode: str = option("lsgan", "Adversarial loss.", choices=GAN_MODES)
    lambda_cycle: float = option(10.0, "Weight of the cycle-consistency loss.")
    lambda_identity: float = option(0.5, "Weight of the identity loss, times lambda_cycle (0: off).")
    lambda_expression: float = option(
        1.0, "Weight of the expression-consistency loss: a frozen FER classifier must read the same expression in "
             "a FER face and in its translation into the person's domain (0: off).")
    expression_classifier: str = option(
        "", "A classify-stage CNN model folder (trained on FER with the same classes) for that loss; empty: one is "
            "trained here on domain B's labelled images.", kind="path")
    lambda_structure: float = option(
        0.0, "Weight of a structure loss: L1 between the coarse gray layouts (pooled by structure_scale, "
             "standardised) of a FER face and its translation (0: off).")
    structure_scale: int = option(4, "Pooling factor of the structure loss's coarse layout.")
    expression_epochs: int = option(6, "Epochs of the classifier trained here for the expression loss.")
    expression_width: int = option(16, "Width of the classifier trained here for the expression loss.")
    pool_size: int = option(50, "Past fakes kept for the discriminators.")
    lr: float = option(0.0002, "Adam learning rate (beta1 0.5).")
    batch_size: int = option(1, "Images per domain per step (per process).")
    steps: int = option(5000, "Training steps in all (with time_budget_minutes: the most it may run).")
    time_budget_minutes: float = option(
        0.0, "Training time to spend (0: none): after the first timed steps the budget becomes a number of steps "
             "(at most `steps`) and the learning-rate schedule is sized to it; the manifest and every checkpoint "
             "record what it resolved to, so a resumed run keeps it.")
    decay_steps: int | None = option(None, "Steps of linear learning-rate decay at the end (default: half of steps).")
    checkpoint_every: int = option(500, "Steps between checkpoints.")
    keep_checkpoints: int = option(2, "Training checkpoints kept (older ones are deleted).")
    sample_every: int = option(250, "Steps between sample grids and SWD measurements.")
    sample_images: int = option(4, "Rows in the sample grids.")
    swd_images: int = option(128, "Images held out of each domain for SWD, samples and the person score (at most a "
                             "fifth).")
    eval_images: int = option(1000, "FER test images (PrivateTest) translated at the end and scored: the person score "
                              "and, with `judge`, judge agreement, overall and per class (a fixed seeded sample; "
                              "0: all).")
    judge: str = option("", "A classify-stage model trained on real FER (never the expression loss's classifier) "
                        "whose agreement on the translated test images is reported beside the person score "
                        "(empty: person score and SWD only; classify's judge reads augment's translations later).",
                        kind="path")
    person_score_steps: int = option(400, "Training steps of the person score's domain classifier (held-out "
                                     "person crops against FER PublicTest; seeded, seconds on a CPU).")
    deterministic: bool = option(False, "Deterministic algorithms, for runs that repeat exactly.")
    precision: str = option("auto", "auto: bf16 autocast on CUDA and on CPUs with native bf16 (AMX, AVX512-BF16; "
                            "1.4-1.8x faster steps there, docs/benchmarks.md), else fp32.", choices=("auto", "fp32", "bf16"))
    threads: int = option(1, THREADS_HELP + " More than 1 was 10-30x slower per step on a 2-core machine shared "
                          "with other busy processes.", execution=True)
    processes: int = option(1, "Processes (GPUs) for DDP training, launched with torchrun. Each takes batch_size "
                            "images per step, so it changes the result (and the fingerprint).")
    compile: bool = option(False, "torch.compile the networks (a GPU speed-up; slow to start).", execution=True)

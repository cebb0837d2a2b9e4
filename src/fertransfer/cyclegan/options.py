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
MODELS = ("cyclegan", "autoencoder", "cut", "fastcut", "reference")  # as models.py's
AUGMENTATIONS = ("color", "translation", "cutout")  # as diffaugment.py's


@dataclass
class CycleganOptions:
    fer_splits: list[str] = option(["train"], "Splits of [data] fer used as domain B (train, val, test).")
    fer_classes: list[str] = option([], "Expression classes used as domain B (empty: all seven, or FER+'s eight with "
                                    "[data] labels = \"ferplus\").")
    a_channels: int = option(3, "Channels domain A runs as (3: RGB faces; 1: gray, like FER).", choices=(1, 3))
    b_channels: int = option(1, "Channels domain B runs as (1: FER is grayscale).", choices=(1, 3))
    model: str = option("cyclegan", "What is trained: cyclegan (two generators, cycle loss); autoencoder (the face-swap "
                        "design: a shared encoder with a small code and one decoder per domain, FER -> person = "
                        "decoder_A(encoder(b)); `generator` is not used); cut and fastcut (Park et al. 2020: one "
                        "FER -> person generator whose output patches must match their input patches, PatchNCE; "
                        "cut adds PatchNCE on the person's own faces); reference (one generator that starts from the person: "
                        "it takes the person's training crop whose coarse layout is nearest the FER face's and learns "
                        "a change of it that wears the FER face's expression; `generator` is not used; measured on MEAD W009: "
                        "it reaches the person, and the expression loss is met by patterns the judge does not "
                        "read, docs/results.md).", choices=MODELS)
    image_size: int = option(64, "Training image size in pixels (64 on a CPU; 128 or 256 on a GPU).", ge=16, le=1024)
    load_size: int | None = option(None, "Images are resized to this, then randomly cropped (default: 9/8 image_size).", ge=16, le=2048)
    generator: str = option("resnet_6blocks_residual_resize", "Generator architecture. The residual ones start as "
                            "the identity and learn a change of their input, which keeps aligned faces' expressions; "
                            "_resize (the default) upsamples by resizing, without the checkerboard of the transposed "
                            "convolutions of resnet_6blocks_residual (docs/results.md); resnet_6blocks is the paper's.",
                            choices=GENERATORS)
    ngf: int = option(64, "Generator width (filters in the first layer); 32 is about 2x faster on a CPU.", ge=1)
    ndf: int = option(64, "Discriminator width.", ge=1)
    n_layers: int = option(3, "PatchGAN discriminator layers (3: 70x70 patches).", ge=1, le=6)
    gan_mode: str = option("lsgan", "Adversarial loss.", choices=GAN_MODES)
    diffaugment: list[str] = option([], "DiffAugment (Zhao et al. 2020) for the discriminators: any of color, "
                                    "translation, cutout. Every image a discriminator scores, real or translated, is "
                                    "augmented the same random way, so that it cannot learn a few hundred person "
                                    "crops by heart and win. The paper uses all three; color hides the tone that "
                                    "tells a person's crops from FER faces (docs/results.md). Empty: off.")
    lambda_r1: float = option(0.0, "Weight of an R1 penalty (Mescheder et al. 2018) on the discriminators: the "
                              "squared gradient of their score at real images, gamma/2 |grad D(x)|^2. It keeps a "
                              "discriminator from learning a few hundred person crops as sharp spikes it can "
                              "always tell apart, without hiding any cue from it as DiffAugment's colour does. "
                              "Measured on MEAD W009 at 1: the discriminator stops winning and the generator "
                              "stops moving (docs/results.md). 0: off.", ge=0)
    hybrid_fakes: bool = option(False, "Show the person's discriminator (D_A), beside each translation, a hybrid as "
                                "fake: a person crop's blur plus the FER source's lines finer than 1 or 2 px. "
                                "Translations that met the person score by keeping the FER face's fine lines over "
                                "the person's light (the paper's generator, CUT on W009: docs/results.md, session "
                                "26) then lose to the discriminator; the held-out person score is not touched.")
    lambda_cycle: float = option(10.0, "Weight of the cycle-consistency loss (cyclegan).", ge=0)
    lambda_adversarial: float = option(1.0, "Weight of the adversarial loss on FER -> person translations "
                                       "(autoencoder, cut, fastcut; 0: no discriminator, a plain autoencoder).", ge=0)
    bottleneck: int = option(128, "autoencoder: size of the shared code. Small forces the person's identity into "
                             "decoder_A and leaves pose and expression to the code.", ge=1)
    warp: float = option(0.05, "autoencoder: strength of the random warps of the encoder's inputs (rotation, scale, "
                         "shift and a smooth bend, about this fraction of the image; 0: off).", ge=0)
    lambda_reconstruction: float = option(10.0, "autoencoder: weight of each decoder's L1 reconstruction of its domain.", ge=0)
    lambda_nce: float | None = option(None, "cut/fastcut: weight of the PatchNCE loss (default: the paper's, 1 for "
                                      "cut, 10 for fastcut).", ge=0)
    nce_patches: int = option(256, "cut/fastcut: patches per image and layer in the PatchNCE loss.", ge=1)
    reference_bank: int = option(256, "reference: how many of the person's training crops the generator keeps to "
                                 "start from (a seeded choice when there are more; 0: all). They are saved with it.",
                                 ge=0)
    reference_detail: float = option(0.0, "reference: share of the FER face's fine detail (finer than "
                                     "`reference_detail_sigma`) put on the person's crop in place of the crop's "
                                     "own before the edit: the lines of brows, eyes and mouth on the person's face "
                                     "and light (1: all of it; 0: the crop as it is).", ge=0, le=1)
    reference_detail_sigma: float = option(2.0, "reference: the Gaussian blur (pixels at image_size) that parts "
                                           "fine detail from the rest.", gt=0)
    lambda_identity: float = option(0.5, "Weight of the identity loss, times lambda_cycle (0: off).", ge=0)
    lambda_expression: float = option(
        1.0, "Weight of the expression-consistency loss: a frozen FER classifier must read the same expression in "
             "a FER face and in its translation into the person's domain (0: off).", ge=0)
    expression_jitter: int = option(
        0, "Moves each translation by up to this many pixels (of the classifier's input) and flips it half the time "
           "before the expression loss's classifier reads it, so that the generator cannot satisfy it with a "
           "pattern the classifier reads at one exact position only, an adversarial pattern rather than a face. "
           "Measured on MEAD W009 with model = \"reference\" at 4: the generator drew stripes that survive a "
           "shift instead (docs/results.md). 0: off.", ge=0)
    expression_classifier: str = option(
        "", "A classify-stage CNN model folder (trained on FER with the same classes) for that loss; empty: one is "
            "trained here on domain B's labelled images.", kind="path")
    lambda_structure: float = option(
        0.0, "Weight of a structure loss: L1 between the coarse gray layouts (pooled by structure_scale, "
             "standardised) of a FER face and its translation (0: off).", ge=0)
    structure_scale: int = option(4, "Pooling factor of the structure loss's coarse layout.", ge=1)
    structure_crop: float = option(1.0, "Centred fraction of the image whose layout the structure loss holds (1: "
                                   "all of it; 0.7: the inner face, eyes, brows and mouth, leaving hair, outline "
                                   "and background free to become the person's).", gt=0, le=1)
    expression_epochs: int = option(6, "Epochs of the classifier trained here for the expression loss.", ge=1)
    expression_width: int = option(16, "Width of the classifier trained here for the expression loss.", ge=1)
    pool_size: int = option(50, "Past fakes kept for the discriminators.", ge=0)
    lr: float = option(0.0002, "Adam learning rate (beta1 0.5).", gt=0)
    batch_size: int = option(1, "Images per domain per step (per process).", ge=1)
    steps: int = option(5000, "Training steps in all (with time_budget_minutes: the most it may run).", ge=1)
    time_budget_minutes: float = option(
        0.0, "Training time to spend (0: none): after the first timed steps the budget becomes a number of steps "
             "(at most `steps`) and the learning-rate schedule is sized to it; the manifest and every checkpoint "
             "record what it resolved to, so a resumed run keeps it.", ge=0)
    decay_steps: int | None = option(None, "Steps of linear learning-rate decay at the end (default: half of steps).", ge=0)
    checkpoint_every: int = option(500, "Steps between checkpoints.", ge=1)
    keep_checkpoints: int = option(2, "Training checkpoints kept (older ones are deleted).", ge=1)
    sample_every: int = option(250, "Steps between sample grids and SWD measurements.", ge=1)
    sample_images: int = option(4, "Rows in the sample grids.", ge=1)
    swd_images: int = option(128, "Images held out of each domain for SWD, samples and the person score (at most a "
                             "fifth).", ge=2)
    eval_images: int = option(1000, "FER test images (PrivateTest) translated at the end and scored: the person score "
                              "and, with `judge`, judge agreement, overall and per class (a fixed seeded sample; "
                              "0: all).", ge=0)
    judge: str = option("", "A classify-stage model trained on real FER (never the expression loss's classifier) "
                        "whose agreement on the translated test images is reported beside the person score "
                        "(empty: person score and SWD only; classify's judge reads augment's translations later).",
                        kind="path")
    person_score_steps: int = option(400, "Training steps of the person score's domain classifier (held-out "
                                     "person crops against FER PublicTest; seeded, seconds on a CPU).", ge=1)
    person_score_blends: float = option(0.5, "Share of the person score's FER negatives that are hybrids (a "
                                        "person crop's blur plus a FER face's fine lines, the cheat that met both "
                                        "axes in docs/results.md), so that it must read the person's own detail; "
                                        "its share of unseen hybrids is reported as a control either way. 0: the "
                                        "score of sessions 15-26, which took 94-100% of such hybrids for the person "
                                        "(docs/results.md, session 27).",
                                        ge=0, le=1)
    deterministic: bool = option(False, "Deterministic algorithms, for runs that repeat exactly.")
    precision: str = option("auto", "auto: bf16 autocast on GPUs that have it and on CPUs with native bf16 (AMX, AVX512-BF16; "
                            "1.4-1.8x faster steps there, docs/benchmarks.md), else fp32.", choices=("auto", "fp32", "bf16"))
    threads: int = option(1, THREADS_HELP + " More than 1 was 10-30x slower per step on a 2-core machine shared "
                          "with other busy processes.", execution=True, ge=0)
    processes: int = option(1, "Processes (GPUs) for DDP training, launched with torchrun. Each takes batch_size "
                            "images per step, so it changes the result (and the fingerprint).", ge=1)
    compile: bool = option(False, "torch.compile the networks (a GPU speed-up; slow to start).", execution=True)

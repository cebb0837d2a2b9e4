"""The [classify] section: every knob of the stage, declared once.

The options the CNN shares take their defaults from `fertransfer.expression.config.CnnConfig`
(no torch there either, so `pipeline init` and the runner read this without loading torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.expression.config import TTA_VIEWS, CnnConfig
from fertransfer.options import declared_default, option

from .automl_hparams import SPACE

ENGINES = ("cnn", "autokeras")
FINETUNE_BATCHNORM = ("train", "frozen", "real")
EXTRACT = "extract"  # person_test's value for the extract stage's held-out faces
# The options the CNN takes as they are, CnnConfig fields of the same name (crop is derived from
# `size`, max_steps is `steps`).
CNN_OPTIONS = ("width", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "label_smoothing", "resample_blur",
               "patience", "time_budget_minutes", "tta", "ema", "bf16", "eval_every")


def _cnn(name: str):
    """The CNN's default for an option it shares with the stage: each knob declared once."""
    return declared_default(CnnConfig, name)


@dataclass
class ClassifyOptions:
    train_sets: list[str] = option(["real"], "Training sets, each trained and compared: 'real' is the train split "
                                   "of [data] fer; any other name is one of augment's sets (real+synthetic, balanced, synthetic, "
                                   "classic, real+classic), read from <augment>/sets/.")
    person_test: str = option("", "Labelled faces of the target person, scored with every trained model beside "
                              "the FER test split: a dataset as `fer` takes (flat class folders are used whole, "
                              "split data by its test split), or \"extract\" for the extract stage's held-out "
                              "person_test/ (empty: none).", kind="path", keywords=(EXTRACT,))
    person_test_strict: bool = option(False, "Refuse a person_test whose classes are not exactly the model's "
                                      "(default: score the classes it has, leave out classes the model does not "
                                      "know, with a warning naming them).")
    engine: str = option("cnn", "Classifier: the fixed CNN (PyTorch) or an AutoKeras search.", choices=ENGINES)
    channels: int = option(1, "Input channels of the classifier (images are converted).", choices=(1, 3))
    size: int = option(48, "Input size of the classifier in pixels (images are resized).", ge=16, le=512)
    epochs: int = option(_cnn("epochs"), "cnn: epochs (the schedule's length); autokeras: epochs per trial.", ge=1)
    time_budget_minutes: float = option(_cnn("time_budget_minutes"),
        "Wall-clock limit per training set (0 = none); training ends and "
        "keeps the best-on-validation weights. A busy machine gets fewer steps done: "
        "for comparisons use `steps`.", ge=0)
    steps: int = option(_cnn("max_steps"),
        "cnn: optimizer steps per training set from scratch (0: `epochs` decide); the schedule "
        "(warm-up, cosine) is sized to it, so every set gets the same steps whatever the machine's "
        "load (FER2013 at batch 64: 449 steps an epoch).", ge=0)
    eval_every: int = option(_cnn("eval_every"),
        "cnn: optimizer steps between validation passes, which select the kept weights "
        "(0: at each epoch's end); always at the end too.", ge=0)
    init: str = option("", "Where training starts: \"\" from scratch; \"real\": train a model on [data] fer's train split "
                       "first (at `steps`/`epochs`, [run] seed; classify/init/) and fine-tune every set from it, "
                       "'real' included as the control for more training; or a model folder as classify writes it "
                       "(<run>/classify/real/model) to fine-tune from.", kind="path", keywords=("real",))
    finetune_steps: int = option(900, "With `init`: optimizer steps of fine-tuning, the same for every set.", ge=1)
    finetune_lr: float = option(0.005, "With `init`: the fine-tuning's peak learning rate (after warm-up, then "
                                "cosine decay), the same for every set.", gt=0)
    finetune_batchnorm: str = option("train", "With `init`: BatchNorm's running statistics: \"train\" follow the "
                                     "fine-tuning's images; \"frozen\" held at the initial model's (scale and shift "
                                     "still learn); \"real\" re-estimated on real FER train images after "
                                     "fine-tuning, every weight kept, so that added images unlike real FER do not "
                                     "cost its test faces (docs/results.md: it gave back the 3-4 points that blurred sets cost).",
                                     choices=FINETUNE_BATCHNORM)
    pseudo_share: float = option(_cnn("pseudo_share"),
        "With `init`: self-training, the share of every fine-tuning batch drawn from the person's footage "
        "faces (extract's faces/, no labels) labelled by the initial model, the same for every set, so that a "
        "translated set is measured against the plain domain-adaptation baseline as well as against `real` "
        "(0: off; classify/pseudo_labels.csv lists every face's reading).", ge=0, lt=1)
    pseudo_keep: float = option(0.5, "With `pseudo_share`: for each expression the initial model reads in the "
                                "footage, the share of those faces it is surest of that are kept as labels.", gt=0, le=1)
    pseudo_model: str = option("", "With `pseudo_share`: the model that reads the footage, a model folder as classify "
                               "writes it (e.g. a self-trained model of an earlier run, for a second round); empty: "
                               "the initial model.", kind="path")
    seeds: list[int] | None = option(None, "Seeds: every set is trained once per seed and reported as mean ± std, "
                                     "with its difference from 'real' paired by seed (unset: [run] seed alone).", ge=0)
    bootstrap: int = option(2000, "Resamples of the person's clips for the 95% intervals of the person figures "
                            "(0: no intervals).", ge=0)
    batch_size: int = option(_cnn("batch_size"), "Images per training step.", ge=1)
    width: int = option(_cnn("width"), "cnn: channels of the first of four blocks (doubled per block).", ge=1)
    lr: float = option(_cnn("lr"), "cnn (and autokeras's sgd final run): peak learning rate (after warm-up, then "
                       "cosine decay).", gt=0)
    optimizer: str = option(_cnn("optimizer"), "cnn: SGD with Nesterov momentum, or AdamW.", choices=("sgd", "adamw"))
    weight_decay: float = option(_cnn("weight_decay"), "cnn (and autokeras's sgd final run): weight decay.", ge=0)
    label_smoothing: float = option(_cnn("label_smoothing"),
        "cnn: label smoothing of the cross-entropy loss.", ge=0, lt=1)
    resample_blur: float = option(_cnn("resample_blur"),
        "cnn: the share of training images brought down to a random 50-100% of their size and back up "
        "before the crop, so that the network sees the softness of a video's face crops (0: off; the "
        "same in fine-tuning).", ge=0, le=1)
    patience: int = option(_cnn("patience"),
        "cnn: stop after this many epochs without a better validation accuracy (0: never). Validation "
        "accuracy plateaus mid-schedule and climbs again as the rate anneals: for a run sized by "
        "`time_budget_minutes` use 0 (docs/results.md: stopped 7 minutes early, 71.8% against 72.9%).", ge=0)
    tta: str = option(_cnn("tta"), "Test-time averaging for the final val/test scores and predictions (autokeras: "
                      "tencrop moves the whole face 2 px towards each corner instead of cropping it).",
                      choices=TTA_VIEWS)
    ema: float = option(_cnn("ema"), "cnn, and autokeras fer_cnn's final run: decay per step of the weights' moving average; "
                        "each epoch keeps the raw or the averaged weights, whichever scores higher on validation "
                        "(0: no average).", ge=0, lt=1)
    bf16: str = option(_cnn("bf16"),
        "bf16 arithmetic while training: auto (a GPU, or a CPU with native bf16: AMX or AVX512-BF16), on, off. "
        "cnn: autocast, also when predicting; autokeras: Keras's mixed_bfloat16 policy, the saved model "
        "computing in float32.", choices=("auto", "on", "off"))
    max_trials: int = option(3, "autokeras: models tried (fer_cnn: trials of the successive halving, each "
                             "continuation counted).", ge=1)
    automl_space: str = option("fer_cnn", "autokeras: the search space: fer_cnn, this project's CNN family (width, "
                               "depth, dropout, label smoothing, crop/flip, learning rate) in short trials on "
                               "`automl_trial_images` images, the best retrained on all; convblock, AutoKeras's own "
                               "`automl_block` with its greedy tuner.", choices=("fer_cnn", "convblock"))
    automl_block: str = option("vanilla", "autokeras, convblock space: the searched block, always trained from "
                               "scratch.", choices=("vanilla", "resnet", "xception"))
    automl_trial_images: int = option(4000, "autokeras, fer_cnn: training images per trial, stratified (0: all); "
                                      "`epochs` is a trial's most epochs.", ge=0)
    automl_search_share: float = option(0.35, "autokeras, fer_cnn: share of `time_budget_minutes` for the trials; "
                                        "the rest trains the best configuration on every training image.", gt=0, le=1)
    automl_final_epochs: int = option(30, "autokeras, fer_cnn: epochs of the best configuration's final run on "
                                      "every training image (a time budget ends it sooner; 0: keep the trial).", ge=0)
    automl_final_min_epochs: int = option(10, "autokeras, fer_cnn with a time budget: the final run takes the best "
                                          "trial whose configuration can train this many epochs on every image in "
                                          "what is left of the budget (estimated from its trial's epochs; 0: the "
                                          "best trial, whatever its cost).", ge=0)
    automl_final_optimizer: str = option("adam", "autokeras, fer_cnn: the final run's optimiser, with warm-up and "
                                         "cosine decay: adam at the chosen trial's learning rate, or sgd, the CNN's "
                                         "(Nesterov momentum 0.9 at `lr`, `weight_decay` except on norms and biases).",
                                         choices=("adam", "sgd"))
    automl_fixed: dict = option({}, "autokeras, fer_cnn: hyperparameters held at a value instead of searched "
                                "(recorded in every trial all the same), e.g. the CNN's augmentation: { shift = 2, "
                                f"flip = true, label_smoothing = 0.1, dropout = 0.3 }}. Known: {', '.join(SPACE)}.")
    train_limit: int = option(0, "Use at most this many training images per set, stratified (0: all); for quick runs.", ge=0)
    oversample: bool = option(False, "Repeat minority-class training images up to the majority count.")
    leave_out: list[str] = option([], "Classes left out of training and evaluation, e.g. [\"disgust\"].")
    two_tier: bool = option(False, "Two-tier classifier: positive / negative / neutral first, then the fine class.")
    person_model: str = option("", "The training set whose model is the product, copied to "
                               "classify/person_model/ for `pipeline serve/predict --run` (empty: real+synthetic "
                               "when trained, else real). Chosen by name, never by the test figures.")
    footage: str = option("", "\"extract\": predict the extract stage's footage faces with the person model "
                          "(the predicted expressions' distribution and a timeline per video, in the report; "
                          "what footage without labels can show). Empty: none.")
    judge: str = option("", "The model that judges augment's translations (trained on real FER only, never the "
                        "cyclegan's loss classifier); empty: this run's 'real' model.", kind="path")

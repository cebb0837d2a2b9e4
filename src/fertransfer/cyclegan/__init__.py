"""The cyclegan stage: CycleGAN between one person's face crops (A) and FER images (B).

Modules (laid out like the CycleGAN authors' repository, smaller):
  models.py      ResNet / U-Net generators, PatchGAN discriminator, N(0, 0.02) init
  losses.py      lsgan, vanilla, hinge and WGAN-GP objectives
  train.py       the training loop (also the torchrun/DDP entry point) and the CycleGAN objective
  parts.py       what the objectives share: the fake pool, the losses tied to the FER source, D_A updates
  autoencoder.py the shared-encoder autoencoder, one decoder per domain (model = "autoencoder")
  cut.py         contrastive unpaired translation, PatchNCE (model = "cut" / "fastcut")
  reference.py   an edit of the person's own crop nearest the FER face (model = "reference")
  checkpoint.py  atomic checkpoints, validation, fall-back to the newest valid one
  swd.py         sliced Wasserstein distance on Laplacian-pyramid patches
  person_score.py  the person score: a domain classifier of held-out person crops against FER faces
  translate.py   Translator: the array API other stages use
  testing.py     tiny_checkpoint(): a valid untrained checkpoint for other stages' tests
  data.py, tensors.py, stage.py, cli.py (`pipeline translate`)

Nothing here imports torch at package import time.
"""

"""GAN-based domain-transfer augmentation of facial-expression data."""

__version__ = "0.1.0"

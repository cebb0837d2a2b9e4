"""Dataset formats: labelled expression datasets, face folders, image decoding."""

from .classes import FER, FER_CLASSES, ClassSet, class_set
from .datasets import (
    SPLITS,
    DatasetError,
    ImageSet,
    LabelledDataset,
    load_dataset,
    load_image_folder,
    stratified_split,
)
from .images import UnreadableImage, read_image, read_images, write_jpeg, write_png

__all__ = [
    "FER",
    "FER_CLASSES",
    "SPLITS",
    "ClassSet",
    "DatasetError",
    "ImageSet",
    "LabelledDataset",
    "UnreadableImage",
    "class_set",
    "load_dataset",
    "load_image_folder",
    "read_image",
    "read_images",
    "stratified_split",
    "write_jpeg",
    "write_png",
]

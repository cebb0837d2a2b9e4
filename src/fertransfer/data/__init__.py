"""Dataset formats: labelled expression datasets, face folders, image decoding."""

from .classes import FER, FER_CLASSES, FERPLUS, FERPLUS_CLASSES, ClassSet, class_set
from .datasets import (
    SPLITS,
    DatasetError,
    ImageSet,
    LabelledDataset,
    class_folder_names,
    load_dataset,
    load_image_folder,
    load_labelled_set,
    stratified_split,
)
from .ferplus import LABEL_SOURCES
from .images import UnreadableImage, read_image, read_images, write_jpeg, write_png

__all__ = [
    "FER",
    "FER_CLASSES",
    "FERPLUS",
    "FERPLUS_CLASSES",
    "LABEL_SOURCES",
    "SPLITS",
    "ClassSet",
    "DatasetError",
    "ImageSet",
    "LabelledDataset",
    "UnreadableImage",
    "class_folder_names",
    "class_set",
    "load_dataset",
    "load_image_folder",
    "load_labelled_set",
    "read_image",
    "read_images",
    "stratified_split",
    "write_jpeg",
    "write_png",
]

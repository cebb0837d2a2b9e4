"""The [extract] section of the config."""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.options import option

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class ExtractOptions:
    inputs: list[str] = option(
        [],
        "Videos (mp4, avi, mov, mkv, webm), glob patterns and folders (each video in it, and its images as "
        "one clip of frames) to take faces from. A folder "
        "of class folders (root/<class>/*.mp4 or images, e.g. MEAD's) is labelled footage: its crops carry "
        "the class as their label.",
        kind="paths",
    )
    classes: list[str] = option(
        [],
        "Class names that labelled inputs' class folders may use (empty: FER2013's seven, with their "
        "aliases). A class folder outside them (e.g. MEAD's contempt) is unlabelled footage.",
    )
    # --- the person's labelled test set: the end of each labelled clip
    holdout: float = option(
        0.0,
        "Fraction of each labelled clip's frames, at its end, held out as the person's labelled test "
        "set (person_test/<class>/): 0.5 = the second half. 0: every crop is footage.",
        ge=0, lt=1,
    )
    holdout_gap: int = option(
        5,
        "Frames dropped on each side of a labelled clip's footage/test boundary, so that the test "
        "frames are not near-duplicates of footage frames.",
        ge=0,
    )
    # --- which frames
    every_n: int = option(1, "Use every N-th frame of each video (1: every frame).", ge=1)
    target_fps: float = option(
        0.0, "At most this many frames per second of video, after every_n (0: no limit).", ge=0,
    )
    # --- detection (facenet-pytorch MTCNN)
    min_face_size: int = option(
        80,
        "Smallest face to detect, in pixels of the full-resolution frame. Larger is faster: "
        "the costly fine levels of MTCNN's image pyramid are skipped. Rounded down to a level of "
        "MTCNN's default pyramid (20, 28, 40, 56, 79, 112, 157 px, ...) so boxes match a default run.",
        ge=12,
    )
    thresholds: list[float] = option([0.6, 0.7, 0.7], "MTCNN's P-Net, R-Net and O-Net score thresholds.", ge=0, le=1)
    batch_size: int = option(16, "Frames detected together in one MTCNN call.", ge=1)
    detect_max_side: int = option(
        0,
        "Shrink frames so their longer side is at most this before detecting (0: detect on the "
        "full frame). Faster on very large frames; boxes then agree less with full-resolution MTCNN.",
        ge=0,
    )
    detect_every: int = option(
        1,
        "Run MTCNN's whole cascade on every N-th sampled frame of a video only; on the frames between, "
        "refine the previous frame's faces with O-Net alone (several times cheaper), and detect fully "
        "where a face is lost (scene cuts). 1: full detection on every frame. Refined boxes follow "
        "the face but not MTCNN's frame-to-frame jitter, so they agree less with full detection "
        "(docs/benchmarks.md: 84-89% of frames at IoU >= 0.9 with 2-8, 1.6-2.5x faster).",
        ge=1,
    )
    threads: int = option(
        1,
        "CPU threads for detection (0: torch's default, one per core). MTCNN's many small operations gain "
        "little from more threads, and video decoding runs in a thread of its own, so 1 suits 2-core machines.",
        execution=True, ge=0,
    )
    # --- crops
    crop_size: int = option(128, "Side of the square face crops, in pixels.", ge=32, le=1024)
    framing: str = option(
        "fer",
        "How faces are framed: fer = a similarity transform of the 5 MTCNN landmarks onto the mean "
        "landmarks of FER2013 faces (tight, forehead to chin, like FER2013); box = the detection box "
        "plus margin, eyes levelled.",
        choices=("fer", "box"),
    )
    margin: float = option(0.2, "Extra space around the face box, as a fraction of its side (framing = box).", ge=0)
    jpeg_quality: int = option(95, "JPEG quality of the crops (1-100).", ge=1, le=100)
    # --- one person
    person: str = option(
        "dominant",
        "Whose faces to keep: dominant = the IoU face track with the most screen time, joined by "
        "tracks never on screen together with it (the person coming back after a cut); largest = "
        "the largest face of each frame. Image folders always use the largest face.",
        choices=("dominant", "largest"),
    )
    track_iou: float = option(0.2, "Smallest box overlap (IoU) that continues a face track from one sampled frame to the next.", ge=0, le=1)
    track_max_gap_s: float = option(2.0, "Seconds a face may be missing before its track ends.", ge=0)
    # --- filters (0, or -1 for dedupe_hash_distance, turns one off)
    min_probability: float = option(0.95, "Drop faces MTCNN is less sure of than this (0: off).", ge=0, le=1)
    min_face_px: int = option(64, "Drop faces whose box is narrower or shorter than this many pixels (0: off).", ge=0)
    min_sharpness: float = option(
        20.0, "Drop blurred crops: variance of the Laplacian of the gray crop below this (0: off).", ge=0,
    )
    dedupe_hash_distance: int = option(
        2,
        "Drop a crop whose perceptual hash (64 bits) is within this many bits of a crop already "
        "kept (-1: off; 0: only identical hashes).",
        ge=-1, le=64,
    )
    samples: int = option(48, "Crops shown in samples.png.", ge=0)
    strict: bool = option(False, "Fail the stage when any input cannot be read (false: skip it, carry on with the "
                          "others, and name it at the end of the run and in `pipeline status`).")

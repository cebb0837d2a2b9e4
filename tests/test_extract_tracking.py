"""The extract stage's tracked detection (detect_every > 1): refined boxes between full
detections, and full detection wherever the tracked face is lost."""

from __future__ import annotations

import numpy as np
import pytest

from fertransfer.extract.track import iou_matrix


@pytest.fixture(scope="module")
def detector():
    from fertransfer.extract.detect import FaceDetector

    return FaceDetector(min_face_size=40)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """12 consecutive frames of the demo lecture (in memory): the face pans, zooms and tilts slowly."""
    from fertransfer.demo.video import DemoVideoSpec, portrait, render_frame

    spec = DemoVideoSpec(frames=48, no_face=(2.0, 2.0))
    face = portrait()
    background = np.full((spec.height, spec.width, 3), 200, np.uint8)
    return np.stack([render_frame(i, spec, face, background) for i in range(12)])


def test_detect_every_1_gives_full_detection_exactly(detector, clip):
    from fertransfer.extract.detect import VideoFaceDetector

    video_detector = VideoFaceDetector(detector, detect_every=1)
    for start in (0, 6):
        batch = clip[start : start + 6]
        for ours, full in zip(video_detector.detect(batch), detector.detect(batch)):
            np.testing.assert_array_equal(ours.boxes, full.boxes)
            np.testing.assert_array_equal(ours.landmarks, full.landmarks)
            np.testing.assert_array_equal(ours.probs, full.probs)
    assert video_detector.counts == {"full": 12, "refined": 0, "fallback": 0}


def test_refined_boxes_agree_with_full_detection(detector, clip):
    """Frames 1-3, 5-7, ... are refined from the frame before, across batch boundaries."""
    from fertransfer.extract.detect import VideoFaceDetector

    video_detector = VideoFaceDetector(detector, detect_every=4)
    tracked = video_detector.detect(clip[:5]) + video_detector.detect(clip[5:])
    full = detector.detect(clip)
    assert video_detector.counts == {"full": 3, "refined": 9, "fallback": 0}
    for index, (ours, reference) in enumerate(zip(tracked, full)):
        assert len(ours) == len(reference) == 1
        overlap = iou_matrix(ours.boxes, reference.boxes)[0, 0]
        if index % 4 == 0:
            np.testing.assert_allclose(ours.boxes, reference.boxes, atol=1e-3)  # a scheduled full detection
        else:
            assert overlap >= 0.8, (index, overlap)
            assert ours.probs[0] > 0.9
            # Landmarks stay on the face: within 8% of the box side of the full detection's.
            side = reference.boxes[0, 2] - reference.boxes[0, 0]
            assert np.abs(ours.landmarks - reference.landmarks).max() < 0.08 * side


def test_lost_face_falls_back_to_full_detection(detector, clip):
    """A cut to a slide without a face, and then a jump of the face across the frame: the
    previous box holds no face, so these frames are detected fully."""
    from fertransfer.extract.detect import VideoFaceDetector

    height, width = clip.shape[1:3]
    wide = np.full((len(clip), height, 3 * width, 3), 200, np.uint8)
    wide[:, :, :width] = clip  # the face on the left ...
    no_face = np.full_like(wide[0], 200)
    jumped = np.full_like(wide[0], 200)
    jumped[:, 2 * width :] = clip[4]  # ... then on the right
    frames = np.stack([wide[0], wide[1], no_face, wide[3], jumped, jumped])

    video_detector = VideoFaceDetector(detector, detect_every=100)
    found = video_detector.detect(frames)
    full = detector.detect(frames)
    assert [len(f) for f in found] == [1, 1, 0, 1, 1, 1]
    # Frame 1 refined; 2 (face lost), 3 (no face before it) and 4 (face lost) detected fully; 5 refined.
    assert video_detector.counts == {"full": 1, "refined": 2, "fallback": 3}
    for index in (2, 3, 4):
        np.testing.assert_allclose(found[index].boxes, full[index].boxes, atol=1e-3)
    assert found[4].boxes[0, 0] > 2 * width  # found where the face went
    assert iou_matrix(found[5].boxes, full[5].boxes)[0, 0] >= 0.8


def test_reset_starts_the_next_video_with_a_full_detection(detector, clip):
    from fertransfer.extract.detect import VideoFaceDetector

    video_detector = VideoFaceDetector(detector, detect_every=4)
    video_detector.detect(clip[:2])
    video_detector.reset()
    first = video_detector.detect(clip[6:7])[0]
    np.testing.assert_allclose(first.boxes, detector.detect(clip[6:7])[0].boxes, atol=1e-3)
    assert video_detector.counts == {"full": 2, "refined": 1, "fallback": 0}


def test_detect_every_must_be_positive(detector):
    from fertransfer.extract.detect import VideoFaceDetector
    from fertransfer.extract.options import ExtractOptions
    from fertransfer.options import out_of_range

    with pytest.raises(ValueError, match="detect_every"):
        VideoFaceDetector(detector, detect_every=0)
    problems = out_of_range(ExtractOptions(inputs=["x.mp4"], detect_every=0))  # the declared range
    assert any(p.startswith("detect_every:") for p in problems)

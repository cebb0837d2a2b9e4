"""facenet-pytorch's MTCNN cascade with every resampling done from one integral image.

facenet-pytorch resamples each pyramid level and each of the dozens of candidate boxes per
frame with ``interpolate(mode="area")`` (adaptive average pooling), on float copies of the
frame; on a CPU that, not the networks, is most of the time once the large pyramid levels
are skipped. Adaptive average pooling averages the pixels in bins
``[floor(i*n/out), ceil((i+1)*n/out))``; with an integral image of the uint8 frame every bin
is four look-ups, so all candidates of a batch are resampled in a few vectorised numpy
operations and the results equal facenet-pytorch's to float rounding. The networks run in
channels-last memory layout (set by the caller), several times faster on a CPU. The networks, the
thresholds, the box arithmetic and the non-maximum suppression are facenet-pytorch's own.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms,
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    pad,
    rerec,
)


def integral_images(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 -> (B, H+1, W+1, C) exact sums: int32 while they fit (frames up to
    8.4 megapixels), float64 beyond."""
    batch, h, w, c = frames.shape
    exact_int32 = h * w * 255 < 2**31
    out = np.empty((batch, h + 1, w + 1, c), np.int32 if exact_int32 else np.float64)
    for frame, sums in zip(frames, out):
        cv2.integral(np.ascontiguousarray(frame), sums, sdepth=cv2.CV_32S if exact_int32 else cv2.CV_64F)
    return out


def _bins(start: np.ndarray, length: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-average-pooling bin edges (N, out) for N spans of `length` pixels from `start`."""
    i = np.arange(out)
    lo = start[:, None] + (i * length[:, None]) // out
    hi = start[:, None] + ((i + 1) * length[:, None] + out - 1) // out
    return lo, hi


def area_resample(
    integral: np.ndarray,
    image_index: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray,
    height: np.ndarray,
    width: np.ndarray,
    out_size: tuple[int, int],
) -> np.ndarray:
    """N regions (rows y0..y0+height, columns x0..x0+width of image image_index[k]) resampled
    to out_size by area averaging, as (N, C, out_h, out_w) float32."""
    r0, r1 = _bins(y0, height, out_size[0])
    c0, c1 = _bins(x0, width, out_size[1])
    n = image_index[:, None, None]
    r0, r1 = r0[:, :, None], r1[:, :, None]
    c0, c1 = c0[:, None, :], c1[:, None, :]
    sums = integral[n, r1, c1] - integral[n, r0, c1] - integral[n, r1, c0] + integral[n, r0, c0]
    counts = ((r1 - r0) * (c1 - c0))[..., None]
    return (sums / counts).astype(np.float32).transpose(0, 3, 1, 2)  # int sums / counts: float64


def _normalise(data: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """MTCNN's input scaling, in channels-last layout (area_resample's natural one), for which
    PyTorch's CPU convolutions and poolings run several times faster on these small images."""
    tensor = (torch.from_numpy(data).to(device) - 127.5) * 0.0078125
    return tensor.contiguous(memory_format=torch.channels_last)


def _crop_regions(boxes: torch.Tensor, w: int, h: int) -> tuple[np.ndarray, ...]:
    """Rows y0..y0+height and columns x0..x0+width that each box is cut from: the box clipped to
    the frame, as facenet-pytorch's pad() clips it."""
    y, ey, x, ex = pad(boxes, w, h)
    # facenet-pytorch cannot cut out a box lying wholly outside the frame; keep one pixel of it.
    y0, x0 = np.minimum(y - 1, h - 1), np.minimum(x - 1, w - 1)
    height, width = np.clip(ey - y0, 1, h - y0), np.clip(ex - x0, 1, w - x0)
    return y0, x0, height, width


def _crops(integral, image_inds, boxes, w, h, size, device, origin: tuple[int, int] = (0, 0)):
    """Candidate boxes cut out and resampled. `origin` is the (row, column) of the frame at which
    `integral` starts, when it covers only part of the frame."""
    y0, x0, height, width = _crop_regions(boxes, w, h)
    data = area_resample(integral, image_inds.cpu().numpy(), y0 - origin[0], x0 - origin[1], height, width, (size, size))
    return _normalise(data, device)


def _region_integral(frame: np.ndarray, boxes: torch.Tensor) -> tuple[np.ndarray, tuple[int, int]]:
    """The integral image of just the part of one frame that the boxes' crops cover, and where
    that part starts: a few faces need a small fraction of the frame's sums."""
    h, w = frame.shape[:2]
    y0, x0, height, width = _crop_regions(boxes, w, h)
    top, left = int(y0.min()), int(x0.min())
    bottom, right = int((y0 + height).max()), int((x0 + width).max())
    return integral_images(frame[None, top:bottom, left:right]), (top, left)


def _rnet_stage(integral, image_inds, boxes, w, h, rnet, threshold, device, origin=(0, 0)):
    """R-Net on 24x24 crops: the candidates it keeps, moved by its regression and squared."""
    out = fixed_batch_process(_crops(integral, image_inds, boxes, w, h, 24, device, origin), rnet)
    out0 = out[0].permute(1, 0)
    score = out[1].permute(1, 0)[1, :]
    ipass = score > threshold
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds = image_inds[ipass]
    mv = out0[:, ipass].permute(1, 0)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
    boxes = bbreg(boxes, mv)
    return rerec(boxes), image_inds


def _onet_stage(integral, image_inds, boxes, w, h, onet, threshold, device, origin=(0, 0)):
    """O-Net on 48x48 crops: the final boxes (with probabilities), their images and landmarks."""
    out = fixed_batch_process(_crops(integral, image_inds, boxes, w, h, 48, device, origin), onet)
    out0 = out[0].permute(1, 0)
    points = out[1].permute(1, 0)
    score = out[2].permute(1, 0)[1, :]
    ipass = score > threshold
    points = points[:, ipass]
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds = image_inds[ipass]
    mv = out0[:, ipass].permute(1, 0)
    w_i = boxes[:, 2] - boxes[:, 0] + 1
    h_i = boxes[:, 3] - boxes[:, 1] + 1
    points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
    points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
    points = torch.stack((points_x, points_y)).permute(2, 1, 0)
    boxes = bbreg(boxes, mv)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
    return boxes[pick], image_inds[pick], points[pick]


def detect_face(frames: np.ndarray, minsize: float, pnet, rnet, onet, threshold, factor, device):
    """Same contract and results as facenet_pytorch's detect_face, for (B, H, W, 3) uint8 frames:
    per frame an array of boxes (k, 5: x1, y1, x2, y2, probability) and of landmarks (k, 5, 2)."""
    batch_size, h, w = frames.shape[:3]
    integral = integral_images(frames)
    all_images = np.arange(batch_size)
    zeros = np.zeros(batch_size, np.int64)

    m = 12.0 / minsize
    minl = min(h, w) * m
    scales = []
    scale_i = m
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor

    # First stage: P-Net over the pyramid.
    boxes, image_inds, scale_picks, offset = [], [], [], 0
    for scale in scales:
        size = (int(h * scale + 1), int(w * scale + 1))
        level = area_resample(integral, all_images, zeros, zeros, zeros + h, zeros + w, size)
        reg, probs = pnet(_normalise(level, device))
        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        boxes.append(boxes_scale)
        image_inds.append(image_inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        scale_picks.append(pick + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)

    # Second stage: R-Net on 24x24 crops.
    if len(boxes) > 0:
        boxes, image_inds = _rnet_stage(integral, image_inds, boxes, w, h, rnet, threshold[1], device)

    # Third stage: O-Net on 48x48 crops gives the final boxes and the landmarks.
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes) > 0:
        boxes, image_inds, points = _onet_stage(integral, image_inds, boxes, w, h, onet, threshold[2], device)

    boxes = boxes.cpu().numpy()
    points = points.cpu().numpy()
    image_inds = image_inds.cpu().numpy()
    return [boxes[image_inds == b] for b in range(batch_size)], [points[image_inds == b] for b in range(batch_size)]


def refine_faces(frame: np.ndarray, candidates: np.ndarray, onet, threshold: float, device):
    """The faces near `candidates` in one (H, W, 3) uint8 frame, by O-Net alone.

    In a video whose faces move little between frames, the previous frame's final boxes are
    good candidates: squared as the cascade squares its own, they go through O-Net, whose box
    regression moves them onto the face in this frame, skipping the P-Net pyramid and R-Net.
    `candidates` (k, 4) are x1, y1, x2, y2; `threshold` is O-Net's. Returns boxes (m, 5: x1, y1,
    x2, y2, probability) and landmarks (m, 5, 2) as detect_face does for one frame; m < k when
    a face was not found again.
    """
    h, w = frame.shape[:2]
    boxes = torch.zeros(len(candidates), 5, device=device)
    boxes[:, :4] = torch.as_tensor(np.asarray(candidates, np.float32), device=device)
    boxes = rerec(boxes)
    if len(boxes) == 0:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    image_inds = torch.zeros(len(boxes), dtype=torch.int64, device=device)
    integral, origin = _region_integral(frame, boxes)
    boxes, image_inds, points = _onet_stage(integral, image_inds, boxes, w, h, onet, threshold, device, origin)
    return boxes.cpu().numpy(), points.cpu().numpy()

"""Face crops: the paper's landmark box, or OpenCV's Haar detector where no landmarks exist."""

from __future__ import annotations

import cv2
import numpy as np


def landmark_box(landmarks: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), exclusive end, spanned by the extreme landmarks, clipped."""
    h, w = shape
    x0, y0 = np.floor(landmarks.min(0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(0)).astype(int) + 1
    return max(0, y0), max(0, x0), min(h, y1), min(w, x1)


def crop_face(image: np.ndarray, landmarks: np.ndarray | None, size: int):
    """Cut the landmark box (the whole image when `landmarks` is None), resize to size x size.

    Returns the uint8 crop and the landmarks mapped into crop pixel coordinates (or None).
    """
    if landmarks is None:
        top, left, bottom, right = 0, 0, *image.shape[:2]
    else:
        top, left, bottom, right = landmark_box(landmarks, image.shape[:2])
    patch = image[top:bottom, left:right]
    crop = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    if landmarks is None:
        return crop, None
    scale = np.array([size / (right - left), size / (bottom - top)], dtype=np.float32)
    return crop, ((landmarks - np.array([left, top], np.float32)) * scale).astype(np.float32)


_CASCADE = None


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face found by OpenCV's Haar cascade as (top, left, bottom, right)."""
    global _CASCADE
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = _CASCADE.detectMultiScale(image, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(y), int(x), int(y + h), int(x + w)

"""Drawing predictions on a frame: face box, label, probability bars, the network's AU-map units, frames/s."""

from __future__ import annotations

import cv2
import numpy as np

from interpret.predict import valence_of

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, WHITE, GREY, ORANGE, BLACK = (60, 200, 60), (255, 255, 255), (150, 150, 150), (0, 160, 255), (0, 0, 0)


def _text(image, text: str, org, scale: float = 0.45, colour=WHITE) -> None:
    cv2.putText(image, text, org, FONT, scale, BLACK, 3, cv2.LINE_AA)
    cv2.putText(image, text, org, FONT, scale, colour, 1, cv2.LINE_AA)


def _bars(image, origin, names, values, title: str, colour, full: float = 1.0, width: int = 80) -> int:
    """Labelled horizontal bars (value / full, clipped to 0..1) from `origin`; returns the y below them."""
    x, y = origin
    _text(image, title, (x, y + 10), 0.4, colour)
    y += 16
    for name, value in zip(names, values):
        fill = int(round(width * float(np.clip(value / full, 0.0, 1.0))))
        cv2.rectangle(image, (x, y), (x + width, y + 9), GREY, 1)
        if fill:
            cv2.rectangle(image, (x, y), (x + fill, y + 9), colour, -1)
        _text(image, f"{name} {value:.2f}", (x + width + 4, y + 9), 0.35)
        y += 13
    return y


def draw(image: np.ndarray, faces, classes, au_names=(), valence: bool = False, fps: float | None = None,
         held: bool = False) -> np.ndarray:
    """Annotate a BGR frame in place with each `FacePrediction` and return it.

    `held` marks predictions carried over from the last sampled frame (drawn thinner). AU bars are
    the network's own AU-map units relative to their top-n level, labelled as such.
    """
    panel_y = 4
    for face in faces:
        if face.box is None:
            _text(image, "no face", (8, 20), 0.6, ORANGE)
            panel_y = 28
            continue
        x, y, w, h = face.box
        cv2.rectangle(image, (x, y), (x + w, y + h), GREEN, 1 if held else 2)
        if face.probs is None:
            _text(image, face.status, (x, max(12, y - 6)))
            continue
        top = int(np.argmax(face.probs))
        label = f"{classes[top]} {face.probs[top]:.2f}"
        if valence:
            label += f"  V={float(valence_of(face.probs[None])[1][0]):+.2f}"
        _text(image, label, (x, max(12, y - 6)), 0.5)
        if face is faces[0]:
            panel_y = _bars(image, (8, panel_y), classes, face.probs, "class probabilities", GREEN)
            if face.au is not None and len(au_names):
                _bars(image, (8, panel_y + 4), au_names, face.au,
                      "network's AU-map units (x their top-n level; not AU detection)", ORANGE, full=1.5)
    if fps is not None:
        _text(image, f"{fps:.1f} frames/s", (image.shape[1] - 120, 18), 0.5)
    return image

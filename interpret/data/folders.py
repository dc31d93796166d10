"""Folder-per-class trees (`train/angry/*.jpg`, `CK+48/anger/*.png`) and the shared image reader."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from interpret.data.crop import crop_face, detect_face
from interpret.data.faceset import FaceSet, stills_faceset
from interpret.errors import InterpretError, located
from interpret.facs import CKPLUS_EMOTIONS
from interpret.progress import progress_bar

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")

#: Lower-cased class-folder names -> canonical emotion names (CKPLUS_EMOTIONS spelling).
CLASS_ALIASES = {
    "neutral": "neutral", "neutrality": "neutral",
    "anger": "anger", "angry": "anger",
    "contempt": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise",
}

# CK+48 file names keep CK+'s subject / sequence / frame.
_CKPLUS_NAME = re.compile(r"(S\d+)_\d+_(\d+)")


def read_image(path) -> tuple[np.ndarray, bool]:
    """Read any image OpenCV knows as (H, W) uint8 grey, and whether it held colour
    (channels that differ); colour is converted, 16-bit scaled to 8 bits."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise located(path, f"cannot read image ({exc.strerror or exc})") from None
    if data.size == 0:
        raise located(path, "image file is empty")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        image = None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if image is None or image.size == 0:
        raise located(path, "unreadable or truncated image")
    if image.ndim == 2:
        return image, False
    if image.shape[2] == 4:
        image = image[..., :3]
    colour = bool(np.any(image[..., 0] != image[..., 1]) or np.any(image[..., 1] != image[..., 2]))
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), colour


def read_grey(path) -> np.ndarray:
    """Read any image OpenCV knows as (H, W) uint8 grey (see `read_image`)."""
    return read_image(path)[0]


def canonical_class(name: str) -> str:
    """'angry' -> 'anger', 'Happiness' -> 'happy'; names not known are returned unchanged."""
    return CLASS_ALIASES.get(name.strip().lower(), name)


def class_order(names) -> tuple[str, ...]:
    """Canonical emotions in CK+ order first, then other class names sorted."""
    names = set(names)
    known = [n for n in CKPLUS_EMOTIONS if n in names]
    return tuple(known + sorted(names - set(known)))


def crop_haar(image: np.ndarray, size: int) -> np.ndarray | None:
    """The largest Haar-detected face cut and resized to size x size, or None without a face."""
    box = detect_face(image)
    if box is None:
        return None
    top, left, bottom, right = box
    return crop_face(image[top:bottom, left:right], None, size)[0]


def read_folders(root, size: int = 99, crop: str = "none", subject_from: str | None = None,
                 progress: bool = False) -> FaceSet:
    """Read a folder-per-class tree: every image's parent folder is its class.

    `root/anger/x.png` gives class 'anger'; `root/train/angry/x.jpg` gives class 'anger' and
    partition 'train' (the top-level folder is the partition whenever images sit two or more
    levels down). Class names are normalised (angry -> anger, sad -> sadness, happiness ->
    happy, ...); unknown names are kept as given. Images directly in `root`, and files that are
    not images, are skipped with a reason. `crop`: 'none' resizes the whole image (data already
    cropped, as FER and CK+48), 'haar' cuts OpenCV's face box and skips images without a face.
    Every image is a still (its own sequence). CK+48 names (`S010_004_00000017.png`) give
    subject S010 and frame 17, so subject-grouped splits keep a person's images together.
    `subject_from`, a regular expression searched in the path relative to `root`, names the
    subject (its first group, else the whole match) of every image; without it any other image
    is its own subject, and a warning says so. Warnings (`FaceSet.warnings`) also name colour
    images converted to grey and small images upscaled to `size`.
    """
    root = Path(root)
    if not root.is_dir():
        raise located(root, "no such folder")
    if crop not in ("none", "haar"):
        raise InterpretError(f"crop must be 'none' or 'haar', got {crop!r}")
    try:
        subject_pattern = re.compile(subject_from) if subject_from else None
    except re.error as err:
        raise InterpretError(f"--subject-from {subject_from!r} is not a regular expression ({err})") from None
    skipped: list[tuple[str, str]] = []
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
            skipped.append((str(path), "hidden or system file"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((str(path), "not an image"))
        elif len(rel.parts) < 2:
            skipped.append((str(path), "image outside a class folder"))
        else:
            entries.append((path, rel))
    if not entries:
        raise located(root, "no images in class folders (expected ROOT/CLASS/IMAGE or ROOT/SPLIT/CLASS/IMAGE)")
    classes = class_order(canonical_class(rel.parts[-2]) for _, rel in entries)
    index = {name: i for i, name in enumerate(classes)}
    images, subject, sequence, frame, emotion, paths, partition = ([] for _ in range(7))
    colour, small, smallest = 0, 0, None
    for path, rel in progress_bar(entries, enabled=progress, desc="images", unit="img"):
        image, in_colour = read_image(path)
        colour += in_colour
        if crop == "haar":
            box = detect_face(image)
            if box is None:
                skipped.append((str(path), "no face found"))
                continue
            image = image[box[0]:box[2], box[1]:box[3]]
        if min(image.shape) < size:
            small += 1
            smallest = image.shape if smallest is None or min(image.shape) < min(smallest) else smallest
        crop_image = crop_face(image, None, size)[0]
        match = _CKPLUS_NAME.fullmatch(path.stem)
        images.append(crop_image)
        if subject_pattern is not None:
            found = subject_pattern.search(rel.as_posix())
            if found is None:
                raise located(path, f"--subject-from {subject_from!r} does not match {rel.as_posix()!r}")
            subject.append(found.group(1) if found.groups() else found.group(0))
        else:
            subject.append(match.group(1) if match else rel.with_suffix("").as_posix())
        sequence.append(rel.with_suffix("").as_posix())
        frame.append(int(match.group(2)) if match else 1)
        emotion.append(index[canonical_class(rel.parts[-2])])
        paths.append(str(path))
        partition.append(rel.parts[0] if len(rel.parts) >= 3 else "")
    warnings = []
    if colour:
        warnings.append(f"{colour} colour images were converted to grey (the networks here see grey faces)")
    if small:
        warnings.append(f"{small} images smaller than {size}x{size} were upscaled to it (smallest "
                        f"{smallest[1]}x{smallest[0]}, {size / min(smallest):.1f}x): their detail is invented "
                        "by interpolation")
    if subject_pattern is None and images and len(set(subject)) == len(images):
        warnings.append("every image is its own subject: images of one person can land in both train and test; "
                        "group them with --subject-from REGEX")
    faceset = stills_faceset(images, subject, sequence, emotion, paths, classes, "folders", size, skipped,
                             partition=partition if any(partition) else None, frame=frame)
    faceset.warnings = warnings
    return faceset

"""`FaceSet`: the one in-memory form every reader and the synthetic generator produce.

Images are face crops already cut (landmark box, face detector, or the whole image for
pre-cropped data) and resized to a square `size` (99 by default: the paper resizes to 99x99
before cropping 96x96). Labels are *raw*, as the source states them: every frame carries its
sequence's emotion and its sequence's peak-frame AUs; `interpret.data.protocols` then decides
which frames are neutral, which carry the emotion, and which are dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace

import numpy as np

from interpret.facs import au_name

#: `au_intensity` value for an AU that is not present.
ABSENT = -1
#: `au_intensity` value for an AU whose presence the source leaves open (BP4D's 9, a frame
#: OpenFace did not track): neither present nor absent; AU analyses leave the frame out.
UNKNOWN = -2
#: `emotion` value for a frame whose sequence has no emotion label.
UNLABELLED = -1


@dataclass
class FaceSet:
    """N face crops with their labels, in a fixed order.

    images        (N, S, S) uint8 grey face crops
    landmarks     (N, 68, 2) float32 (x, y) in crop pixel coordinates, or None
    subject       (N,) str   subject / identity id, e.g. 'S005'
    sequence      (N,) str   sequence id unique across subjects, e.g. 'S005/001'
    frame         (N,) int   frame number within the sequence (CK+ numbering; 1 for stills)
    emotion       (N,) int   index into `emotions`, UNLABELLED (-1) when the source has none
    au_intensity  (N, A) int8  per AU in `au_codes`: UNKNOWN (-2), ABSENT (-1), 0 present with
                  intensity not coded, 1..5 = A..E
    paths         (N,) str   the file each frame came from ('' when generated in memory)
    emotions      class names, the index space of `emotion`
    au_codes      (A,) int   AU numbers of the `au_intensity` columns
    skipped       [(path, reason)] inputs the reader passed over
    source        'ckplus', 'synthetic', 'fer2013', 'ferplus', 'jaffe' or 'folders'
    partition     (N,) str  the source's own split (FER's Usage, a folder tree's top level), or None
    stills        True when the format holds single images (FER, JAFFE, folders): rows are never
                  taken for frames of a sequence, whatever their names
    warnings      what the reader assumed about the data, to print and to show in the report
    label_options the reader options that decided the labels (presence thresholds, AU source,
                  landmark backend), echoed in every output; {} when there are none
    """

    images: np.ndarray
    landmarks: np.ndarray | None
    subject: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray
    emotion: np.ndarray
    au_intensity: np.ndarray
    paths: np.ndarray
    emotions: tuple[str, ...]
    au_codes: np.ndarray
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    partition: np.ndarray | None = None
    stills: bool = False
    warnings: list[str] = field(default_factory=list)
    label_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("subject", "sequence", "frame", "emotion", "au_intensity", "paths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceSet.{name} has {len(getattr(self, name))} rows, images {n}")
        if self.au_intensity.shape[1:] != (len(self.au_codes),):
            raise ValueError("FaceSet.au_intensity columns do not match au_codes")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def au_present(self) -> np.ndarray:
        """(N, A) bool presence (UNKNOWN counts as not present; see `au_known`)."""
        return self.au_intensity >= 0

    @property
    def au_known(self) -> np.ndarray:
        """(N, A) bool: the source states whether the AU is present (not UNKNOWN)."""
        return self.au_intensity != UNKNOWN

    @property
    def au_names(self) -> list[str]:
        return [au_name(a) for a in self.au_codes]

    def select(self, index) -> "FaceSet":
        """A FaceSet of the rows `index` (bool mask or integer indices), order kept."""
        index = np.asarray(index)
        per_row = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name in _PER_ROW}
        if self.landmarks is not None:
            per_row["landmarks"] = self.landmarks[index]
        if self.partition is not None:
            per_row["partition"] = self.partition[index]
        return replace(self, **per_row)

    def fingerprint(self) -> str:
        """SHA-256 over images and labels: equal data, equal fingerprint. Images stored on disk
        (`interpret.datastore.StoredImages`) give the digest of their bytes, hashed once per file."""
        if hasattr(self.images, "hashed"):
            digest = self.images.hashed()
        else:
            digest = hashlib.sha256()
            hash_array(digest, "images", self.images)
        for name in ("subject", "sequence", "frame", "emotion", "au_intensity", "au_codes"):
            hash_array(digest, name, getattr(self, name))
        digest.update("|".join(self.emotions).encode())
        return digest.hexdigest()


def hash_array(digest, name: str, arr, blocks=None) -> None:
    """Feed one named array (its shape, then its values) to a hashlib digest. `blocks`: a numeric
    array's values as consecutive row blocks (read from disk a part at a time); default `arr`."""
    if blocks is None:
        arr = np.ascontiguousarray(arr)
        blocks = [arr]
    digest.update(name.encode())
    digest.update(str(tuple(arr.shape)).encode())
    if arr.dtype.kind in "OU":  # at the longest string's width: the same text, the same bytes
        text = arr.astype(str)
        width = max(1, int(np.char.str_len(text).max())) if text.size else 1
        digest.update(text.astype(f"<U{width}").tobytes())
        return
    for block in map(np.ascontiguousarray, blocks):
        if block.size:  # memoryview cannot cast an empty (N, 0) array; its shape is hashed above
            digest.update(memoryview(block).cast("B"))


_PER_ROW = ("images", "subject", "sequence", "frame", "emotion", "au_intensity", "paths")


@dataclass
class RawSequence:
    """One sequence of full frames as a source holds it (CK+ on disk, or generated).

    frames     list of (H, W) uint8 grey full images, in frame order
    landmarks  list of (68, 2) float32 (x, y) per frame, or None
    frame_numbers  the CK+ frame numbers (1-based)
    emotion    CK+ emotion code (0..7) of the sequence, or None when it has no Emotion file
    facs       {AU: intensity} of the peak (last) frame; intensity 0 = present, not coded
    paths      source file per frame ('' when generated)
    """

    subject: str
    number: int
    frames: list[np.ndarray]
    landmarks: list[np.ndarray] | None
    frame_numbers: list[int]
    emotion: int | None
    facs: dict[int, int]
    paths: list[str]

    @property
    def sequence_id(self) -> str:
        return f"{self.subject}/{self.number:03d}"


def faceset_from_sequences(sequences, au_codes, emotions, source: str, size: int = 99,
                           skipped=None) -> FaceSet:
    """Crop every frame (landmark box when landmarks exist, else the whole image) into a FaceSet."""
    from interpret.data.crop import crop_face

    images, marks, subject, sequence, frame, emotion, intensity, paths = ([] for _ in range(8))
    au_codes = np.asarray(sorted(au_codes), dtype=np.int64)
    column = {int(a): i for i, a in enumerate(au_codes)}
    for seq in sequences:
        row = np.full(len(au_codes), ABSENT, dtype=np.int8)
        for au, level in seq.facs.items():
            if au in column:
                row[column[au]] = level
        for i, image in enumerate(seq.frames):
            points = None if seq.landmarks is None else seq.landmarks[i]
            crop, crop_points = crop_face(image, points, size)
            images.append(crop)
            marks.append(crop_points)
            subject.append(seq.subject)
            sequence.append(seq.sequence_id)
            frame.append(seq.frame_numbers[i])
            emotion.append(UNLABELLED if seq.emotion is None else seq.emotion)
            intensity.append(row)
            paths.append(seq.paths[i])
    n = len(images)
    has_marks = n > 0 and all(m is not None for m in marks)
    return FaceSet(
        images=np.stack(images) if n else np.zeros((0, size, size), np.uint8),
        landmarks=np.stack(marks).astype(np.float32) if has_marks else None,
        subject=np.array(subject, dtype=str),
        sequence=np.array(sequence, dtype=str),
        frame=np.array(frame, dtype=np.int64),
        emotion=np.array(emotion, dtype=np.int64),
        au_intensity=np.stack(intensity) if n else np.zeros((0, len(au_codes)), np.int8),
        paths=np.array(paths, dtype=str),
        emotions=tuple(emotions),
        au_codes=au_codes,
        source=source,
        skipped=list(skipped or []),
    )


def stills_faceset(images, subject, sequence, emotion, paths, emotions, source: str, size: int,
                   skipped=None, partition=None, frame=None) -> FaceSet:
    """A FaceSet of still images (no landmarks, no AUs): FER, JAFFE, folder trees."""
    n = len(images)
    return FaceSet(
        images=np.stack(images) if n else np.zeros((0, size, size), np.uint8),
        landmarks=None,
        subject=np.array(subject, dtype=str),
        sequence=np.array(sequence, dtype=str),
        frame=np.ones(n, dtype=np.int64) if frame is None else np.array(frame, dtype=np.int64),
        emotion=np.array(emotion, dtype=np.int64),
        au_intensity=np.full((n, 0), ABSENT, dtype=np.int8),
        paths=np.array(paths, dtype=str),
        emotions=tuple(emotions),
        au_codes=np.zeros(0, dtype=np.int64),
        source=source,
        skipped=list(skipped or []),
        partition=None if partition is None else np.asarray(partition, dtype=str),
        stills=True,
    )

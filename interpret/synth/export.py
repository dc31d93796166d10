"""Write the synthetic data set to disk in CK+ layout or as fer2013.csv."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from interpret.data.crop import crop_face
from interpret.errors import InterpretError
from interpret.io import default_mode
from interpret.synth.sequences import generate_sequences

#: CK+ emotion code -> FER2013 code (0 angry 1 disgust 2 fear 3 happy 4 sad 5 surprise 6 neutral).
#: Contempt (2) has no FER2013 class: its expressive frames are left out.
CKPLUS_TO_FER = {0: 6, 1: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}
_USAGE = ("Training",) * 8 + ("PublicTest", "PrivateTest")


def write_synthetic(out, subjects: int = 40, seed: int = 0, fmt: str = "ckplus",
                    frames: tuple[int, int] = (6, 12)) -> Path:
    """Generate `subjects` synthetic subjects and write them under the new folder `out`.

    'ckplus': CK+'s cohn-kanade-images/Landmarks/FACS/Emotion trees. 'fer2013': `out/fer2013.csv`
    with 48x48 landmark-box crops; every first frame is neutral, later frames carry the sequence's
    emotion, unlabelled and contempt sequences contribute their first frame only; Usage is
    assigned per subject (8 Training : 1 PublicTest : 1 PrivateTest). The folder is built under a
    temporary name and renamed when complete. Returns `out`.
    """
    if fmt not in ("ckplus", "fer2013"):
        raise InterpretError(f"--format: unknown format {fmt!r}; use ckplus or fer2013")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InterpretError(f"{out}: already exists and is not an empty folder")
    sequences = generate_sequences(subjects, seed, frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if fmt == "ckplus":
            from interpret.data.ckplus import write_ckplus

            write_ckplus(tmp, sequences)
        else:
            _write_fer(tmp / "fer2013.csv", sequences)
        if out.exists():
            out.rmdir()
        tmp.chmod(default_mode(directory=True))
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_fer(path: Path, sequences) -> None:
    from interpret.data.fer import write_fer2013

    order = {s: i for i, s in enumerate(dict.fromkeys(seq.subject for seq in sequences))}
    images, emotions, usage = [], [], []
    for seq in sequences:
        use = _USAGE[order[seq.subject] % len(_USAGE)]
        for i, (image, points) in enumerate(zip(seq.frames, seq.landmarks)):
            code = 0 if i == 0 else seq.emotion
            if code is None or code not in CKPLUS_TO_FER:
                continue
            images.append(crop_face(image, points, 48)[0])
            emotions.append(CKPLUS_TO_FER[code])
            usage.append(use)
    write_fer2013(path, np.stack(images), np.array(emotions), usage)

import numpy as np
import pytest

from interpret.data.faceset import ABSENT, UNLABELLED, FaceSet
from interpret.data.protocols import apply_protocol, frame_rank
from interpret.data.splits import assign_split, subject_folds
from interpret.errors import InterpretError
from interpret.facs import CKPLUS_EMOTIONS


def make_faceset(lengths, emotions, subjects):
    """Sequences of the given lengths, frames shuffled so order handling is exercised."""
    rows = []
    for s, (n, emo, subj) in enumerate(zip(lengths, emotions, subjects)):
        for f in range(1, n + 1):
            rows.append((subj, f"{subj}/{s:03d}", f, emo))
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    n = len(rows)
    return FaceSet(
        images=np.zeros((n, 99, 99), np.uint8), landmarks=None,
        subject=np.array([r[0] for r in rows]), sequence=np.array([r[1] for r in rows]),
        frame=np.array([r[2] for r in rows]), emotion=np.array([r[3] for r in rows]),
        au_intensity=np.tile(np.array([[3, ABSENT]], np.int8), (n, 1)), paths=np.array([""] * n),
        emotions=CKPLUS_EMOTIONS, au_codes=np.array([1, 2]), source="test")


def test_frame_rank_counts_from_both_ends():
    fs = make_faceset([3, 5], [5, 7], ["S1", "S2"])
    pos, from_end = frame_rank(fs)
    assert np.array_equal(pos, fs.frame - 1)
    lengths = {"S1/000": 3, "S2/001": 5}
    assert np.array_equal(from_end, [lengths[s] - f for s, f in zip(fs.sequence, fs.frame)])


def test_paper_protocol_first_frame_neutral_without_aus():
    fs = make_faceset([4, 3, 2], [5, 7, UNLABELLED], ["S1", "S2", "S3"])
    out = apply_protocol(fs, "paper")
    assert len(out) == len(fs)
    first = out.frame == 1
    labelled = fs.emotion != UNLABELLED
    assert np.all(out.emotion[first & labelled] == 0)
    assert np.all(out.emotion[first & ~labelled] == UNLABELLED)
    assert np.all(out.emotion[~first] == fs.emotion[~first])
    assert not out.au_present[first].any()
    assert out.au_present[~first, 0].all()


def test_khorrami_keeps_first_and_last_three():
    fs = make_faceset([8, 3], [5, 7], ["S1", "S2"])
    out = apply_protocol(fs, "khorrami")
    kept = sorted(zip(out.sequence, out.frame))
    assert kept == [("S1/000", f) for f in (1, 6, 7, 8)] + [("S2/001", f) for f in (1, 2, 3)]


def test_sequence_protocol_on_stills_is_an_error():
    fs = make_faceset([1, 1], [5, 7], ["a", "b"])
    assert apply_protocol(fs, "auto") is fs
    with pytest.raises(InterpretError, match="needs image sequences"):
        apply_protocol(fs, "paper")


def test_subject_folds_never_split_a_subject_and_balance():
    subjects = np.repeat([f"S{i}" for i in range(23)], np.arange(1, 24))
    folds = subject_folds(subjects, 5, seed=0)
    for s in np.unique(subjects):
        assert len(np.unique(folds[subjects == s])) == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 23


def test_kfold_split_parts_are_subject_disjoint():
    subjects = np.repeat([f"S{i}" for i in range(30)], 4)
    split = assign_split(subjects, folds=10, fold=3, seed=1)
    parts = {p: set(subjects[split == p]) for p in ("train", "val", "test")}
    assert parts["test"] and parts["val"] and parts["train"]
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["val"])
    assert not (parts["val"] & parts["test"])
    assert not np.array_equal(split, assign_split(subjects, folds=10, fold=3, seed=2))


def test_paper_split_overlaps_subjects():
    subjects = np.repeat([f"S{i}" for i in range(10)], 50)
    split = assign_split(subjects, kind="paper", n_test=200, seed=0)
    assert (split == "test").sum() == 200
    assert set(subjects[split == "test"]) & set(subjects[split == "train"])


def test_bad_fold_is_a_clear_error():
    with pytest.raises(InterpretError, match="--fold"):
        assign_split(np.array(["a", "b", "c"]), folds=3, fold=3)

"""au-map on per-frame AU labels: the circular-shift null, unknown labels, and DISFA end to end."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from interpret import landmarks as lm
from interpret.aumap import au_distance, au_statistics, circular_sources
from interpret.cli import app

runner = CliRunner()


def smooth(rng, shape, width=8):
    """Autocorrelated unit-variance noise along the first axis (a moving average of white noise)."""
    noise = rng.standard_normal((shape[0] + width,) + tuple(shape[1:]))
    return (np.cumsum(noise, axis=0)[width:] - np.cumsum(noise, axis=0)[:-width]) / np.sqrt(width)


def episodes(rng, frames):
    track = np.zeros(frames, bool)
    for _ in range(3):
        start = rng.integers(0, frames - 12)
        track[start:start + rng.integers(6, 12)] = True
    return track


@pytest.fixture(scope="module")
def per_frame():
    """10 sequences of 60 frames (stored in shuffled row order), one AU in episodes."""
    rng = np.random.default_rng(5)
    S, T = 10, 60
    aus = np.concatenate([episodes(rng, T) for _ in range(S)])
    sequence = np.repeat([f"V{s:02d}" for s in range(S)], T)
    frame = np.tile(np.arange(1, T + 1), S)
    order = rng.permutation(S * T)
    return aus[order], sequence[order], frame[order], rng


def test_circular_sources_rotate_each_sequence_track(per_frame):
    aus, sequence, frame, _ = per_frame
    _, seq_index = np.unique(sequence, return_inverse=True)
    shifts = np.random.default_rng(1).integers(0, 60, size=(4, 10))
    source = circular_sources(seq_index, frame, shifts)
    for p in range(4):
        for s in range(10):
            rows = np.flatnonzero(seq_index == s)
            rows = rows[np.argsort(frame[rows])]
            assert np.array_equal(aus[source[p, rows]], np.roll(aus[rows], shifts[p, s]))


def test_circular_null_finds_a_tracking_map_and_is_calibrated_for_smooth_noise(per_frame):
    aus, sequence, frame, rng = per_frame
    n = len(aus)
    # rows are shuffled; the smooth maps must be smooth in time within each sequence
    _, seq_index = np.unique(sequence, return_inverse=True)
    time_order = np.lexsort((frame, seq_index))
    maps = np.zeros((n, 201))
    maps[time_order, 1:] = smooth(rng, (n, 200))
    maps[:, 1:] += 10
    maps[:, 0] = 10 + 3 * aus + rng.standard_normal(n)  # map 0 follows the AU
    res = au_statistics(maps, aus[:, None], [12], sequence, frame, sequence, [12], n=9, permutations=199,
                        bootstrap=0, unit="circular")["AU12"]
    assert res["permutation_unit"] == "circular shift within sequence"
    assert res["best_map"] == 0 and res["p_family"] <= 0.05
    false_positives = np.mean(np.asarray(res["p_map"])[1:] < 0.05)
    assert false_positives <= 0.12


def test_unknown_frames_are_in_neither_set(per_frame):
    aus, sequence, frame, rng = per_frame
    maps = rng.random((len(aus), 5))
    known = np.ones(len(aus), bool)
    known[::7] = False
    maps[~known & ~aus, 2] = 100.0  # huge values on frames whose label is unknown
    res = au_statistics(maps, aus[:, None], [12], sequence, frame, sequence, [12], n=9, permutations=20,
                        bootstrap=5, known=known[:, None], unit="circular")["AU12"]
    expected = au_distance(maps[known], aus[known], n=9, epsilon=res["epsilon"])
    assert np.allclose(res["distance"], expected)
    assert res["n_unknown"] == int((~known).sum()) and res["n_absent"] == int((known & ~aus).sum())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from interpret.training import train

    return train(data="synthetic", out=tmp_path_factory.mktemp("trained") / "run", arch="khorrami2015",
                 recipe="fast", epochs=1, folds=3, fold=0, subjects=3, seed=0, device="cpu",
                 progress=False, checkpoint_every=0)


def test_au_map_on_disfa_format_frames(trained_run, disfa_tree, tmp_path):
    probe = tmp_path / "probe"
    result = runner.invoke(app, ["probe", "--run", str(trained_run), "--data", str(disfa_tree), "--out", str(probe),
                                 "--read", "crop=none", "--read", "threshold=2"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["cache", "--run", str(probe), "--device", "cpu"]).exit_code == 0
    result = runner.invoke(app, ["au-map", "--run", str(probe), "--au", "12", "--permutations", "30",
                                 "--bootstrap", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "labels: threshold=2" in result.output and "null: circular shift within sequence" in result.output
    res = json.loads((probe / "aumap" / "AU12.json").read_text())
    levels = [int(line.split(",")[1]) for s in ("SN001", "SN002", "SN003")
              for line in (disfa_tree / "ActionUnit_Labels" / s / f"{s}_au12.txt").read_text().splitlines()]
    assert res["n_present"] == sum(v >= 2 for v in levels) and res["n_absent"] == sum(v < 2 for v in levels)
    assert res["permutation_unit"] == "circular shift within sequence"
    assert res["labels"]["threshold"] == 2 and res["labels"]["presence"] == "intensity >= 2"
    assert res["n_sequences"] == 3 and 0 < res["p_family"] <= 1
    config = json.loads((probe / "config.json").read_text())
    assert config["protocol"] == "frames" and config["probe_of"]["run"] == str(trained_run.resolve())


@pytest.mark.skipif(not lm.available("mediapipe"), reason="MediaPipe not installed: pip install 'interpret[landmarks]'")
def test_probe_with_detected_landmarks_reloads_them(trained_run, tmp_path):
    import cv2
    import skimage.data

    from interpret.runs import load_run

    for i, face in enumerate(skimage.data.lfw_subset()[:12]):
        (tmp_path / "faces" / ("happy" if i % 2 else "sadness")).mkdir(parents=True, exist_ok=True)
        image = cv2.resize((face * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(tmp_path / "faces" / ("happy" if i % 2 else "sadness") / f"{i}.png"), image)
    result = runner.invoke(app, ["probe", "--run", str(trained_run), "--data", str(tmp_path / "faces"),
                                 "--out", str(tmp_path / "probe"), "--landmarks", "auto"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert config["data"]["landmarks"] == "auto"
    faceset = load_run(tmp_path / "probe").dataset.faceset
    assert faceset.landmarks is not None and len(faceset) + len(faceset.skipped) == 12
    assert faceset.label_options["landmarks"] == "mediapipe"
    assert (tmp_path / "faces.landmarks-mediapipe.h5").is_file()

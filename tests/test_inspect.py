"""`summarize` / `render_summary` on real files: CK+ sequences and still images."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from interpret.data import load_faceset
from interpret.data.ckplus import write_ckplus
from interpret.data.faceset import RawSequence
from interpret.data.fer import write_fer2013
from interpret.inspect import render_summary, summarize


def _sequence(subject, number, frames, emotion, facs, seed):
    rng = np.random.default_rng(seed)
    i = np.arange(68)
    marks = np.stack([180 + 260 * (i % 17) / 16, 90 + 300 * (i // 17) / 3], axis=1).astype(np.float32)
    return RawSequence(subject, number, [rng.integers(0, 256, (490, 640), np.uint8) for _ in range(frames)],
                       [marks] * frames, list(range(1, frames + 1)), emotion, facs, [""] * frames)


def _ck_tree(root):
    write_ckplus(root, [
        _sequence("S005", 1, 4, 3, {9: 4, 17: 0}, 1),   # disgust
        _sequence("S005", 2, 3, None, {1: 2}, 2),        # no Emotion file
        _sequence("S010", 1, 2, 5, {12: 3, 17: 1}, 3),   # happy
    ])
    (root / "cohn-kanade-images" / ".DS_Store").write_bytes(b"junk")
    return root


def test_summarize_ckplus(tmp_path):
    summary = summarize(load_faceset(_ck_tree(tmp_path / "ck"), progress=False))
    assert summary["source"] == "ckplus" and summary["protocol"] == "paper"
    assert (summary["subjects"], summary["sequences"], summary["labelled_sequences"], summary["frames"]) == (2, 3, 2, 9)
    # paper protocol: first frame of each labelled sequence neutral, the rest its emotion
    assert summary["emotions"] == {"neutral": 2, "anger": 0, "contempt": 0, "disgust": 3, "fear": 0, "happy": 1,
                                   "sadness": 0, "surprise": 0}
    assert summary["emotion_sequences"]["disgust"] == 1 and summary["emotion_sequences"]["neutral"] == 0
    assert summary["aus"] == {"AU01": 1, "AU09": 1, "AU12": 1, "AU17": 2}
    assert summary["skipped"] == [{"path": str(tmp_path / "ck" / "cohn-kanade-images" / ".DS_Store"),
                                   "reason": "system file"}]
    assert summary["partitions"] is None and summary["landmarks"] is True and summary["size"] == 99
    json.dumps(summary)
    text = render_summary(summary)
    assert "sequences   3 (2 with an emotion)" in text
    assert any(line.split()[:2] == ["AU17", "2"] and "chin raiser" in line for line in text.splitlines())
    assert any(line.split() == ["disgust", "3", "1"] for line in text.splitlines())
    assert "1  system file: " in text


def test_summarize_stills(tmp_path):
    rng = np.random.default_rng(0)
    labels = [3, 3, 0, 6, 3]
    write_fer2013(tmp_path / "fer2013.csv", rng.integers(0, 256, (5, 48, 48), np.uint8), labels,
                  ["Training"] * 4 + ["PublicTest"])
    summary = summarize(load_faceset(tmp_path / "fer2013.csv"))
    assert summary["protocol"] == "frames" and summary["frames"] == 5 and summary["subjects"] == 5
    assert summary["sequences"] == summary["labelled_sequences"] == 5
    assert summary["emotions"] == {"anger": 1, "disgust": 0, "fear": 0, "happy": 3, "sadness": 0, "surprise": 0,
                                   "neutral": 1}
    assert summary["aus"] == {} and summary["partitions"] == {"PublicTest": 1, "Training": 4}
    text = render_summary(summary)
    assert "partitions  PublicTest 1, Training 4" in text and "each image its own label" in text


def test_cli_inspect(tmp_path):
    from interpret.cli import app

    root = _ck_tree(tmp_path / "ck")
    result = CliRunner().invoke(app, ["inspect", "--data", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{"):])["frames"] == 9
    result = CliRunner().invoke(app, ["inspect", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such file or folder" in result.output

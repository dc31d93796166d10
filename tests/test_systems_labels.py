"""Seed-system labels and transforms: valence levels and formula, FER+ label modes (hand rows and
Microsoft's real vote file), the L2 penalty, ten-crop against TenCrop's documented composition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from interpret.errors import InterpretError
from interpret.models import build_model
from interpret.synth import synthetic_faceset
from interpret.data.protocols import apply_protocol
from interpret.systems import ferplus_labels as fp
from interpret.systems.liu2019 import l2_penalty
from interpret.systems.valence import (aggregate_ratings, read_valence_csv, round_half_up, synthetic_valence,
                                       true_valence, valence)
from interpret.systems.wang2022 import FIVE_CLASSES, crop_offsets, five_classes, ten_crop, ten_crop_logits

VOTES = Path("/work/shared/data/ferplus/fer2013new.csv")


# ---------------------------------------------------------------- valence


@pytest.mark.parametrize("k", range(1, 10))
def test_one_hot_level_gives_its_valence(k):
    p = torch.zeros(1, 9)
    p[0, k - 1] = 1.0
    assert float(valence(p)) == pytest.approx((k - 5) / 4)


def test_uniform_and_symmetric_probabilities_give_zero():
    assert float(valence(torch.full((1, 9), 1 / 9))) == pytest.approx(0.0, abs=1e-6)
    p = torch.tensor([[0.5, 0, 0, 0, 0, 0, 0, 0, 0.5]])
    assert float(valence(p)) == pytest.approx(0.0, abs=1e-6)


def test_data_minmax_spans_minus_one_to_one_and_refuses_a_constant_series():
    p = torch.softmax(torch.randn(20, 9, generator=torch.Generator().manual_seed(0)), 1)
    v = valence(p, "data-minmax")
    assert float(v.min()) == pytest.approx(-1.0) and float(v.max()) == pytest.approx(1.0)
    assert torch.equal(v.argsort(), valence(p).argsort())  # monotone in E
    with pytest.raises(InterpretError, match="data-minmax"):
        valence(p[:1], "data-minmax")


def test_rounding_is_half_up_and_ties_are_counted():
    assert round_half_up([4.5, 5.5, 4.49, 1.0, 8.5]).tolist() == [5, 6, 4, 1, 9]
    levels, ties = aggregate_ratings([[4, 5], [5, 6], [5, 5], [3, 4, ]])
    assert levels.tolist() == [5, 6, 5, 4] and ties == 3


def test_valence_csv_levels_and_raw_ratings(tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text("path,level\na.png,3\nb.png,9\n")
    assert read_valence_csv(levels) == {"a.png": 3, "b.png": 9}
    raw = tmp_path / "raw.csv"
    raw.write_text("a.png,4,5,5,4\nb.png,1,2,1,1\n")  # means 4.5 -> 5, 1.25 -> 1
    assert read_valence_csv(raw) == {"a.png": 5, "b.png": 1}


@pytest.mark.parametrize("text,problem,line", [
    ("a.png,3\nb.png,10\n", "1..9", 2),
    ("a.png,3\nb.png,x\n", "'x' is not a number", 2),
    ("a.png,3,4\nb.png,3\n", "2 fields, earlier rows have 3", 2),
    ("a.png,3\na.png,4\n", "listed twice", 2),
    ("a.png,3.5\n", "not a whole number", 1),
    ("a.png\n", "expected path,level", 1),
])
def test_valence_csv_errors_name_file_and_line(tmp_path, text, problem, line):
    path = tmp_path / "valence.csv"
    path.write_text(text)
    with pytest.raises(InterpretError) as err:
        read_valence_csv(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:") and problem in message and "\n" not in message


def test_synthetic_valence_follows_what_was_planted():
    faceset = apply_protocol(synthetic_faceset(subjects=12, seed=3, size=48), "paper")
    v = true_valence(faceset)
    levels = synthetic_valence(faceset, seed=3)
    assert levels.min() >= 1 and levels.max() <= 9
    assert np.array_equal(levels, synthetic_valence(faceset, seed=3))
    happy = faceset.emotion == faceset.emotions.index("happy")
    sad = faceset.emotion == faceset.emotions.index("sadness")
    assert levels[happy].mean() > 5.5 > 4.5 > levels[sad].mean()
    assert np.all(v[faceset.frame == 1] == 0)
    # ten raters (each rounded, clipped to 1..9), their mean rounded: close to the planted level
    error = np.abs(levels - (5 + 4 * v))
    assert error.mean() < 0.4 and error.max() <= 1.5


# ---------------------------------------------------------------- FER+ label modes


HAND_ROWS = [
    # votes, {mode: expected (8,) distribution or None}
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], {"majority": None, "crossentropy": {0: 4 / 7, 4: 3 / 7},
                                      "multi_target": {0: 4 / 7, 4: 3 / 7}}),
    ([6, 0, 1, 1, 0, 0, 0, 0, 2, 0], {"majority": {0: 1.0}, "crossentropy": {0: 1.0}, "multi_target": {0: 1.0}}),
    ([0, 5, 0, 0, 0, 0, 0, 0, 5, 0], {"majority": None, "crossentropy": None, "multi_target": {1: 1.0}}),
    ([3, 3, 3, 0, 0, 0, 0, 0, 0, 1], {"majority": None, "crossentropy": {0: 1 / 3, 1: 1 / 3, 2: 1 / 3},
                                      "multi_target": {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}}),
    ([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], {"majority": None, "crossentropy": None, "multi_target": None}),
    ([0, 0, 0, 0, 0, 0, 0, 0, 1, 9], {"majority": None, "crossentropy": None, "multi_target": None}),
]


@pytest.mark.parametrize("votes,expected", HAND_ROWS)
def test_ferplus_modes_on_hand_computed_rows(votes, expected):
    for mode, want in expected.items():
        got = fp.emotion_distribution(votes, mode)
        if want is None:
            assert got is None, (mode, got)
        else:
            full = np.zeros(8)
            for i, value in want.items():
                full[i] = value
            np.testing.assert_allclose(got, full, err_msg=mode)
    # probability mode keeps the same rows and distribution as crossentropy
    same = fp.emotion_distribution(votes, "probability")
    other = fp.emotion_distribution(votes, "crossentropy")
    assert (same is None and other is None) or np.allclose(same, other)


def test_ferplus_mode_targets_and_losses():
    dist = torch.tensor([[4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0]])
    multi = fp.training_target(dist, "multi_target")
    np.testing.assert_allclose(multi[0].numpy(), [1, .001, .001, .001, 1, .001, .001, .001], rtol=1e-6)
    draws = fp.training_target(dist.repeat(4000, 1), "probability", torch.Generator().manual_seed(0))
    assert torch.all(draws.sum(1) == 1) and set(draws.argmax(1).tolist()) == {0, 4}
    assert float(draws[:, 0].mean()) == pytest.approx(4 / 7, abs=0.03)
    logits = torch.tensor([[2.0, 0, 0, 0, 1.0, 0, 0, 0]])
    p = torch.softmax(logits, 1)[0]
    assert float(fp.loss(logits, multi, "multi_target")) == pytest.approx(-float(torch.log(p[0])), rel=1e-5)
    assert float(fp.loss(logits, dist, "crossentropy")) == pytest.approx(
        -(4 / 7 * float(torch.log(p[0])) + 3 / 7 * float(torch.log(p[4]))), rel=1e-5)
    with pytest.raises(InterpretError):
        fp.process_votes([1] * 10, "plurality")


@pytest.mark.skipif(not VOTES.is_file(), reason="the real FER+ vote file is not on this machine")
def test_ferplus_majority_counts_on_the_real_vote_file():
    """SEEDS.md §2.1: the reference rule gives Train 25,060 / Valid 3,199 / Test 3,153."""
    counts = fp.label_counts(VOTES, "majority")
    assert counts["Training"] == {"neutral": 8740, "happy": 7287, "surprise": 3149, "sadness": 3014, "anger": 2100,
                                  "disgust": 119, "fear": 532, "contempt": 119, "dropped": 3501, "empty_name": 148}
    kept = {use: sum(c[e] for e in fp.EMOTIONS) for use, c in counts.items()}
    assert kept == {"Training": 25060, "PublicTest": 3199, "PrivateTest": 3153}
    assert counts["PublicTest"]["dropped"] == 380 and counts["PrivateTest"]["dropped"] == 421
    soft = fp.label_counts(VOTES, "crossentropy")
    multi = fp.label_counts(VOTES, "multi_target")
    for use in kept:  # the soft modes keep more rows than majority, and every row is accounted for
        total = sum(counts[use].values())
        assert sum(soft[use].values()) == sum(multi[use].values()) == total
        assert soft[use]["dropped"] < multi[use]["dropped"] < counts[use]["dropped"]


def test_vote_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "fer2013new.csv"
    bad.write_text(",".join(fp.HEADER) + "\nTraining,fer0.png,1,2,x,0,0,0,0,0,0,0\n")
    with pytest.raises(InterpretError, match=r"fer2013new.csv:2: votes must be integers"):
        fp.read_votes(bad)


# ---------------------------------------------------------------- L2 penalty


def test_l2_penalty_is_keras_convention_on_fc1_fc2_kernels_only():
    torch.manual_seed(0)
    model = build_model("liu2019", 9)
    expected = 0.05 * (float(model.fc.weight.detach().pow(2).sum()) + float(model.fc2.weight.detach().pow(2).sum()))
    with torch.no_grad():
        assert float(l2_penalty(model)) == pytest.approx(expected, rel=1e-5)
        assert float(l2_penalty(model)) == pytest.approx(164, rel=0.02)  # SEEDS §1.5: ~164 at N(0, 0.05^2) init
        assert float(l2_penalty(model, convention="half")) == pytest.approx(expected / 2, rel=1e-5)
    l2_penalty(model).backward()
    # the gradient is that of a coupled weight decay of 0.1 on those two kernels, nothing else
    torch.testing.assert_close(model.fc.weight.grad, 0.1 * model.fc.weight.detach())
    torch.testing.assert_close(model.fc2.weight.grad, 0.1 * model.fc2.weight.detach())
    assert model.fc.bias.grad is None and model.out.weight.grad is None and model.conv1.weight.grad is None


# ---------------------------------------------------------------- ten-crop and five classes


def reference_ten_crop(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """torchvision's documented TenCrop(size): five_crop(img) + five_crop(hflip(img)), where five_crop
    is (tl, tr, bl, br, center) and center_crop's corner is int(round((S - size) / 2)). Written here
    with plain slicing and a whole-image flip (torchvision cannot be installed beside this torch)."""
    def five(img):
        h, w = img.shape[-2:]
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        return [img[..., :size, :size], img[..., :size, w - size:], img[..., h - size:, :size],
                img[..., h - size:, w - size:], img[..., top:top + size, left:left + size]]
    return five(image) + five(torch.flip(image, dims=[-1]))


@pytest.mark.parametrize("side,size", [(48, 44), (11, 6), (100, 90)])
def test_ten_crop_equals_torchvision_composition(side, size):
    x = torch.arange(2 * 3 * side * side, dtype=torch.float32).view(2, 3, side, side)  # distinct pixels
    crops = ten_crop(x, size)
    assert crops.shape == (2, 10, 3, size, size)
    for i, want in enumerate(reference_ten_crop(x, size)):
        assert torch.equal(crops[:, i], want), i
    # flip-then-crop: the mirrored top-left crop is the mirror of the original top-right region
    assert torch.equal(crops[:, 5], x[..., :size, side - size:].flip(-1))
    assert crop_offsets(side, size)[4] == (int(round((side - size) / 2)),) * 2


def test_ten_crop_test_time_average():
    model = build_model("wang2022", 5).eval()
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        out = ten_crop_logits(model, x, 44)
        per_crop = torch.stack([torch.softmax(model(ten_crop(x, 44)[:, i]), 1) for i in range(10)], 1)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out.exp(), per_crop.mean(1))


def test_five_class_mapping_keeps_the_five_and_unlabels_the_rest():
    faceset = apply_protocol(synthetic_faceset(subjects=6, seed=1, size=48), "paper")
    five = five_classes(faceset)
    assert five.emotions == FIVE_CLASSES and len(five) == len(faceset)
    for old, new in zip(faceset.emotion, five.emotion):
        name = faceset.emotions[old] if old >= 0 else None
        expected = {"neutral": "calm", "anger": "anger", "sadness": "sadness", "happy": "happy", "fear": "fear"}.get(name)
        assert (FIVE_CLASSES[new] if new >= 0 else None) == expected


def test_attainability_of_seed003_rates():
    from interpret.systems.scores import attainable

    counts = {"anger": 369, "sadness": 289, "happy": 198, "fear": 207, "calm": 758}
    table = {"CNN": (95.2, 94.9, 96.1, 97.2, 95.8), "GAN": (90.3, 89.8, 91.7, 92.7, 90.5),
             "LSTM": (87.9, 88.6, 90.6, 89.5, 88.1)}
    ok = {(model, name) for model, rates in table.items() for name, rate in zip(counts, rates)
          if attainable(rate, counts[name])}
    # SEEDS.md §4.6: only Calm (all three models) and LSTM Sad are attainable
    assert ok == {("CNN", "calm"), ("GAN", "calm"), ("LSTM", "calm"), ("LSTM", "sadness")}
    assert attainable(100 * 351 / 369, 369) and not attainable(95.2, 369)


@pytest.mark.skipif(not VOTES.is_file(), reason="the real FER+ vote file is not on this machine")
def test_ferplus_reader_majority_rule_agrees_with_the_reference_port():
    from interpret.data.fer import _ferplus_label

    _, names, votes = fp.read_votes(VOTES)
    for row in votes[names != ""]:
        ours = fp.emotion_distribution(row, "majority")
        label, _ = _ferplus_label(row.tolist(), "majority")
        assert (ours is None and label is None) or (ours is not None and int(np.argmax(ours)) == label)


def test_l2_convention_switch_reaches_the_training_loss():
    from interpret.systems.specs import train_spec

    torch.manual_seed(0)
    model = build_model("liu2019", 9)
    logits, y = torch.zeros(2, 9), torch.tensor([0, 4])
    with torch.no_grad():
        keras = float(train_spec("liu2019").loss(logits, y, model))
        half = float(train_spec("liu2019", "half").loss(logits, y, model))
        ce = float(torch.nn.functional.cross_entropy(logits, y))
    assert keras - ce == pytest.approx(2 * (half - ce), rel=1e-5)
    with pytest.raises(InterpretError):
        train_spec("zhu2019", "half")

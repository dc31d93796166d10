"""Negative controls: the channel rotation keeps the layer's information and changes its maps;
label shuffling moves whole sequences."""

import numpy as np
import torch

from interpret import methods
from interpret.controls import random_rotation, rotate, shuffle_targets


def cv_auroc(features, labels, folds=4):
    """Held-out AUROC of an unpenalised logistic probe (rotation-invariant up to optimisation)."""
    fold = np.arange(len(labels)) % folds
    scores = np.zeros(len(labels))
    for f in range(folds):
        train, _, _ = methods.standardize(features[fold != f])
        mean, std = features[fold != f].mean(0), features[fold != f].std(0)
        W, b = methods.fit_l1_logistic(train, labels[fold != f, None], l1=0.0, iterations=3000)
        scores[fold == f] = ((features[fold == f] - mean) / std) @ W[:, 0] + b[0]
    return methods.auroc_scores(scores[:, None], labels[:, None])[0, 0]


def test_rotation_keeps_the_information_and_changes_the_maps():
    gen = torch.Generator().manual_seed(0)
    n, c = 300, 64
    labels = (torch.rand(n, generator=gen) < 0.4)
    act = torch.relu(torch.randn(n, c, 6, 6, generator=gen))
    act[labels, 3, 2:4, 2:4] += 3.0  # map 3 detects the label
    rotation = random_rotation(c, seed=1)
    assert torch.allclose(rotation @ rotation.T, torch.eye(c), atol=1e-5)
    rotated = rotate(act, rotation)
    assert torch.allclose(rotate(rotated, rotation.T), act, atol=1e-4)  # invertible: nothing lost

    y = labels.numpy()
    before = cv_auroc(act.mean(dim=(2, 3)).numpy().astype(np.float64), y)
    after = cv_auroc(rotated.mean(dim=(2, 3)).numpy().astype(np.float64), y)
    assert before > 0.9 and abs(before - after) < 0.02

    best_before = methods.auroc_scores(act.amax(dim=(2, 3)).numpy(), y[:, None])[0]
    best_after = methods.auroc_scores(rotated.amax(dim=(2, 3)).numpy(), y[:, None])[0]
    assert np.argmax(best_before) == 3 and best_before.max() > 0.95
    assert best_after.max() < best_before.max() - 0.05  # the detector is smeared over the maps
    corr = np.corrcoef(act.amax(dim=(2, 3)).T.numpy(), rotated.amax(dim=(2, 3)).T.numpy())[:c, c:]
    assert np.abs(corr).max() < 0.9


def test_shuffled_labels_break_every_link_to_the_image_and_keep_the_class_counts():
    from interpret.data import load_faceset
    from interpret.data.protocols import apply_protocol, frame_rank
    from interpret.runs import class_targets

    faces = apply_protocol(load_faceset("synthetic", subjects=12, seed=0), "khorrami")
    classes = list(faces.emotions)
    targets = class_targets(faces, classes)
    shuffled = shuffle_targets(targets, seed=4)
    assert np.array_equal(shuffled == -1, targets == -1)  # unlabelled rows stay out
    assert np.array_equal(np.bincount(shuffled[shuffled >= 0]), np.bincount(targets[targets >= 0]))
    first = frame_rank(faces)[0] == 0
    neutral = classes.index("neutral")
    assert (targets[first & (targets >= 0)] == neutral).all()  # the protocol labels first frames neutral ...
    share = (shuffled[first & (shuffled >= 0)] == neutral).mean()
    assert share < 0.6  # ... the shuffled labels do not (overall neutral share, not 1)
    assert np.isclose(share, (targets[targets >= 0] == neutral).mean(), atol=0.15)
    assert (shuffled != targets)[targets >= 0].mean() > 0.4
    assert np.array_equal(shuffle_targets(targets, seed=4), shuffled)
    assert not np.array_equal(shuffle_targets(targets, seed=5), shuffled)

import math

import numpy as np
import pytest
import torch

from interpret.data import transforms


@pytest.fixture
def faces():
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 99, 99), dtype=np.uint8))


def test_evaluate_is_centre_crop_standardized(faces):
    out = transforms.evaluate(faces)
    assert out.shape == (8, 1, 96, 96) and out.dtype == torch.float32
    crop = faces[:, 1:97, 1:97].double()
    expected = (crop - crop.mean((1, 2), keepdim=True)) / crop.flatten(1).std(1).view(-1, 1, 1)
    assert torch.allclose(out[:, 0].double(), expected, atol=1e-5)
    assert torch.allclose(out.mean((1, 2, 3)), torch.zeros(8), atol=1e-5)


def test_augment_is_deterministic_for_a_seed(faces):
    a = transforms.augment(faces, torch.Generator().manual_seed(3))
    b = transforms.augment(faces, torch.Generator().manual_seed(3))
    c = transforms.augment(faces, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 1, 96, 96)


def test_augment_without_rotation_is_a_crop_or_its_mirror(faces, monkeypatch):
    """With rotation off, every output equals one of the 4x4 integer crops, maybe flipped."""
    monkeypatch.setattr(transforms, "MAX_ROTATION", 0.0)
    out = transforms.augment(faces, torch.Generator().manual_seed(0))
    for i in range(len(faces)):
        candidates = []
        for dy in range(4):
            for dx in range(4):
                crop = faces[i:i + 1, None, dy:dy + 96, dx:dx + 96].float()
                candidates += [transforms.standardize(crop), transforms.standardize(torch.flip(crop, [-1]))]
        errors = [float((out[i:i + 1] - c).abs().max()) for c in candidates]
        assert min(errors) < 1e-3


def test_augment_rotates_within_fifteen_degrees():
    """A horizontal bar stays within +-15 degrees of horizontal after augmentation."""
    img = np.zeros((99, 99), np.uint8)
    img[48:51, 10:89] = 255
    batch = torch.from_numpy(np.repeat(img[None], 64, 0))
    out = transforms.augment(batch, torch.Generator().manual_seed(1))[:, 0].numpy()
    angles = []
    for im in out:
        ys, xs = np.nonzero(im > im.mean() + 2 * im.std())
        slope = np.polyfit(xs, ys, 1)[0]
        angles.append(math.degrees(math.atan(slope)))
    angles = np.abs(angles)
    assert angles.max() <= 15.5
    assert angles.max() > 8  # rotation is actually applied

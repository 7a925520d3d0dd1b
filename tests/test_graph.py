"""The tricks of the lean feature graph (train.py "model"), each with a test that fails if it
breaks, and the README's recipe for trying another normalization."""
import itertools
import math

import numpy as np
import pytest
import torch

from conftest import STANDING
import train
from MediaPipe_Dataset import model as model_lib, samples  # noqa: E402

FLAT = torch.tensor(STANDING.reshape(1, -1), dtype=torch.float32)


def without(points, x=FLAT):
    """x with the given points set to NaN."""
    x = x.clone()
    for p in points:
        x[:, 2 * p:2 * p + 2] = math.nan
    return x


# ----------------------------------------------------------------------------- SHOULDER_WEIGHT
@pytest.mark.parametrize("missing", [m for k in range(5) for m in itertools.combinations(samples.TORSO, k)])
def test_a_pose_is_placed_exactly_when_a_hip_or_a_shoulder_is_there(missing):
    # Every subset of the 4 torso points, the other 10 points present: the centre's weight
    # (a float32 sum of powers of two) must be exactly 0 only when all 4 are missing. With
    # SHOULDER_WEIGHT = 2^-22 a partial sum rounds, and a row without hips and shoulders is placed.
    x = without(missing)
    flags = model_lib.missing_mask(x).float()
    weight = torch.addmm(model_lib.LAYOUT["center_all"], flags, -model_lib.LAYOUT["center_missing"])
    z, _, placed = model_lib.normalize_with_mask(x)
    if len(missing) == 4:
        assert weight.item() == 0 and not placed.item() and (z == 0).all()
    else:
        assert weight.item() > 0 and placed.item() and torch.isfinite(z).all()


def test_the_centre_is_the_hip_midpoint_whenever_there_is_a_hip_and_the_shoulders_otherwise():
    def centre(x):
        # z = (x - centre) / size, and the first point's raw position is known: solve for the centre
        z, _, _ = model_lib.normalize_with_mask(x)
        size = (x[0, 2] - x[0, 4]) / (z[0, 2] - z[0, 4])             # from the neck and right shoulder
        return (x[0, :2] - z[0, :2] * size).numpy()
    hips = STANDING[[samples.R_HIP, samples.L_HIP]].mean(0)
    np.testing.assert_allclose(centre(FLAT), hips, atol=1e-6)
    np.testing.assert_allclose(centre(without([samples.R_HIP])), STANDING[samples.L_HIP], atol=1e-6)
    np.testing.assert_allclose(centre(without([samples.R_HIP, samples.L_HIP])),
                               STANDING[[samples.R_SHOULDER, samples.L_SHOULDER]].mean(0), atol=1e-6)


def test_without_shoulders_the_torso_is_zero_not_a_nan():
    # shoulders_all is 2 + 2^-20, so that "no shoulder" is 2^-20 / 2^-20, never 0/0
    z, _, placed = model_lib.normalize_with_mask(without([samples.R_SHOULDER, samples.L_SHOULDER, 1]))
    assert placed.item() and torch.isfinite(z).all()


# ----------------------------------------------------------------------------- x - x
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("coordinate", [0, 1])
def test_a_point_with_a_coordinate_that_is_not_finite_is_missing_at_both(bad, coordinate):
    x = FLAT.clone()
    x[0, 2 * 3 + coordinate] = bad
    mask = model_lib.missing_mask(x)[0]
    assert mask[6] and mask[7] and mask.sum() == 2


def test_finite_values_are_never_missing():
    x = torch.tensor([[0.0, -0.0, 1e6, -1e6, 1e-30, -1e-30] + [0.5] * 22])
    assert not model_lib.missing_mask(x).any()


# ----------------------------------------------------------------------------- angles
def test_joint_angle_cos_and_sin_are_the_true_angles():
    # |u| |v| is computed as sqrt((u.v)^2 + (u x v)^2): check against atan2 on many poses
    rng = np.random.default_rng(0)
    x = torch.tensor(STANDING.reshape(1, -1) + rng.normal(0, 0.05, (50, 28)), dtype=torch.float32)
    z, flags, _ = model_lib.normalize_with_mask(x)
    f = model_lib.masked_features(z, flags).numpy()
    cos, sin = f[:, 28:28 + model_lib.NUM_ANGLES], f[:, 28 + model_lib.NUM_ANGLES:28 + 2 * model_lib.NUM_ANGLES]
    p = x.numpy().reshape(50, 14, 2)
    for i, (a, joint, b) in enumerate(model_lib.JOINT_ANGLES):
        u, v = p[:, a] - p[:, joint], p[:, b] - p[:, joint]
        angle = np.arctan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(1))
        np.testing.assert_allclose(cos[:, i], np.cos(angle), atol=1e-5)
        np.testing.assert_allclose(sin[:, i], np.sin(angle), atol=1e-5)


# ----------------------------------------------------------------------------- the README recipe
def zscore(x):
    return ((x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-8), torch.zeros_like(x),
            torch.ones(len(x), 1, dtype=torch.bool))


def test_replacing_normalize_with_mask_changes_the_model_and_the_normalizer(monkeypatch):
    # README "Earlier choices": MediaPipe_Dataset.model.normalize_with_mask = ... must reach the model, the
    # KeypointNormalizer that fit() applies to training data, and the peers
    torch.manual_seed(0)
    model = train.PoseClassifier().eval()
    shifted = FLAT * torch.tensor([1.0, 2.0] * 14)                   # y stretched: our normalization differs
    with torch.no_grad():
        before = model(shifted)
        monkeypatch.setattr(model_lib, "normalize_with_mask", zscore)
        after = model(shifted)
    assert not torch.allclose(before, after)
    np.testing.assert_allclose(train.KeypointNormalizer()(shifted.numpy()), zscore(shifted)[0].numpy(), atol=1e-6)

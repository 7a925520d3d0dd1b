"""The networks: the keypoint normalization and features (written as small matrix products so
that the ONNX graph stays small), PoseClassifier (one frame), MotionClassifier (a window of
frames) and the augmentation. torch and numpy only; train.py re-exports the public classes,
so that `from train import PoseClassifier, KeypointNormalizer` keeps working (load_model is
store.py's: it reads the record). To try another normalization or feature set, replace it
here (MediaPipe_Dataset.model.normalize_with_mask = ...): PoseClassifier, MotionClassifier,
KeypointNormalizer and the ONNX export all call it through this module.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from MediaPipe_Dataset.samples import L_HIP, L_SHOULDER, MIRROR, NUM_COORDS, NUM_POINTS, R_HIP, R_SHOULDER, TORSO

TORSO_MULTIPLIER = 2.5                    # as in MediaPipe's pose classification embedder
NORMALIZATION = ("center on the hip midpoint (one hip, or the shoulders, when that is all there is); "
                 "divide by max(2.5 x torso size, largest distance of a present point from the center); "
                 "torso size = hip midpoint to shoulder midpoint; missing points (NaN) stay missing")


# ----------------------------------------------------------------------------- model
# One input contract everywhere: a missing point is NaN (x and y) in the [N, 28] input.
# Centre, size and angles come from the points that are present; a pose that cannot be
# placed (no shoulder and no hip) or sized (all present points at one place) is all NaN
# after normalization, and PoseClassifier answers [0.5, 0.5] for it.
#
# The arithmetic is written as products with small constant matrices (each sum of chosen
# points is one MatMul) and vectorized over all points and angles, so that the ONNX graph
# stays small: each ONNX Runtime node costs 0.2-0.35 us per call, more than this model's
# arithmetic (README "Speed"). tests/test_graph.py fails if one of the tricks below breaks.
JOINT_ANGLES = [(2, 3, 4), (5, 6, 7), (8, 9, 10), (11, 12, 13), (8, 2, 3), (11, 5, 6), (2, 8, 9), (5, 11, 12)]
NUM_ANGLES = len(JOINT_ANGLES)
# Trick 1, the centre: a weighted mean of the hips and shoulders that are there, a shoulder
# weighing 2^-21 as much as a hip: the hips' midpoint whenever there is a hip (off by less
# than 1e-6 of the pose size), the shoulders' midpoint when there is none. Powers of two,
# large enough that every partial sum of the weights is exact in float32, keep "no hip and
# no shoulder" an exact 0/0 (NaN), so that such a pose comes out unplaced. 2^-22 is too
# small: 2 + 2 * 2^-22 rounds in float32, and a nose-only row got placed. Change the
# weight only with that test passing.
SHOULDER_WEIGHT = 2.0 ** -21


def layout_matrices():
    """Constant matrices over the 28 coordinates (x0, y0, x1, ...) for normalize_with_mask and
    masked_features (quantize.py keeps every product with one of them in FP32)."""
    point = np.arange(NUM_COORDS) // 2
    xy = np.tile(np.eye(2), NUM_POINTS)                                     # (2, 28): (x, y) -> every point
    hips, shoulders = np.isin(point, (R_HIP, L_HIP)), np.isin(point, (R_SHOULDER, L_SHOULDER))
    weight = hips + SHOULDER_WEIGHT * shoulders
    in_angle = np.array([[p in angle for angle in JOINT_ANGLES] for p in point], dtype=float)
    m = {"spread_xy": xy,
         "center_sum": xy.T * weight[:, None],                              # (28, 2): weighted x, y sums
         "center_missing": weight[:, None] / 2,                             # (28, 1): weight of missing points
         "center_all": np.array([weight.sum() / 2]),                        # weight of all hips and shoulders
         "torso_sum": xy.T * shoulders[:, None] * TORSO_MULTIPLIER,         # (28, 2): 2.5 x shoulder sums
         "shoulders_missing": shoulders[:, None] / 2,                       # (28, 1): missing shoulders
         "shoulders_all": np.array([2 + 2.0 ** -20]),                       # 2, and no 0/0 without shoulders
         "point_sum": np.kron(np.eye(NUM_POINTS + 1), np.ones((2, 1))),     # (30, 15): x^2 + y^2 per point
         "angle_missing": np.tile(in_angle / 2, 2),                         # (28, 16): missing points per angle
         "point_missing": np.kron(np.eye(NUM_POINTS), np.ones((2, 1))) / 2}  # (28, 14): 1 for a missing point
    # Each angle's arms u = a - joint and v = b - joint, and v turned by -90 degrees (vy, -vx):
    # left = [u, u] and right = [v, v turned], so that x + y of left * right is [u.v, u x v].
    arm = lambda ends: np.eye(NUM_COORDS)[:, [2 * e + c for e in ends for c in (0, 1)]]
    ends_a, joints, ends_b = ([angle[i] for angle in JOINT_ANGLES] for i in range(3))
    u, v = arm(ends_a) - arm(joints), arm(ends_b) - arm(joints)
    turned = np.stack([v[:, 1::2], -v[:, 0::2]], -1).reshape(NUM_COORDS, -1)
    m.update(angle_left=np.hstack([u, u]), angle_right=np.hstack([v, turned]),    # (28, 32) each
             pair_sum=np.kron(np.eye(2 * NUM_ANGLES), np.ones((2, 1))),           # (32, 16)
             norm_sum=np.tile(np.eye(NUM_ANGLES), (2, 2)))                        # (16, 16): dot^2 + cross^2
    layout = {name: torch.tensor(matrix, dtype=torch.float32) for name, matrix in m.items()}
    layout["swap_xy"] = torch.arange(NUM_COORDS) ^ 1                     # an index list: Gather in ONNX
    return layout


LAYOUT = layout_matrices()


def missing_mask(x):
    """(N, 28) keypoints -> (N, 28) bool, True at both coordinates of a point that has a
    coordinate that is not finite.

    Trick 2: x - x is 0 for a finite value and NaN for NaN and +-inf, so one Sub and one
    IsNaN node test both (torch.isfinite would export as two nodes, IsInf and IsNaN, and
    an Or); adding the swapped copy (Gather) spreads a point's NaN to its other coordinate."""
    d = x - x
    return torch.isnan(d + d[:, LAYOUT["swap_xy"]])


def normalize_with_mask(x):
    """(N, 28) -> (normalized keypoints, 0 where missing; (N, 28) missing flags as 0/1 floats;
    placed (N, 1) bool: False for a pose with no shoulder and no hip, or all at one place).

    PoseClassifier's first stage, and normalize_keypoints's: replace it
    (MediaPipe_Dataset.model.normalize_with_mask = ...) to try another normalization in training, the model and its ONNX file at once."""
    missing = missing_mask(x)
    flags = missing.float()
    x0 = torch.where(missing, 0.0, x)
    # Centre (0/0 without hips and shoulders), then 2.5 x the torso: the shoulders' midpoint
    # seen from the centre, 0 when the centre is the shoulders or there is no shoulder.
    center = x0 @ LAYOUT["center_sum"] / torch.addmm(LAYOUT["center_all"], flags, -LAYOUT["center_missing"])
    centered = torch.where(missing, 0.0, x - center @ LAYOUT["spread_xy"])
    torso = centered @ LAYOUT["torso_sum"] / torch.addmm(LAYOUT["shoulders_all"], flags, -LAYOUT["shoulders_missing"])
    # Size: the largest distance from the centre of a present point or of 2.5 x the torso.
    ends = torch.cat([centered, torso], 1)
    size2 = ((ends * ends) @ LAYOUT["point_sum"]).amax(1, keepdim=True)
    placed = size2 > 1e-16               # False for NaN too
    # 0, not NaN, for a pose that cannot be placed: dynamic INT8 quantizes each batch with one
    # scale, and a NaN would spoil the other frames of its batch.
    return torch.where(placed, centered / size2.sqrt(), 0.0), flags, placed


def present_points(x):
    """(..., 28) keypoints -> (N, 14) bool: which points are there (both coordinates finite)."""
    return ~missing_mask(x.reshape(-1, NUM_COORDS))[:, 0::2]


def normalize_keypoints(x):
    """Translation- and scale-invariant normalization of (..., 28) keypoints (torch).

    Centers on the hip midpoint and divides by the pose size, the larger of 2.5 torso
    lengths and the largest distance of any point from the hip midpoint (MediaPipe's
    pose classification embedder does the same). With points missing (NaN), the centre
    is the hip that is there, or the shoulders' midpoint without hips; the torso length
    needs a shoulder and a hip, else the size is the spread alone. Missing points stay
    NaN, and a pose that cannot be placed or sized comes out all NaN. Applying it twice
    changes nothing.
    """
    z, flags, placed = normalize_with_mask(x.reshape(-1, NUM_COORDS))
    return torch.where((flags > 0.5) | ~placed, math.nan, z).reshape(x.shape)


# keypoints (missing: 0), cos and sin of each joint angle (0 when a point of it is missing),
# and the 14 presence flags, so that the model knows a 0 that is missing from one that is
# there. The angles are at the elbows, knees, shoulders (hip-shoulder-elbow) and hips
# (shoulder-hip-knee): form rules are mostly about them, and near 180 degrees a small bend
# hardly moves the coordinates. (28 missing flags instead of 14 presence flags save a node
# but cost 2-4 points of accuracy with points removed, measured over 10 seeds.)
NUM_FEATURES = NUM_COORDS + 2 * NUM_ANGLES + NUM_POINTS


def masked_features(z, flags):
    """Normalized keypoints (0 where missing) and (N, 28) missing flags -> (N, 58) features."""
    dot_cross = ((z @ LAYOUT["angle_left"]) * (z @ LAYOUT["angle_right"])) @ LAYOUT["pair_sum"]
    # |u| |v| = sqrt((u.v)^2 + (u x v)^2) in the plane; an arm of length 0 gives cos = sin = 0
    lengths = torch.addmm(torch.tensor([1e-24]), dot_cross * dot_cross, LAYOUT["norm_sum"]).sqrt()
    whole = torch.relu(torch.addmm(torch.tensor([1.0]), flags, -LAYOUT["angle_missing"]))  # 1: no point missing
    present = torch.addmm(torch.tensor([1.0]), flags, -LAYOUT["point_missing"])
    return torch.cat([z, dot_cross / lengths * whole, present], dim=1)


def pose_features(z):
    """Normalized keypoints (N, 28), NaN where missing -> (N, 58) finite features: the
    keypoints (0 where missing), cos and sin of each joint angle (0 where a point of the
    angle is missing) and the 14 presence flags."""
    z = z.reshape(-1, NUM_COORDS)
    missing = missing_mask(z)
    return masked_features(torch.where(missing, 0.0, z), missing.float())


class KeypointNormalizer:
    """Callable: 28 numbers (list or array) or an N x 28 array -> float32 array, same shape.

    The normalization PoseClassifier applies as its first stage (normalize_keypoints).
    A missing point is None or NaN and stays NaN; a pose that cannot be placed or sized
    (no shoulder and no hip, or all points at one place) comes out all NaN.
    """

    def __call__(self, keypoints):
        x = np.array(keypoints, dtype=np.float32)     # None -> NaN
        if x.shape[-1] != NUM_COORDS or x.ndim not in (1, 2):
            raise ValueError(f"expected 28 numbers or an N x 28 array, got shape {x.shape}")
        with torch.no_grad():
            return normalize_keypoints(torch.from_numpy(x)).numpy()


class InvertedResidual(nn.Module):
    """MobileNetV2's block on a vector: expand, ReLU6, project back (linear bottleneck), add."""

    def __init__(self, width, expansion, dropout):
        super().__init__()
        hidden = width * expansion
        self.block = nn.Sequential(
            nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU6(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width, bias=False), nn.BatchNorm1d(width),  # no activation: linear bottleneck
        )

    def forward(self, x):
        return x + self.block(x)


def model_input(x, shape, what):
    """x as a float32 tensor of shape [N, *shape] (a numpy array, a list or a tensor of any real
    dtype); ValueError naming the expected shape otherwise. Left alone while tracing for ONNX
    export, where the shape is fixed by the example input."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return x
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError):
            raise ValueError(f"{what} takes an array of numbers of shape [N, {', '.join(map(str, shape))}]; got a "
                             f"{type(x).__name__} that is not one")
    if x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{what} takes real numbers, got a {x.dtype} tensor")
    if tuple(x.shape[1:]) != tuple(shape) or x.dim() != len(shape) + 1:
        raise ValueError(f"{what} takes input of shape [N, {', '.join(map(str, shape))}] (raw keypoints, "
                         f"x and y of 14 points), got {list(x.shape)}")
    return x if x.dtype == torch.float32 else x.float()


class PoseClassifier(nn.Module):
    """Raw keypoints (N x 28, NaN where a point is missing) -> class logits (N x num_classes).

    normalize_keypoints first (so raw, z-scored or already normalized inputs give the
    same outputs), pose_features (adds joint-angle cosines and sines and the presence
    mask), then MobileNetV2's ideas on a vector: a stem, inverted residual blocks with
    linear bottlenecks, batch norm, ReLU6, dropout before the classifier. A row that
    cannot be placed or sized (no shoulder and no hip, e.g. all NaN) gets logits 0:
    probabilities [0.5, 0.5], "cannot tell". `config` holds the constructor's arguments;
    the training record keeps them, so that load_model rebuilds the same shape.
    """

    def __init__(self, input_size=NUM_COORDS, num_classes=2, width=128, expansion=2, blocks=1,
                 head=128, dropout=0.2):
        super().__init__()
        if input_size != NUM_COORDS:
            raise ValueError(f"input_size must be {NUM_COORDS} (14 points x 2), got {input_size}")
        self.config = dict(input_size=input_size, num_classes=num_classes, width=width, expansion=expansion,
                           blocks=blocks, head=head, dropout=dropout)
        self.stem = nn.Sequential(nn.Linear(NUM_FEATURES, width, bias=False), nn.BatchNorm1d(width), nn.ReLU6())
        self.blocks = nn.Sequential(*[InvertedResidual(width, expansion, dropout) for _ in range(blocks)])
        self.head = nn.Sequential(nn.Linear(width, head, bias=False), nn.BatchNorm1d(head), nn.ReLU6(),
                                  nn.Dropout(dropout), nn.Linear(head, num_classes))

    def forward(self, x):
        x = model_input(x, (NUM_COORDS,), "PoseClassifier")
        z, flags, placed = normalize_with_mask(x)
        logits = self.head(self.blocks(self.stem(masked_features(z, flags))))
        return torch.where(placed, logits, 0.0)


class DepthwiseTemporal(nn.Module):
    """A depthwise convolution along time on (N, T, channels) windows, zero-padded to keep T:
    each channel its own `kernel` weights over neighbouring frames. Written as a sum of
    shifted copies (Pad, Slice, Mul, Add in ONNX): ONNX Runtime ran nn.Conv1d's grouped
    convolution as its slowest node, half a window's time (README "Movements")."""

    def __init__(self, channels, kernel):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(kernel, channels).uniform_(-1, 1) / math.sqrt(kernel))

    def forward(self, x):
        t = x.shape[1]
        padded = F.pad(x, (0, 0, self.kernel // 2, self.kernel // 2))
        return sum(padded[:, j:j + t] * self.weight[j] for j in range(self.kernel))


class TemporalInvertedResidual(nn.Module):
    """MobileNetV2's block along time, on the frames of N windows of T: pointwise expand,
    depthwise temporal convolution (each channel over `kernel` neighbouring frames), ReLU6,
    linear pointwise bottleneck, residual add; batch norm after each. The pointwise layers are
    Linear on (N x T, channels) rather than 1x1 convolutions: the same arithmetic, exported as
    MatMul, which ONNX Runtime's dynamic INT8 runs fast (MatMulInteger), while its ConvInteger
    made a window 2.5x slower in batches than FP32 (README "Movements")."""

    def __init__(self, frames, width, expansion, kernel, dropout):
        super().__init__()
        hidden, self.frames = width * expansion, frames
        self.expand = nn.Sequential(nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU6())
        self.depthwise = DepthwiseTemporal(hidden, kernel)
        self.after = nn.Sequential(nn.BatchNorm1d(hidden), nn.ReLU6())
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, width, bias=False),
                                     nn.BatchNorm1d(width))                     # linear bottleneck

    def forward(self, x):
        """(N x T, width) frames, window by window -> the same shape. Reshapes use -1 and
        the fixed T, so that the ONNX graph needs no Shape arithmetic."""
        hidden = self.depthwise.weight.shape[1]
        h = self.depthwise(self.expand(x).reshape(-1, self.frames, hidden)).reshape(-1, hidden)
        return x + self.project(self.after(h))


class MotionClassifier(nn.Module):
    """A window of one recording (N x T x 28 raw keypoints, NaN where a point is missing, T
    frames at `fps` frames per second) -> class logits (N x num_classes).

    Each frame goes through PoseClassifier's first stages (normalize_with_mask,
    masked_features; a frame that cannot be placed, such as an all-NaN frame of a gap, becomes
    zeros), then MobileNetV2 along time: a pointwise stem, inverted residual blocks with
    depthwise temporal convolutions (TemporalInvertedResidual), then the mean and the maximum over time (a fault is often
    an extreme: the smallest elbow angle of a curl) and a classifier. A window with no frame
    that can be placed gets logits 0: [0.5, 0.5]. `frames` and `fps` are the window the model
    was trained on; they travel in `config` with the rest.
    """

    def __init__(self, frames=16, fps=10.0, input_size=NUM_COORDS, num_classes=2, width=64, expansion=2,
                 blocks=2, kernel=5, dropout=0.2):
        super().__init__()
        if input_size != NUM_COORDS:
            raise ValueError(f"input_size must be {NUM_COORDS} (14 points x 2), got {input_size}")
        self.config = dict(frames=frames, fps=fps, input_size=input_size, num_classes=num_classes, width=width,
                           expansion=expansion, blocks=blocks, kernel=kernel, dropout=dropout)
        self.stem = nn.Sequential(nn.Linear(NUM_FEATURES, width, bias=False), nn.BatchNorm1d(width), nn.ReLU6())
        self.blocks = nn.Sequential(*[TemporalInvertedResidual(frames, width, expansion, kernel, dropout)
                                      for _ in range(blocks)])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        frames = self.config["frames"]
        x = model_input(x, (frames, NUM_COORDS), f"MotionClassifier (windows of {frames} frames)")
        z, flags, placed = normalize_with_mask(x.reshape(-1, NUM_COORDS))
        f = torch.where(placed, masked_features(z, flags), 0.0)
        h = self.blocks(self.stem(f)).reshape(-1, frames, self.config["width"])
        logits = self.head(torch.cat([h.mean(1), h.amax(1)], 1))
        return torch.where(placed.reshape(-1, frames).any(1, keepdim=True), logits, 0.0)


class WithSoftmax(nn.Module):
    """What the ONNX file holds: probabilities rather than logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return F.softmax(self.model(x), dim=-1)


# ----------------------------------------------------------------------------- augmentation
# What training feeds both models. Strengths chosen by cross-validation (README). Kept
# small: a pose's lean and joint angles are what makes it correct, and large changes
# would alter them.
AUG_ROTATION_DEG = 3.0     # +- in-plane rotation, like a slightly tilted camera
AUG_STRETCH = 0.05         # +- independent x and y scale
AUG_JITTER = 0.005         # sd of per-point noise, in normalized units (pose size = 1)
# Joint dropout: how real recordings lose points. Each pattern is one way, chosen at random
# for a training sample with probability --drop-joints: random single points, one arm or
# leg (elbow and wrist, knee and ankle), one side's arm and leg (a side view), both legs
# (a cropped frame), both arms (a tool that records only what its exercise needs).
DROP_PATTERNS = [[3, 4], [6, 7], [9, 10], [12, 13], [3, 4, 9, 10], [6, 7, 12, 13], [9, 10, 12, 13], [3, 4, 6, 7]]
DROP_POINT_RATE = 2 / NUM_POINTS   # the random-points pattern loses 2 points on average


def augment(x, generator, drop_joints=0.0):
    """Random left-right mirror (joints swapped), small rotation, x/y stretch, jitter and
    joint dropout (drop_points, with probability drop_joints per sample).

    x: (n, 28) frames, or (n, T, 28) windows: a window gets one mirror, rotation, stretch
    and dropped joints for all its frames (a joint hidden by a side view stays hidden).
    Works on normalized keypoints (hip midpoint at the origin); training batches only.
    """
    n = x.shape[0]
    p = x.reshape(n, -1, NUM_POINTS, 2).clone()
    flip = torch.rand(n, generator=generator) < 0.5
    p[flip] = p[flip][:, :, MIRROR] * torch.tensor([-1.0, 1.0])
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(AUG_ROTATION_DEG)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    p = p @ rot.transpose(1, 2)[:, None]
    p = p * (1 + (torch.rand(n, 1, 1, 2, generator=generator) * 2 - 1) * AUG_STRETCH)
    p = p + torch.randn(p.shape, generator=generator) * AUG_JITTER
    if drop_joints > 0:
        p = drop_points(p, drop_joints, generator)
    return p.reshape(x.shape)


def drop_points(p, rate, generator):
    """Set points of (n, 14, 2) keypoints, or of (n, T, 14, 2) windows (the same points in
    every frame), to NaN the ways real recordings lose them: a sample is hit with probability
    rate, by one of DROP_PATTERNS or by random points. A sample that would keep no shoulder and
    no hip (in some frame) is left whole."""
    n = p.shape[0]
    patterns = torch.zeros(len(DROP_PATTERNS) + 1, NUM_POINTS, dtype=torch.bool)
    for i, points in enumerate(DROP_PATTERNS):
        patterns[i, points] = True
    choice = torch.randint(len(patterns), (n,), generator=generator)
    drop = patterns[choice] | ((choice == len(DROP_PATTERNS))[:, None]
                               & (torch.rand(n, NUM_POINTS, generator=generator) < DROP_POINT_RATE))
    drop &= (torch.rand(n, generator=generator) < rate)[:, None]
    left = present_points(p).reshape(n, -1, NUM_POINTS) & ~drop[:, None]
    drop &= left[..., TORSO].any(-1).all(-1, keepdim=True)
    drop = drop.reshape(n, *[1] * (p.dim() - 3), NUM_POINTS)
    return torch.where(drop[..., None], torch.full_like(p, math.nan), p)

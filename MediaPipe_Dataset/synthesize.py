"""Synthesize the bundled MediaPipe_Dataset: fighting stance and straight punch.

The data is synthetic. Each sample is a 2D skeleton built by forward kinematics
from joint angles, with segment lengths from an anthropometric table, seen by a
simple camera (size, position, roll, yaw, mirroring) and blurred with
MediaPipe-like detector noise. Labels come from explicit form rules (RULES and
check_pose below, the one place they are written), applied to the noise-free
pose, plus a little label noise.

    python MediaPipe_Dataset/synthesize.py --out DIR --seed 0

writes files byte-identical to the committed ones (the committed dataset is the
output of this command with --out MediaPipe_Dataset). Needs numpy only.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

if __package__ in (None, ""):      # run as a script: make MediaPipe_Dataset importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MediaPipe_Dataset.samples import KEYPOINT_NAMES, MIRROR, class_dir  # noqa: E402  (the sample contract)

# The 14-point layout of the sample contract (OpenPose COCO-18 order, first 14 points).
POINTS = KEYPOINT_NAMES
NOSE, NECK, RSH, REL, RWR, LSH, LEL, LWR, RHIP, RKNEE, RANK, LHIP, LKNEE, LANK = range(14)

# Segment lengths as fractions of body height, after Drillis & Contini (1966) as
# tabulated in Winter, "Biomechanics and Motor Control of Human Movement", fig. 4.1.
SEGMENTS = {
    "shoulder_width": 0.259,   # biacromial breadth
    "hip_width": 0.191,        # distance between the hip joints
    "upper_arm": 0.186,
    "forearm": 0.146,
    "thigh": 0.245,
    "shank": 0.246,
    "torso": 0.288,            # hip-joint height 0.530 to shoulder height 0.818
    "head": 0.100,             # shoulder line to nose (nose at about 0.92 H)
}

# The form rules, in one place. Angles in degrees; lengths in the units named.
RULES = {
    "stance": {
        "feet_ratio": (1.3, 2.0),       # ankle distance / shoulder width
        "knee_angle": (140.0, 170.0),   # both knees bent, neither locked nor collapsed
        "hips_between": (0.2, 0.8),     # hip midpoint projected on the ankle-to-ankle segment
        "max_lean": 15.0,               # torso from vertical
        "guard_height": 0.8,            # each wrist, up the torso axis, in torso lengths from the hips
    },
    "execution": {
        "min_feet_ratio": 1.1,          # base kept: feet not together
        "punch_elbow": 160.0,           # punching arm extended
        "fist_height": (-0.25, 0.25),   # punching wrist above its shoulder (image vertical), torso lengths
        "guard_height": 0.8,            # the other wrist
        "max_lean": 20.0,
    },
}
FAULTS = {
    "stance": ["feet_narrow", "feet_wide", "knee_locked", "knee_overbent",
               "hips_off_center", "lean", "guard_dropped"],
    "execution": ["arm_bent", "fist_low", "fist_high", "guard_dropped", "lean",
                  "feet_together"],
}
COUNTS = {"stance": (196, 159), "execution": (118, 125)}  # (correct, incorrect)
# Fraction of frames whose annotation is flipped; the punch rules are less sensitive to
# detector noise, so execution gets more, bringing both ceilings to about 95%.
LABEL_NOISE = {"stance": 0.06, "execution": 0.08}
FRAMES_PER_CLIP = (2, 4)
FRAME_STEP_S = 0.2


# ---------------------------------------------------------------- rule checker

def _angle(a, b, c):
    """Interior angle at b, in degrees."""
    u, v = a - b, c - b
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def _body_frame(p):
    """Hip midpoint, unit 'up the torso' axis (image y points down) and torso length."""
    hip = (p[RHIP] + p[LHIP]) / 2
    up = p[NECK] - hip
    length = float(np.linalg.norm(up)) + 1e-12
    return hip, up / length, length


def measure(keypoints):
    """Everything the rules look at, measured on 28 image coordinates."""
    p = np.asarray(keypoints, dtype=np.float64).reshape(14, 2)
    hip, up, torso = _body_frame(p)
    shoulder_width = float(np.linalg.norm(p[RSH] - p[LSH])) + 1e-12
    feet = p[LANK] - p[RANK]
    t = float(np.dot(hip - p[RANK], feet) / (np.dot(feet, feet) + 1e-12))
    arms = {}
    for side, (sh, el, wr) in {"right": (RSH, REL, RWR), "left": (LSH, LEL, LWR)}.items():
        arms[side] = {
            "elbow": _angle(p[sh], p[el], p[wr]),
            "height": float(np.dot(p[wr] - hip, up)) / torso,
            # shoulder height is about gravity, so the fist is measured up the image, not the torso
            "fist": float(p[sh][1] - p[wr][1]) / torso,
            "reach": float(np.linalg.norm(p[wr] - p[sh])) / torso,
        }
    return {
        "feet_ratio": float(np.linalg.norm(feet)) / shoulder_width,
        "knees": (_angle(p[RHIP], p[RKNEE], p[RANK]), _angle(p[LHIP], p[LKNEE], p[LANK])),
        "hips_between": t,
        # image y points down, so "up" is (0, -1)
        "lean": math.degrees(math.acos(float(np.clip(-up[1], -1.0, 1.0)))),
        "arms": arms,
    }


def check_pose(keypoints, category):
    """Faults of a pose under RULES[category]; an empty list means correct form."""
    r, m = RULES[category], measure(keypoints)
    faults = []
    if category == "stance":
        lo, hi = r["feet_ratio"]
        if m["feet_ratio"] < lo:
            faults.append("feet_narrow")
        if m["feet_ratio"] > hi:
            faults.append("feet_wide")
        if max(m["knees"]) > r["knee_angle"][1]:
            faults.append("knee_locked")
        if min(m["knees"]) < r["knee_angle"][0]:
            faults.append("knee_overbent")
        if not r["hips_between"][0] <= m["hips_between"] <= r["hips_between"][1]:
            faults.append("hips_off_center")
        if m["lean"] > r["max_lean"]:
            faults.append("lean")
        if min(a["height"] for a in m["arms"].values()) < r["guard_height"]:
            faults.append("guard_dropped")
    else:
        # The punching arm is the one reaching further from its shoulder.
        punch = max(m["arms"], key=lambda s: m["arms"][s]["reach"])
        guard = "left" if punch == "right" else "right"
        a = m["arms"][punch]
        if a["elbow"] < r["punch_elbow"]:
            faults.append("arm_bent")
        if a["fist"] < r["fist_height"][0]:
            faults.append("fist_low")
        if a["fist"] > r["fist_height"][1]:
            faults.append("fist_high")
        if m["arms"][guard]["height"] < r["guard_height"]:
            faults.append("guard_dropped")
        if m["lean"] > r["max_lean"]:
            faults.append("lean")
        if m["feet_ratio"] < r["min_feet_ratio"]:
            faults.append("feet_together")
    return faults


# ---------------------------------------------------------------- body model

def _dir(angle_from_down, outward):
    """Unit vector (x, y up) at an angle from straight down, positive towards `outward` (+1/-1)."""
    a = math.radians(angle_from_down)
    return np.array([outward * math.sin(a), -math.cos(a)])


def build_pose(q, body):
    """Forward kinematics: joint angles `q` and segment lengths `body` (in body heights)
    to 14 points in a body frame (x to the image right, y up, hip midpoint at 0).

    The lead side (the side the person punches and leans towards) is the image
    right here; the person's right side is on the image left (facing the camera).
    """
    p = np.zeros((14, 2))
    up = _dir(180.0 - q["lean"], +1)                  # torso axis, leaning to the lead side
    across = np.array([up[1], -up[0]])                # to the image right, perpendicular to the torso
    p[RHIP], p[LHIP] = -across * body["hip_width"] / 2, across * body["hip_width"] / 2
    p[NECK] = up * body["torso"]
    p[RSH], p[LSH] = p[NECK] - across * body["shoulder_width"] / 2, p[NECK] + across * body["shoulder_width"] / 2
    p[NOSE] = p[NECK] + _dir(180.0 - q["lean"] - q["head_tilt"], +1) * body["head"]
    for side, hip, knee, ankle, out in (("right", RHIP, RKNEE, RANK, -1), ("left", LHIP, LKNEE, LANK, +1)):
        thigh = q[side + "_thigh"]                     # from straight down, outward positive
        p[knee] = p[hip] + _dir(thigh, out) * body["thigh"]
        # a bent knee in this view brings the shank back under the body
        p[ankle] = p[knee] + _dir(thigh - (180.0 - q[side + "_knee"]), out) * body["shank"]
    for side, sh, el, wr, out in (("right", RSH, REL, RWR, -1), ("left", LSH, LEL, LWR, +1)):
        arm = q[side + "_arm"]                         # upper arm from straight down, outward positive
        # An upper arm reaching towards the camera looks shorter (foreshortening).
        p[el] = p[sh] + _dir(arm, out) * body["upper_arm"] * q[side + "_arm_depth"]
        # the forearm folds back in and up by (180 - elbow angle)
        p[wr] = p[el] + _dir(arm + (180.0 - q[side + "_elbow"]), out) * body["forearm"]
    return p


def sample_body(rng):
    """One person: segment lengths with per-person proportions (about 4% sd)."""
    return {k: v * float(rng.normal(1.0, 0.04)) for k, v in SEGMENTS.items()}


def _u(rng, a, b):
    """Uniform between a and b, in either order."""
    return float(rng.uniform(min(a, b), max(a, b)))


BORDERLINE = 0.10   # share of draws that may fall right next to a rule threshold


def _bad(rng, threshold, far, margin):
    """A value past a rule threshold (towards `far`): usually by `margin` or more, sometimes just past it."""
    step = margin if threshold < far else -margin
    if rng.random() < BORDERLINE:
        return _u(rng, threshold, far)
    return _u(rng, threshold + step, far)


def _ok(rng, lo, hi, margin):
    """A value for a correct pose: usually `margin` inside [lo, hi], sometimes anywhere in it."""
    if rng.random() < BORDERLINE:
        return _u(rng, lo, hi)
    return _u(rng, lo + margin, hi - margin)


def _stance_width(q, body, ratio):
    """Set both thigh angles (keeping their difference) so the feet are `ratio` shoulder widths apart."""
    offset = q["left_thigh"] - q["right_thigh"]
    lo, hi = -30.0, 70.0
    for _ in range(40):                                # bisection: width grows with the thigh angle
        mid = (lo + hi) / 2
        q["right_thigh"], q["left_thigh"] = mid - offset / 2, mid + offset / 2
        p = build_pose(q, body)
        if np.linalg.norm(p[LANK] - p[RANK]) / body["shoulder_width"] < ratio:
            lo = mid
        else:
            hi = mid
    return q


def sample_angles(rng, category, faults, body):
    """Joint angles for a pose of `category`, with the given fault types pushed out of range.

    Values are mostly drawn with a margin from the rule thresholds (_ok, _bad); a share
    BORDERLINE of the draws may land right next to one. The label is decided by
    check_pose on the finished pose, not here.
    """
    stance = category == "stance"
    q = {"lean": _ok(rng, -4, 14, 2.6), "head_tilt": _u(rng, -8, 8)}
    if "lean" in faults:
        q["lean"] = _bad(rng, 15, 32, 6) if stance else _bad(rng, 20, 38, 6)
    knee = (141, 169) if stance else (148, 178)
    for side in ("right", "left"):
        q[side + "_knee"] = _ok(rng, *knee, 6.5)
        q[side + "_thigh"] = _u(rng, -2, 2)              # difference between the legs only
    if "knee_locked" in faults:
        q[rng.choice(["right", "left"]) + "_knee"] = _bad(rng, 170, 180, 8)
    if "knee_overbent" in faults:
        q[rng.choice(["right", "left"]) + "_knee"] = _bad(rng, 140, 110, 12)
    # guard: elbows down, hands up by the chin; the upper arm points partly at the camera
    for side in ("right", "left"):
        q[side + "_arm"], q[side + "_elbow"], q[side + "_arm_depth"] = _u(rng, 5, 30), _u(rng, 15, 45), _u(rng, 0.45, 0.8)
    dropped = rng.choice(["right", "left"]) if stance else "right"
    if "guard_dropped" in faults:
        q[dropped + "_arm"], q[dropped + "_elbow"], q[dropped + "_arm_depth"] = _u(rng, 0, 25), _u(rng, 60, 170), _u(rng, 0.8, 1.0)
    if not stance:
        # the lead arm ("left" joints before mirroring, on the image right) punches
        q["left_arm"], q["left_elbow"], q["left_arm_depth"] = _ok(rng, 78, 102, 5.2), _ok(rng, 160, 180, 7.8), _u(rng, 0.9, 1.0)
        if "arm_bent" in faults:
            q["left_elbow"] = _bad(rng, 160, 95, 12)
        if "fist_low" in faults:
            q["left_arm"] = _bad(rng, 78, 40, 10)
        if "fist_high" in faults:
            q["left_arm"] = _bad(rng, 102, 140, 10)
    ratio = _ok(rng, 1.3, 2.0, 0.13) if stance else _ok(rng, 1.1, 2.3, 0.13)
    if "feet_narrow" in faults:
        ratio = _bad(rng, 1.3, 0.6, 0.2)
    if "feet_wide" in faults:
        ratio = _bad(rng, 2.0, 2.8, 0.2)
    if "feet_together" in faults:
        ratio = _bad(rng, 1.1, 0.4, 0.2)
    q = _stance_width(q, body, ratio)
    if "hips_off_center" in faults:                       # weight thrown over one foot
        shift = _u(rng, 15, 35) * rng.choice([-1, 1])
        q["right_thigh"] -= shift
        q["left_thigh"] += shift
    return q


def camera(points, cam):
    """Body frame (units of body height, y up) to MediaPipe's normalized image coordinates.

    Yaw foreshortens everything across the body; roll turns the image plane;
    mirroring gives a right-lead pose with the joints keeping their anatomical names.
    """
    p = points.copy()
    p[:, 0] *= math.cos(math.radians(cam["yaw"]))
    if cam["mirror"]:
        p[:, 0] *= -1
        p = p[MIRROR]
    r = math.radians(cam["roll"])
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    p = p @ rot.T * cam["height"]
    p[:, 1] *= -1                                         # image y points down
    return p + np.array([cam["x"], cam["y"]])


def sample_camera(rng, body_points):
    cam = {"yaw": _u(rng, 0, 30), "roll": _u(rng, -4, 4), "mirror": bool(rng.random() < 0.5),
           "height": _u(rng, 0.35, 0.85), "x": 0.0, "y": 0.0}
    p = camera(body_points, cam)
    lo, hi = p.min(axis=0), p.max(axis=0)
    margin = 0.02
    # place the person anywhere it fits in the frame (shrink it if it does not)
    span = float(np.max(hi - lo))
    if span > 1 - 2 * margin:
        cam["height"] *= (1 - 2 * margin) / span
        p = camera(body_points, cam)
        lo, hi = p.min(axis=0), p.max(axis=0)
    cam["x"] = _u(rng, margin - lo[0], 1 - margin - hi[0])
    cam["y"] = _u(rng, margin - lo[1], 1 - margin - hi[1])
    return cam


# Detector noise, as a fraction of the person's height in the image:
# a little on every point, twice that on wrists and ankles, rare outlier joints.
JITTER = 0.003
EXTREMITIES = [RWR, LWR, RANK, LANK]
OUTLIER_RATE = 0.01      # per joint
OUTLIER_SIZE = 0.08


def detector_noise(rng, p, height):
    scale = np.full((14, 1), JITTER * height)
    scale[EXTREMITIES] *= 2
    noisy = p + rng.normal(0.0, 1.0, p.shape) * scale
    for j in np.flatnonzero(rng.random(14) < OUTLIER_RATE):
        noisy[j] += rng.normal(0.0, OUTLIER_SIZE * height, 2)
    return np.clip(noisy, 0.0, 1.0)


# ---------------------------------------------------------------- dataset

def _fault_set(rng, category):
    n = 1 if rng.random() < 0.75 else 2
    return list(rng.choice(FAULTS[category], size=n, replace=False))


def make_clip(rng, category, correct, n_frames):
    """A short recording: one person holding one pose, moving a little between frames.

    Returns (clean, noisy) lists of 28-number arrays, and the faults it was made with (none
    for a correct clip).
    """
    faults = [] if correct else _fault_set(rng, category)
    body = sample_body(rng)
    q = sample_angles(rng, category, faults, body)
    cam = sample_camera(rng, build_pose(q, body))
    clean, noisy = [], []
    for _ in range(n_frames):
        qf = {k: v + float(rng.normal(0, 1.0)) if not k.endswith("depth") else v for k, v in q.items()}
        camf = dict(cam, x=cam["x"] + float(rng.normal(0, 0.003)), y=cam["y"] + float(rng.normal(0, 0.003)))
        p = camera(build_pose(qf, body), camf)
        clean.append(p.reshape(-1))
        noisy.append(detector_noise(rng, p, camf["height"]).reshape(-1))
    return clean, noisy, faults


def class_counts(category, samples=None):
    """(correct, incorrect): the bundled counts, or `samples` split in the bundled proportions."""
    correct, incorrect = COUNTS[category]
    if samples is None:
        return correct, incorrect
    n_correct = round(samples * correct / (correct + incorrect))
    return n_correct, samples - n_correct


def synthesize(category, seed, samples=None, frames_per_clip=FRAMES_PER_CLIP):
    """All samples of one category: a list of dicts in the sample format, with exact counts
    (the bundled ones, or `samples` in the bundled proportions); frames_per_clip, the (fewest,
    most) frames each clip is made with (longer clips: benchmark_scale.py)."""
    rng = np.random.default_rng([seed, ["stance", "execution"].index(category)])
    need = dict(zip((1, 0), class_counts(category, samples)))
    samples, clip_no = [], 0
    while need[0] or need[1]:
        target = 1 if need[1] >= need[0] else 0       # keep both classes filling evenly
        clean, noisy, faults = make_clip(rng, category, target == 1,
                                         int(rng.integers(*frames_per_clip, endpoint=True)))
        clip_no += 1
        start = round(clip_no * 10.0 + float(rng.uniform(0, 5)), 1)
        kept = 0
        for k, (c, n) in enumerate(zip(clean, noisy)):
            label = int(not check_pose(c, category))
            if rng.random() < LABEL_NOISE[category]:
                label = 1 - label                      # annotation error
            if label != target or not need[label]:
                continue                               # a clip stays one class, like a labelled video
            need[label] -= 1
            kept += 1
            samples.append({
                "keypoints": [round(float(v), 6) for v in n],
                "label": label,
                "category": category,
                "timestamp": round(start + k * FRAME_STEP_S, 3),
                "clip": f"{category}-{clip_no:03d}",
                **({"fault": faults[0] if len(faults) == 1 else faults} if label == 0 and faults else {}),
                "_file": f"{category}_{clip_no:03d}_{k:0{max(2, len(str(frames_per_clip[1] - 1)))}d}.json",
            })
    return samples


def rule_checker_accuracy(samples):
    """Accuracy of check_pose on the final noisy keypoints: the practical ceiling."""
    hits = [int(not check_pose(s["keypoints"], s["category"])) == s["label"] for s in samples]
    return sum(hits) / len(hits)


def write(samples, out_dir):
    for s in samples:
        folder = class_dir(out_dir, s["category"], s["label"])
        os.makedirs(folder, exist_ok=True)
        record = {k: v for k, v in s.items() if not k.startswith("_")}
        with open(os.path.join(folder, s["_file"]), "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(record) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--samples", type=int, metavar="N",
                        help="samples per category, correct and incorrect in the bundled proportions, e.g. "
                             "100000 for a large dataset (default: the bundled counts, "
                             f"{' and '.join(str(sum(c)) for c in COUNTS.values())})")
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 4:
        parser.error("--samples must be at least 4 (two of each class)")
    for category in ("stance", "execution"):
        folder = os.path.join(args.out, category)
        if os.path.isdir(folder) and any(f.endswith(".json") for _, _, fs in os.walk(folder) for f in fs):
            sys.exit(f"{folder}: already holds samples; choose an empty --out folder")
    for category in ("stance", "execution"):
        samples = synthesize(category, args.seed, args.samples)
        write(samples, args.out)
        print(f"{category}: rule-checker accuracy {100 * rule_checker_accuracy(samples):.1f}% (ceiling)")


if __name__ == "__main__":
    main()

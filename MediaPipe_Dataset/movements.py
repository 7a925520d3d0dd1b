"""A synthetic movement whose label only its trajectory shows, for tests and demos of the
motion model (numpy only).

    python MediaPipe_Dataset/movements.py --out /tmp/movements

Each recording is a person seen from the front doing bicep curls with both arms, as
samples with `clip` and `timestamp`. A correct recording curls at a controlled tempo (one
repetition in 1.6 to 2.4 s); an incorrect one rushes it (0.6 to 0.9 s). Both sweep the
same elbow angles, so every single frame of one class could be a frame of the other: a
frame model cannot do better than chance on average, and a model that sees a window can.
"""
import argparse
import json
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MediaPipe_Dataset.samples import NUM_POINTS, class_dir  # noqa: E402

CORRECT_PERIOD_S = (1.6, 2.4)
RUSHED_PERIOD_S = (0.6, 0.9)


def person(rng):
    """A standing person's 14 points (x, y in image units, y down), arms hanging."""
    p = np.zeros((NUM_POINTS, 2))
    p[0], p[1] = (0.5, 0.15), (0.5, 0.25)
    p[2], p[5] = (0.42, 0.26), (0.58, 0.26)          # shoulders
    p[8], p[11] = (0.45, 0.55), (0.55, 0.55)         # hips
    p[9], p[12] = (0.45, 0.72), (0.55, 0.72)         # knees
    p[10], p[13] = (0.45, 0.9), (0.55, 0.9)          # ankles
    return p * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05, 2)


def curl(p, angle, forearm=0.13, upper=0.14):
    """p with both arms: upper arm straight down from the shoulder, forearm raised by `angle`
    radians from hanging (0) towards the shoulder."""
    p = p.copy()
    for shoulder, elbow, wrist, side in ((2, 3, 4, -1), (5, 6, 7, 1)):
        p[elbow] = p[shoulder] + (0, upper)
        p[wrist] = p[elbow] + forearm * np.array([side * 0.2 * np.sin(angle), np.cos(angle)])
    return p


def recording(rng, correct, seconds, fps):
    """(frames, 28) keypoints and their timestamps of one recording."""
    period = rng.uniform(*(CORRECT_PERIOD_S if correct else RUSHED_PERIOD_S))
    base, phase = person(rng), rng.uniform(0, 2 * np.pi)
    times = np.arange(int(seconds * fps)) / fps
    angles = 1.25 * (1 - np.cos(2 * np.pi * times / period + phase))      # 0 to 2.5 rad and back
    frames = np.array([curl(base, a) + rng.normal(0, 0.003, base.shape) for a in angles])
    return frames.reshape(len(times), -1), times


def write_movements(out, category="curl", recordings=8, seconds=4.0, fps=30.0, seed=0):
    """Write `recordings` recordings per class under out/<category>/...; returns out."""
    rng = np.random.default_rng(seed)
    for label, name in ((1, "correct"), (0, "incorrect")):
        folder = class_dir(out, category, label)
        os.makedirs(folder, exist_ok=True)
        for r in range(recordings):
            frames, times = recording(rng, label == 1, seconds, fps)
            clip = f"{category}-{name}-{r}"
            for k, (keypoints, t) in enumerate(zip(frames, times)):
                with open(os.path.join(folder, f"{clip}_{k:04d}.json"), "w") as f:
                    json.dump({"keypoints": [round(float(v), 5) for v in keypoints], "label": label,
                               "category": category, "clip": clip, "timestamp": round(float(t), 4)}, f)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Write a synthetic curl dataset whose label only the tempo shows.")
    p.add_argument("--out", required=True, help="dataset folder to write <category>/... into")
    p.add_argument("--category", default="curl", help="category name (default: curl)")
    p.add_argument("--recordings", type=int, default=8, help="recordings per class (default: 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each recording (default: 4.0)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = p.parse_args(argv)
    write_movements(args.out, args.category, args.recordings, args.seconds, args.fps, args.seed)
    print(f"Wrote {2 * args.recordings} recordings of {args.category} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

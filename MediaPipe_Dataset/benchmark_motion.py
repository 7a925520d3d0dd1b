"""Choose the motion model's window by cross-validation: per-recording accuracy of
MotionClassifier for each window length, frame rate, width and number of training windows
given, on the folds `python train.py --cv K` uses, over several seeds.

    python MediaPipe_Dataset/benchmark_motion.py --data-dir ../shared/pose_trainer \
        --configs 16/10/64/16 32/10/64/16 --seeds 0 1 2

A configuration is FRAMES/FPS/WIDTH/WINDOWS: the window (T instants at FPS per second), the
model's width, and the training windows per recording per epoch per window length. Each
line printed is one (configuration, category, seed): per-recording accuracy and seconds;
the last table is the mean over seeds. --json keeps every line.
"""
import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from MediaPipe_Dataset import evaluation, motion  # noqa: E402
from MediaPipe_Dataset.samples import Dataset, discover_categories  # noqa: E402


def config(text):
    try:
        frames, fps, width, windows = text.split("/")
        return int(frames), float(fps), int(width), int(windows)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMES/FPS/WIDTH/WINDOWS such as 16/10/64/16, got {text!r}")


def use(frames, fps, width, windows):
    """Set the motion model's window, width and training windows (the module's constants)."""
    motion.MOTION_FRAMES, motion.MOTION_FPS, motion.MOTION_WIDTH, motion.TRAIN_WINDOWS = frames, fps, width, windows


def score(ds, settings, folds):
    """(per-recording accuracy of MotionClassifier over the folds, seconds)."""
    scores = motion.MotionScores()
    for train, test in folds:
        scores.add_fold(motion.MotionNet(settings), motion.recordings(ds, train), motion.recordings(ds, test))
    n, right = scores.clip_figures()
    return right / n, scores.seconds


def main(argv=None):
    import train        # train.py's settings (epochs, lr, augmentation) are the motion model's
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="MediaPipe_Dataset", help="dataset folder (default: MediaPipe_Dataset)")
    p.add_argument("--categories", nargs="+", help="categories (default: every one found)")
    p.add_argument("--configs", nargs="+", type=config, required=True, help="FRAMES/FPS/WIDTH/WINDOWS, one or more")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--cv", type=int, default=5, help="folds, as train.py --cv (default: 5)")
    p.add_argument("--json", help="also write every line to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for category in args.categories or discover_categories(args.data_dir):
        ds = Dataset(args.data_dir, category)
        for seed in args.seeds:
            settings = train.parse_args(["--data-dir", args.data_dir, "--seed", str(seed)])
            folds, _ = evaluation.cv_folds(ds, args.cv, seed, settings.group_by)
            for c in args.configs:
                use(*c)
                began = time.perf_counter()
                accuracy, seconds = score(ds, settings, folds)
                rows.append({"category": category, "seed": seed, "config": "/".join(map(str, c)),
                             "clip_accuracy": round(accuracy, 6), "seconds": round(time.perf_counter() - began, 1)})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\nMean per-recording accuracy % over seeds {' '.join(map(str, args.seeds))}:")
    categories = list(dict.fromkeys(r["category"] for r in rows))
    print(f"  {'config':<16}" + "".join(f"{c:>15}" for c in categories) + f"{'mean':>9}")
    for c in dict.fromkeys(r["config"] for r in rows):
        means = [100 * np.mean([r["clip_accuracy"] for r in rows if r["config"] == c and r["category"] == cat])
                 for cat in categories]
        print(f"  {c:<16}" + "".join(f"{m:>15.2f}" for m in means) + f"{np.mean(means):>9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

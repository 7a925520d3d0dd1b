"""Choose the motion model's window by cross-validation: per-recording accuracy of
MotionClassifier for each window length, frame rate, width and number of training windows
given, on the folds `python train.py --cv K` uses, over several seeds.

    python MediaPipe_Dataset/benchmark_motion.py --data-dir ../shared/pose_trainer \
        --configs 16/10/64/16 32/10/64/16 --seeds 0 1 2

A configuration is FRAMES/FPS/WIDTH/WINDOWS: the window (T instants at FPS per second), the
model's width, and the training windows per recording per epoch per window length. Each
line printed is one (configuration, category, seed): per-recording accuracy and seconds;
the last table is the mean over seeds. --json keeps every line.

    python MediaPipe_Dataset/benchmark_motion.py --summarize cv_seed_*.json

summarizes `train.py --cv K --json` runs instead: per category, the verdicts per recording
of the frame vote, the motion model, the window-statistics peer and the advice.
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

from MediaPipe_Dataset import crossval, evaluation, outputs  # noqa: E402
from MediaPipe_Dataset.config import MotionNetConfig, TrainingConfig, WindowConfig  # noqa: E402
from MediaPipe_Dataset.motion import MotionKind  # noqa: E402
from MediaPipe_Dataset.samples import Dataset, discover_categories  # noqa: E402


def config(text):
    try:
        frames, fps, width, windows = text.split("/")
        return int(frames), float(fps), int(width), int(windows)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMES/FPS/WIDTH/WINDOWS such as 16/10/64/16, got {text!r}")


def kind_of(frames, fps, width, windows):
    """The motion model's kind with this window, width and number of training windows."""
    return MotionKind(MotionNetConfig(width=width), WindowConfig(frames=frames, fps=fps, train_windows=windows))


def score(ds, kind, settings, folds):
    """(per-recording accuracy of the kind's own model over the folds, seconds), as --cv scores it."""
    result = crossval.CvResult(ds, None, folds)
    crossval.cross_validate_kind(kind, ds, result, settings)
    ours = next(iter(result.scores[kind.name].values()))
    n, right = ours.clip_figures()
    return right / n, ours.seconds


def summarize(paths):
    """The mean over `train.py --cv --json` files (one per seed) of each category's verdicts
    per recording: the frame vote of PoseClassifier and of the best peer, the motion model,
    the window-statistics peer, and the verdict the advice picks in each run; and the motion
    model's fitting time against PoseClassifier's."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    print(f"Per recording %, mean over {len(runs)} runs ({', '.join(os.path.basename(p) for p in paths[:2])}, ...):")
    print(f"  {'category':<15}{'PoseClassifier vote':>21}{'best peer vote':>26}{'MotionClassifier':>18}"
          f"{'HGB on windows':>16}{'advised':>9}{'motion wins/ties/losses':>25}{'time vs frame':>15}")
    for category in runs[0]:
        r = [run[category] for run in runs]
        if "MotionClassifier" not in r[0]:
            print(f"  {category:<15}no motion model")
            continue
        clip = lambda name: 100 * np.mean([x[name]["clip_mean"] for x in r])
        frame, mine = [x["PoseClassifier"]["clip_mean"] for x in r], [x["MotionClassifier"]["clip_mean"] for x in r]
        peers = [n for n in r[0] if n not in ("PoseClassifier", "MotionClassifier", "HGB on window statistics")
                 and r[0][n].get("clip_mean") is not None]
        best = max(peers, key=clip)
        advised = 100 * np.mean([m if x["MotionClassifier"].get("advised_verdict", "motion" if m > f else "frames") == "motion"
                                 else f for x, f, m in zip(r, frame, mine)])
        record = (f"{sum(m > f for f, m in zip(frame, mine))}/{sum(m == f for f, m in zip(frame, mine))}/"
                  f"{sum(m < f for f, m in zip(frame, mine))}")
        time_ratio = np.mean([x["MotionClassifier"]["seconds"] / x["PoseClassifier"]["seconds"] for x in r])
        print(f"  {category:<15}{clip('PoseClassifier'):>21.2f}{clip(best):>16.2f} ({best[:8]}){clip('MotionClassifier'):>18.2f}"
              f"{clip('HGB on window statistics'):>16.2f}{advised:>9.2f}{record:>25}{time_ratio:>14.2f}x")
    return 0


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--summarize"]:
        if len(argv) < 2:
            print("error: --summarize needs the JSON files of `train.py --cv K --json`", file=sys.stderr)
            return 2
        return summarize(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " With --summarize FILE...: "
                                "the mean over train.py --cv --json files of the verdicts per recording.")
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
            settings = TrainingConfig(seed=seed)         # train.py's defaults
            folds, _ = evaluation.cv_folds(ds, args.cv, seed, settings.group_by)
            for c in args.configs:
                began = time.perf_counter()
                accuracy, seconds = score(ds, kind_of(*c), settings, folds)
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
        outputs.write_json(args.json, rows)        # atomic, as train.py's
    return 0


if __name__ == "__main__":
    sys.exit(main())

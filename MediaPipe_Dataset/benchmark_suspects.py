"""How well the suspect-label list finds real label errors: flip the labels of a known 5% of
the recordings of a real set (in memory: the same as moving their files to the other class
folder), take the training split `python train.py` would, and score the list
(suspects.suspect_labels) against the flipped samples, per sample and per recording.

    python MediaPipe_Dataset/benchmark_suspects.py --data-dir ../shared/pose_trainer --seeds 0 1 2 3 4
"""
import argparse
import json
import math
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

from MediaPipe_Dataset import evaluation, outputs, suspects  # noqa: E402
from MediaPipe_Dataset.samples import Dataset, discover_categories  # noqa: E402


def flip(ds, share, rng):
    """Flip the labels of share of ds's recordings (at least one), chosen by rng; their names."""
    names = np.unique(ds.groups)
    chosen = rng.choice(names, max(1, math.ceil(share * len(names))), replace=False)
    rows = np.isin(ds.groups, chosen)
    ds.y[rows] = 1 - ds.y[rows]
    return set(chosen)


def score(ds, flipped, train_idx, listed):
    """Precision and recall of the listed samples, per sample and per recording."""
    bad = np.isin(ds.groups, list(flipped))
    in_train = np.zeros(len(ds.y), bool)
    in_train[train_idx] = True
    hit = bad[listed]
    bad_recs = {g for g in flipped if (in_train & (ds.groups == g)).any()}
    listed_recs = set(ds.groups[listed])
    ratio = lambda a, b: a / b if b else None
    return {"n_listed": len(listed), "n_flipped_train": int((bad & in_train).sum()),
            "precision": ratio(int(hit.sum()), len(listed)), "recall": ratio(int(hit.sum()), int((bad & in_train).sum())),
            "recordings_listed": len(listed_recs), "recordings_flipped_train": len(bad_recs),
            "recording_precision": ratio(len(listed_recs & bad_recs), len(listed_recs)),
            "recording_recall": ratio(len(listed_recs & bad_recs), len(bad_recs))}


def main(argv=None):
    from MediaPipe_Dataset.model import KeypointNormalizer
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="a real dataset folder")
    p.add_argument("--categories", nargs="+", help="categories (default: every one found)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds (default: 0-4)")
    p.add_argument("--share", type=float, default=0.05, help="share of recordings flipped (default: 0.05)")
    p.add_argument("--below", nargs="+", type=float, default=[suspects.SUSPECT_BELOW],
                   help=f"own-label probabilities at or below which a sample is listed (default: "
                        f"{suspects.SUSPECT_BELOW:g}, the tool's)")
    p.add_argument("--json", help="also write every row to this JSON file")
    args = p.parse_args(argv)
    rows = []
    for category in args.categories or discover_categories(args.data_dir):
        for seed in args.seeds:
            ds = Dataset(args.data_dir, category)
            flipped = flip(ds, args.share, np.random.default_rng(seed))
            train_idx, _, _ = evaluation.split(ds, 0.2, seed, "auto")
            for below in args.below:
                listed, _ = suspects.suspect_labels(ds, train_idx, seed, KeypointNormalizer(), below)
                rows.append({"category": category, "seed": seed, "below": below, **score(ds, flipped, train_idx, listed)})
                print(json.dumps(rows[-1]), flush=True)
    print("\nMean over seeds (precision and recall in %; per recording: a recording is listed when one of its "
          "samples is):")
    for category in dict.fromkeys(r["category"] for r in rows):
        for below in args.below:
            r = [x for x in rows if x["category"] == category and x["below"] == below]
            mean = lambda k: 100 * np.mean([x[k] for x in r if x[k] is not None]) if any(
                x[k] is not None for x in r) else float("nan")
            print(f"  {category:<15} below {below:<5g} samples: precision {mean('precision'):6.2f} recall "
                  f"{mean('recall'):6.2f} (listed {np.mean([x['n_listed'] for x in r]):.0f}); recordings: "
                  f"precision {mean('recording_precision'):6.2f} recall {mean('recording_recall'):6.2f}")
    if args.json:
        outputs.write_json(args.json, rows)        # atomic, as train.py's
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train one correct-vs-incorrect pose classifier per category and export it.

    python train.py                      # every category in MediaPipe_Dataset/
    python train.py --categories stance --epochs 20
    python train.py --cv 5               # cross-validate against scikit-learn peers

Reads MediaPipe_Dataset/<category>/{correct,incorrect} <category>/*.json and writes, for every
model kind the category can have (the frame model, the motion model: MediaPipe_Dataset/
registry.py), models/<name>.pt (state dict), models/<name>.onnx (softmax probabilities) and
the training record models/<name>.json, and the report models/<category>_report.html. This
file is the command line; the library is MediaPipe_Dataset/ (pipeline.py runs a category).
Importing it only defines things: `from train import PoseClassifier, KeypointNormalizer`
trains, prints and writes nothing.
"""
import argparse
import contextlib
import os
import signal
import sys

from MediaPipe_Dataset import outputs  # standard library only: loads at once

if __name__ == "__main__":
    outputs.quiet_while_loading()

import torch

from MediaPipe_Dataset import crossval, evaluation, pictures, pipeline, registry, reports, store
from MediaPipe_Dataset.config import TrainingConfig
from MediaPipe_Dataset.model import KeypointNormalizer, MotionClassifier, PoseClassifier
from MediaPipe_Dataset.samples import KEYPOINT_NAMES, MEDIAPIPE_33, DataError, Dataset, discover_categories, parse_keypoints
from MediaPipe_Dataset.store import load_model

__all__ = ["PoseClassifier", "KeypointNormalizer", "MotionClassifier", "load_model", "parse_keypoints",
           "KEYPOINT_NAMES", "MEDIAPIPE_33", "main", "parse_args"]

DEFAULTS = TrainingConfig()
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20


def batch_size_type(text):
    """--batch-size: "auto" (None) or a whole number."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {text!r}")


def parse_args(argv=None):
    d = DEFAULTS
    p = argparse.ArgumentParser(description="Train one correct-vs-incorrect pose classifier per category "
                                            "and export it to PyTorch and ONNX. Relative paths are from the "
                                            "working directory.")
    p.add_argument("--data-dir", default="MediaPipe_Dataset",
                   help="folder of <category>/{correct,incorrect} <category>/*.json (default: MediaPipe_Dataset)")
    p.add_argument("--models-dir", default="models",
                   help="where <category>.pt, .onnx and .json are written (default: models)")
    p.add_argument("--categories", nargs="+", metavar="NAME",
                   help="train only these categories (default: every category found in --data-dir)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default: {d.epochs})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam peak learning rate (default: {d.lr:g})")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=d.schedule,
                   help="learning-rate schedule: constant, or cosine decay to 0 over the run (default: cosine)")
    p.add_argument("--batch-size", type=batch_size_type, default=None, metavar="N",
                   help=f"training batch size of every model kind; auto: {d.min_auto_batch}, growing with the data "
                        f"beyond {d.min_auto_batch * d.max_steps_per_epoch:,} training inputs so that an epoch stays "
                        f"{d.max_steps_per_epoch} batches, up to {d.max_auto_batch} (default: auto)")
    p.add_argument("--val-split", type=float, default=d.val_split, help="validation fraction (default: 0.2)")
    p.add_argument("--group-by", choices=["auto", "subject", "clip", "none"], default=d.group_by,
                   help="what the validation split and --cv folds keep whole: people (the samples' `subject`), "
                        "recordings (`clip`) or nothing; auto: the coarsest the data has (default: auto)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="E",
                   help="label smoothing of the training loss: targets 1 - E/2 and E/2 instead of 1 and 0 "
                        f"(default: {d.label_smoothing:g})")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                   help="mirror (left/right swapped), rotate, stretch and jitter training batches (default: on)")
    p.add_argument("--drop-joints", type=float, default=d.drop_joints, metavar="P",
                   help="joint dropout: the probability that a training sample loses points the way real "
                        "recordings do (random points, a limb, a side, the legs or the arms); 0 turns it off, "
                        f"and so does --no-augment (default: {d.drop_joints:g})")
    p.add_argument("--min-visibility", type=float, default=d.min_visibility, metavar="V",
                   help="a landmark whose visibility (33-landmark rows, or a sample's `visibility` list) is "
                        f"below V counts as missing; 0 keeps every guess (default: {d.min_visibility:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for split, weights and shuffling (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto: cuda when available)")
    p.add_argument("--strict", action="store_true", help="treat any invalid sample as an error (default: skip it)")
    for kind in registry.KINDS[1:]:              # the first kind is always trained
        p.add_argument(f"--{kind.name}", action=argparse.BooleanOptionalAction, default=True, help=kind.help)
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write models/<category>_report.html (training curves, confusion matrices, recordings over "
                        "time, the poses misjudged, suspect labels); with --cv, models/cv_report.html "
                        "(default: on for a normal run, off with --cv)")
    p.add_argument("--cv", type=int, metavar="K", default=0,
                   help="K-fold cross-validation against scikit-learn peers instead of training models "
                        "(default: off; writes no models)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file (default: none)")
    return check_args(p, p.parse_args(argv))


def check_args(p, args):
    """parse_args's checks of the values: p.error (exit 2) with one sentence."""
    if not 1 <= args.epochs <= MAX_EPOCHS or (args.batch_size is not None and not 2 <= args.batch_size <= MAX_BATCH):
        p.error(f"--epochs must be between 1 and {MAX_EPOCHS:,} and --batch-size between 2 and {MAX_BATCH:,}")
    if not 0 < args.lr <= 1e30:        # past float32's range, torch cannot even store it
        p.error("--lr must be a number > 0 and at most 1e30")
    if not 0 <= args.seed < 2 ** 32:
        p.error("--seed must be between 0 and 2**32 - 1 (scikit-learn's limit)")
    if not 0 < args.val_split < 1:
        p.error("--val-split must be between 0 and 1")
    if not 0 <= args.drop_joints <= 1 or not 0 <= args.min_visibility <= 1 or not 0 <= args.label_smoothing < 1:
        p.error("--drop-joints and --min-visibility must be between 0 and 1, --label-smoothing at least 0 and below 1")
    if args.cv == 1 or args.cv < 0:
        p.error("--cv needs K >= 2")
    if args.report is None:
        args.report = not args.cv
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device {args.device}: not available here (use auto, cpu or cuda)")
    return args


def run_of(args):
    """The pipeline.Run (and its TrainingConfig) that the parsed flags describe."""
    settings = TrainingConfig(**{name: getattr(args, name) for name in (
        "epochs", "lr", "schedule", "batch_size", "val_split", "group_by", "label_smoothing", "augment",
        "drop_joints", "min_visibility", "seed", "device")})
    off = tuple(kind.name for kind in registry.KINDS[1:] if not getattr(args, kind.name))
    return pipeline.Run(args.data_dir, args.models_dir, settings, off, args.report, args.cv)


def chosen_categories(args):
    """The categories to train or cross-validate, each once; raises DataError."""
    categories = discover_categories(args.data_dir)
    if args.categories:
        unknown = [c for c in args.categories if c not in categories]
        if unknown:
            raise DataError(f"{args.data_dir}: no category {', '.join(unknown)} (found: {', '.join(categories)})")
        categories = list(dict.fromkeys(args.categories))
    return categories


def check_outputs(args, run, categories):
    """Before any training: the models folder can be written, and --json is not one of the
    files this run writes. Raises DataError."""
    if not args.cv or run.report:
        outputs.check_writable(args.models_dir, DataError, "models" if not args.cv else "the report")
    if args.json:
        outputs.check_report_path(args.json, store.run_outputs(args.models_dir, categories, run.kinds(), args.cv),
                                  DataError)


def load_datasets(args, categories, failed):
    """The Dataset of each category, largest first; a category that cannot be read is named
    and added to failed."""
    datasets = []
    for category in categories:
        try:
            suffix = store.reserved_suffix(category, (store.INT8, *registry.suffixes()))
            if suffix:      # its files would be another model's
                raise DataError(f"{os.path.join(args.data_dir, category)}: a category name may not end in {suffix} "
                                f"(quantize.py names its models <category>{store.INT8}, train.py its other model "
                                f"kinds and fault models <category>{'/'.join(registry.suffixes())}); rename the folder")
            if store.report_collision(category):
                raise DataError(f"{os.path.join(args.data_dir, category)}: a category may not be named {category} "
                                f"(its report would be {store.report_path(args.models_dir, category)}, the name of "
                                f"--cv's report); rename the folder")
            datasets.append(Dataset(args.data_dir, category, args.min_visibility))
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(category)
    return sorted(datasets, key=lambda d: (-len(d.y), d.category))


def log(text):
    from tqdm import tqdm
    tqdm.write(text)


def run_categories(args, run, categories, failed, results):
    """Train or cross-validate each category into results ({category: result}); a DataError
    names the category and adds it to failed."""
    with contextlib.nullcontext() if args.cv else outputs.folder_lock(args.models_dir):
        if not args.cv:
            outputs.report_stale_temps(args.models_dir)
        datasets = load_datasets(args, categories, failed)
        reports.print_statistics(datasets)
        for ds in datasets:
            run.current = ds.category
            try:
                reports.report_problems(ds, args.strict)
                results[ds.category] = crossval.cv_category(ds, run) if args.cv else \
                    pipeline.train_category(ds, run, log)
                if getattr(results[ds.category], "report_error", None):
                    failed.append(ds.category)
            except DataError as e:
                print(f"error: {e}", file=sys.stderr)
                failed.append(ds.category)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # these models are tiny: one thread is faster and deterministic
    run = run_of(args)
    try:
        categories = chosen_categories(args)
        check_outputs(args, run, categories)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("=== MediaPipe Pose Classification Training ===\n")
    failed, results = [], {}
    run.current = None
    try:
        run_categories(args, run, categories, failed, results)
    except KeyboardInterrupt:
        done = ", ".join(results if args.cv else run.written) or "none"
        what = "cross-validated" if args.cv else "models written"
        print(f"\nInterrupted{' during ' + run.current if run.current else ''}: {what}: {done}; "
              f"{'the rest not measured' if args.cv else 'the rest not written, their earlier models kept'}"
              f"{'' if args.cv or not args.json else '; no JSON report'}.", file=sys.stderr)
        return 130
    if args.cv and run.report and results:
        path = store.cv_report_path(args.models_dir)
        try:
            pictures.write(path, pictures.cv_page(results, evaluation.REMOVED_POINTS))
            print(f"Report: {path} (accuracy per model per frame and per recording, and with points removed)")
        except OSError as e:
            print(f"error: {path}: could not write the --cv report ({store.write_failure(e, path)}); the figures "
                  f"above{' and in ' + args.json if args.json else ''} stand", file=sys.stderr)
            failed.append("the --cv report")
    return outputs.finish({c: r.to_json() for c, r in results.items()}, failed, args.json)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)     # libraries loaded: Ctrl-C cleans up
    signal.signal(signal.SIGTERM, outputs.terminate)
    sys.exit(main())

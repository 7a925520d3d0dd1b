"""What train.py prints: the dataset statistics and problems, the plan and validation figures
of a normal run, the files written, and the tables of cross-validation. Each function
prints figures that were measured elsewhere (train.py, evaluation.py); none computes one.
"""
import math
import os
import sys

import numpy as np

from MediaPipe_Dataset import evaluation
from MediaPipe_Dataset.evaluation import REMOVAL_DRAWS, REMOVAL_MAX_FRAMES, REMOVED_POINTS
from MediaPipe_Dataset.samples import CLASS_NAMES, DataError


def print_statistics(datasets):
    print("Dataset Statistics:")
    for ds in datasets:
        print(f"{ds.category.capitalize()}:")
        print(f"  - Correct samples: {ds.count(1)}")
        print(f"  - Incorrect samples: {ds.count(0)}")
        print(f"  - Total samples: {len(ds.y)}")
        if ds.has_clips:
            print(f"  - Clips (recordings): {len(set(ds.groups))}")
        if ds.has_subjects:
            print(f"  - Subjects (people): {len({s for s in ds.subjects if s is not None})}")
        n_missing, counts = ds.missing()
        if n_missing:
            often = ", ".join(f"{name} {n}" for name, n in list(counts.items())[:6])
            print(f"  - Samples with missing points: {n_missing} ({100 * n_missing / len(ds.y):.1f}%); "
                  f"most often missing: {often}")
        print()


def report_problems(ds, strict):
    """Print invalid samples and label warnings; with strict, invalid samples are an error."""
    for path, reason in ds.warnings:
        print(f"warning: {path}: {reason}", file=sys.stderr)
    for sentence in ds.recording_warnings:
        print(f"warning: {ds.root}: {sentence}", file=sys.stderr)
    if ds.ignored:
        print(f"{ds.category}: ignored {ds.ignored} macOS '._' file(s) (AppleDouble metadata, not samples)",
              file=sys.stderr)
    for path, reason in ds.invalid:
        print(f"{'error' if strict else 'skipped'}: {path}: {reason}", file=sys.stderr)
    if ds.invalid:
        if strict:
            raise DataError(f"{ds.root}: {len(ds.invalid)} invalid sample(s) and --strict is set")
        print(f"{ds.category}: skipped {len(ds.invalid)} invalid sample(s) "
              f"(listed above; --strict makes this an error)", file=sys.stderr)


def print_plan(ds, args, n_train, n_val, batch_size, grouping):
    print(f"Training {ds.category.upper()} Classification Model")
    print("=" * 60)
    where = "frames, clips split: see the warning" if grouping.name == "none" and grouping.warning else grouping.words()
    print(f"Split: {n_train} training, {n_val} validation samples ({where}; "
          f"{100 * n_val / len(ds.y):.0f}% for --val-split {args.val_split:g}); device {args.device}")
    print(f"Batches of {batch_size}" + ("" if args.batch_size else " (--batch-size auto)") +
          f", {math.ceil(n_train / batch_size)} per epoch, {args.epochs} epochs")
    if grouping.warning:
        print(f"warning: {ds.root}: {grouping.warning}", file=sys.stderr)


def print_confusion(cm, title):
    print(f"{title} (rows: true, columns: predicted):")
    print(f"{'':>12}{CLASS_NAMES[0]:>11}{CLASS_NAMES[1]:>10}")
    for label in (0, 1):
        print(f"{CLASS_NAMES[label]:>12}{cm[label, 0]:>11}{cm[label, 1]:>10}")


def print_validation(ds, args, v, best):
    from sklearn.metrics import classification_report, confusion_matrix
    y_val, pred = ds.y[v.val_idx], v.probabilities.argmax(1)
    print(f"\nKept epoch: {best}/{args.epochs}, Val Acc {100 * v.accuracy:.2f}% (picked by validation "
          f"accuracy averaged with the epochs on either side, so this figure is optimistic; `--cv 5` gives an "
          f"unbiased estimate)")
    print("\nClassification report (validation):")
    print(classification_report(y_val, pred, labels=[0, 1], target_names=CLASS_NAMES, digits=3, zero_division=0))
    print_confusion(confusion_matrix(y_val, pred, labels=[0, 1]), "Confusion matrix")
    if ds.has_clips:
        print(f"\nPer recording (validation): {100 * v.clip_accuracy:.2f}% of {len(v.clip_true)} clips get the "
              f"right verdict (the class with the highest mean probability over the clip's frames)")
        print_confusion(confusion_matrix(v.clip_true, v.clip_pred, labels=[0, 1]), "Per-recording confusion matrix")
    capped = f"; {REMOVAL_MAX_FRAMES:,} random frames" if len(v.val_idx) > REMOVAL_MAX_FRAMES else ""
    print(f"\nValidation accuracy with k random points removed from each frame ({REMOVAL_DRAWS} draws, "
          f"one shoulder or hip kept{capped}): " + ", ".join([f"k=0 {100 * v.accuracy:.2f}%"] +
                                                         [f"k={k} {100 * a:.2f}%" for k, a in v.removed.items()]))


def print_files(written):
    """What write_models wrote (its dict), and the stale INT8 model it removed."""
    print(f"\nONNX check passed; ONNX Runtime matches PyTorch on the validation samples, also with "
          f"points missing (max diff {written['parity']:.1e}); the graph has {written['nodes']} operator nodes")
    print("Files written:")
    for path in written["files"]:
        print(f"  {path} ({os.path.getsize(path) / 1e6:.3f} MB)")
    print(f"  {written['record']} (training record: model configuration, validation samples, figures, settings)")
    if written["removed_int8"]:
        print(f"Removed {written['removed_int8']}: quantized from the previous model of this category; "
              f"run `python quantize.py` for one of the new model")
    print()


def print_cv(ds, args, scores, fold_list, grouping, seconds):
    """The --cv tables of one category: accuracy per model, then accuracy with points removed."""
    print(f"Cross-validation: {ds.category.upper()} ({args.cv} folds, {grouping.words()}, "
          f"{len(ds.y)} samples, {seconds:.1f} s)")
    print("=" * 60)
    fitted = {name: s for name, s in scores.items() if not s.error}
    best = max(fitted, key=lambda n: np.mean(fitted[n].accuracy), default=None)
    print(f"  {'model':<20}{'accuracy % (mean +- std)':>26}{'macro F1':>10}{'per recording %':>17}"
          f"{'seconds':>9}   per fold")
    for name, s in scores.items():
        if s.error:
            print(f"  {name:<20}could not be fitted ({s.error}); left out")
            continue
        n_clips, right = s.clip_figures(ds)
        folds_text = " ".join(f"{100 * a:.1f}" for a in s.accuracy)
        clip_text = f"{100 * right / n_clips:.2f}" + ("v" if s.voted else " ")
        print(f"{'*' if name == best else ' '} {name:<20}{100 * np.mean(s.accuracy):>17.2f} +- "
              f"{100 * np.std(s.accuracy):<5.2f}{np.mean(s.f1):>10.3f}{clip_text:>17}{s.seconds:>9.1f}   {folds_text}")
    print("* best mean accuracy. PoseClassifier: last epoch of each fold (no epoch picked on test data).")
    for name, s in fitted.items():
        if s.subsample:
            print(f"{name}: fitted on a stratified subsample of {s.subsample:,} training frames per fold (above "
                  f"{evaluation.SVC_MAX_TRAIN:,}, its fit time grows about with the square of the frames).")
    if best is not None:
        unit = "clips" if ds.has_clips else "samples"
        print(f"Per recording: the class with the highest mean probability over a clip's frames, over all "
              f"{fitted[best].clip_figures(ds)[0]} test {unit} of all folds"
              + ("" if ds.has_clips else " (no clips: each sample is its own clip)")
              + (" (a clip split over folds: all its frames, each from the fold that tested it)"
                 if grouping.name == "none" and ds.has_clips else "")
              + ("; v: no probabilities, so a majority vote of frame predictions"
                 if any(s.voted for s in fitted.values()) else "") + ".")
    print_robustness(fitted, fold_list)


def print_robustness(scores, fold_list):
    capped = max(len(test) for _, test in fold_list) > REMOVAL_MAX_FRAMES
    print(f"\nAccuracy % with k random points removed from each test frame ({REMOVAL_DRAWS} draws, "
          f"one shoulder or hip kept; the same frames for every model"
          + (f"; at most {REMOVAL_MAX_FRAMES:,} random frames of each test fold" if capped else "") + "):")
    print(f"  {'model':<20}" + "".join(f"{'k=' + str(k):>8}" for k in (0, *REMOVED_POINTS)))
    for name, s in scores.items():
        removed = s.mean_removed()
        print(f"  {name:<20}{100 * np.mean(s.accuracy):>8.2f}" + "".join(f"{100 * removed[k]:>8.2f}"
                                                                      for k in REMOVED_POINTS))
    print()


def print_motion(ds, f, frame_seconds, written):
    """A normal run's motion model: validation figures beside the frame vote, the advice, files."""
    from MediaPipe_Dataset.motion import MOTION_FPS, MOTION_FRAMES
    print(f"\nMotion model ({ds.category}_motion, windows of {MOTION_FRAMES} frames at {MOTION_FPS:g} per second):")
    print(f"  Trained in {f['train_seconds']:.1f} s ({f['train_seconds'] / max(frame_seconds, 1e-9):.2f}x the frame "
          f"model's {frame_seconds:.1f} s)")
    print(f"  Validation: {100 * f['val_window_accuracy']:.2f}% of {f['n_val_windows']} windows; per recording "
          f"{100 * f['val_clip_accuracy']:.2f}% of {f['n_val_clips']} (mean over the windows covering each), "
          f"frame vote {100 * f['frame_vote_clip_accuracy']:.2f}% on the same recordings")
    which = "the motion model's" if f["advised_verdict"] == "motion" else "the frame vote's"
    print(f"  Advice: trust {which} verdict for {ds.category}: {f['advice']}.")
    print_files(written)



def print_cv_motion(ds, scores, motion_scores, problem):
    """The per-recording table of --cv: the frame models' votes and the models that judge
    windows, on the same folds and recordings, and which verdict the figures advise."""
    from MediaPipe_Dataset.motion import advice
    if problem:
        print(f"No motion model for {ds.category}: {problem}.\n")
        return
    print(f"Per recording, {ds.category}: the frame models' votes and the models that judge windows "
          f"(the same folds; the recordings with timestamps):")
    votes = {name: s.clip_figures(ds) for name, s in scores.items() if not s.error}
    for name, (n, right) in votes.items():
        print(f"  {name + ' (frame vote)':<34}{100 * right / n:>8.2f}%  of {n}")
    for name, s in motion_scores.items():
        if s.error:
            print(f"  {name:<34}could not be fitted ({s.error}); left out")
            continue
        n, right = s.clip_figures()
        print(f"  {name:<34}{100 * right / n:>8.2f}%  of {n}{s.seconds:>9.1f} s")
    ours = motion_scores.get("MotionClassifier")
    if ours is not None and not ours.error and "PoseClassifier" in votes:
        n, right = votes["PoseClassifier"]
        m, mine = ours.clip_figures()
        verdict, why = advice(right / n, mine / m, m)
        print(f"  Advice: trust {'the motion model' if verdict == 'motion' else 'the frame vote'} for "
              f"{ds.category}: {why.replace('on the same', 'on')}.")
    print()


def print_report(path, ds, suspects):
    """The report's path, and the suspect labels in a line."""
    if len(suspects):
        recordings = len(set(ds.groups[suspects]))
        print(f"Suspect labels: {len(suspects)} training sample(s) of {recordings} recording(s) look like the "
              f"other class to their nearest neighbours (e.g. {ds.files[suspects[0]]}); check them"
              + (" in the report" if path else "") + ".")
    else:
        print("Suspect labels: none.")
    if path:
        print(f"Report: {path} (training curves, confusion matrices, recordings over time, the poses misjudged, "
              f"suspect labels)\n")

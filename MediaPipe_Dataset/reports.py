"""What train.py prints: the dataset statistics and problems, the plan and validation figures
of a normal run, the files written, and the tables of cross-validation, for every kind alike.
Each function prints figures measured elsewhere (pipeline.py's results); none computes one.
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
        faults, silent = ds.fault_counts()
        if faults:
            print("  - Faults (incorrect samples): " + "; ".join(f"{name}: {k} samples, {r} recordings"
                                                           for name, (k, r) in faults.items()))
            if silent:
                print(f"  - Incorrect recordings naming no fault: {len(silent)} ({', '.join(silent[:3])}"
                      f"{', ...' if len(silent) > 3 else ''})")
        n_missing, counts = ds.missing()
        if n_missing:
            often = ", ".join(f"{name} {n}" for name, n in list(counts.items())[:6])
            print(f"  - Samples with missing points: {n_missing} ({100 * n_missing / len(ds.y):.1f}%); "
                  f"most often missing: {often}")
        print()


MAX_LISTED = 20       # invalid samples listed one per line; the rest are counted


def report_problems(ds, strict):
    """Print invalid samples and label warnings; with strict, invalid samples are an error."""
    for path, reason in ds.warnings:
        print(f"warning: {path}: {reason}", file=sys.stderr)
    for sentence in ds.recording_warnings:
        print(f"warning: {ds.root}: {sentence}", file=sys.stderr)
    if ds.ignored:
        print(f"{ds.category}: ignored {ds.ignored} macOS '._' file(s) (AppleDouble metadata, not samples)",
              file=sys.stderr)
    for path, reason in ds.invalid[:MAX_LISTED]:
        print(f"{'error' if strict else 'skipped'}: {path}: {reason}", file=sys.stderr)
    if len(ds.invalid) > MAX_LISTED:
        reasons = {}
        for _, reason in ds.invalid[MAX_LISTED:]:
            words = reason.split(" ", 1)[0]
            reasons[words] = reasons.get(words, 0) + 1
        print(f"... and {len(ds.invalid) - MAX_LISTED} more invalid sample(s), by the first word of their reason: "
              + ", ".join(f"{w} {n}" for w, n in sorted(reasons.items(), key=lambda item: -item[1])), file=sys.stderr)
    if ds.invalid:
        if strict:
            raise DataError(f"{ds.root}: {len(ds.invalid)} invalid sample(s) and --strict is set")
        print(f"{ds.category}: skipped {len(ds.invalid)} invalid sample(s) "
              f"({'listed' if len(ds.invalid) <= MAX_LISTED else 'the first ' + str(MAX_LISTED) + ' listed'} above; "
              f"--strict makes this an error)", file=sys.stderr)


def print_plan(ds, settings, n_train, n_val, batch_size, grouping):
    print(f"Training {ds.category.upper()} Classification Model")
    print("=" * 60)
    where = "frames, clips split: see the warning" if grouping.name == "none" and grouping.warning else grouping.words()
    print(f"Split: {n_train} training, {n_val} validation samples ({where}; "
          f"{100 * n_val / len(ds.y):.0f}% for --val-split {settings.val_split:g}); device {settings.device}")
    print(f"Batches of {batch_size}" + ("" if settings.batch_size else " (--batch-size auto)") +
          f", {math.ceil(n_train / batch_size)} per epoch, {settings.epochs} epochs")
    print_grouping_warning(ds, grouping)


def print_grouping_warning(ds, grouping):
    if grouping.warning:
        print(f"warning: {ds.root}: {grouping.warning}", file=sys.stderr)


def print_kind_warnings(ds, kind):
    """Print what the kind leaves out of ds (Kind.warnings); the sentences."""
    found = kind.warnings(ds)
    for sentence in found:
        print(f"warning: {ds.category}: {sentence}", file=sys.stderr)
    return found


def print_skipped(ds, kind, problem, paths=None):
    """Why a kind has no model; and that its files of an earlier run (paths) stay beside this run's."""
    print(f"\nNo {kind.title} for {ds.category}: {problem}.")
    if paths and os.path.exists(paths[".json"]):
        print(f"{os.path.splitext(paths['.json'])[0]}.*: kept from an earlier training run, beside this run's "
              f"files (their records' `run` differ); remove them if they are out of date.")


def print_faults_skipped(ds, why, kind=None):
    print(f"\nNo {kind.title if kind else 'fault model'} for {ds.category}: {why}.")


def print_fault_validation(view, v, settings):
    """A fault model's validation figures: which fault, among the incorrect inputs and recordings
    that name one, a verdict credited when it names any fault of its input."""
    from sklearn.metrics import confusion_matrix
    names, labels = list(v.kind.classes), list(range(len(v.kind.classes)))
    per_input, per_clip = v.fault_accuracy
    print(f"\n{v.kind.title.capitalize()} ({v.kind.paths_name(view.category)}, {len(names)} faults, "
          f"{v.kind.unit}): trained in {v.seconds:.1f} s on the {v.n_train} training samples that name a fault")
    print(f"Which fault (validation): {100 * per_input:.2f}% of {len(v.units)} incorrect {v.kind.unit}, "
          f"{100 * per_clip:.2f}% of {len(v.clip_names)} incorrect recordings get one of their faults")
    print_confusion(confusion_matrix(v.units.y, v.probabilities.argmax(1), labels=labels),
                    f"Confusion matrix by fault (per {v.kind.unit[:-1]}, true: its first fault)", names)
    from MediaPipe_Dataset.faults import recording_verdicts, verdict
    unit = v.kind.unit[:-1]
    for i in range(min(2, len(v.units))):
        where = view.files[v.units.keys[i]] if v.kind.unit == "frames" else \
            f"{v.units.groups[i]} at {v.units.times[i]:.1f} s"
        print(f"  {unit} {where}: {verdict(v.probabilities[i], names)}")
    for name, said in list(recording_verdicts(v).items())[:3]:
        print(f"  recording {name}: {said}")


def print_fault_table(ds, view, figures):
    """--cv's which-fault table: per model, among the incorrect samples that name a fault."""
    print(f"Which fault, {ds.category}: {len(view.names)} faults ({', '.join(view.names)}), "
          f"{len(view.y)} incorrect samples that name one (a verdict is right when it names one of its input's faults):")
    print(f"  {'model':<26}{'per frame %':>12}{'per recording %':>17}{'macro F1':>10}")
    for name, f in figures.items():
        if f["error"]:
            print(f"  {name:<26}could not be fitted ({f['error']}); left out")
            continue
        frame = f"{100 * f['mean']:.2f}" if f["mean"] is not None else "-"
        print(f"  {name:<26}{frame:>12}{100 * f['clip_mean']:>16.2f} {f['macro_f1']:>10.3f}   of {f['n_clips']}")
    best = max((n for n, f in figures.items() if not f["error"]), key=lambda n: figures[n]["clip_mean"], default=None)
    if best:
        print_confusion(np.array(figures[best]["confusion"]), f"Per-recording confusion by fault, {best}", view.names)
    print()


def print_confusion(cm, title, names=CLASS_NAMES):
    print(f"{title} (rows: true, columns: predicted):")
    width = max(12, *(len(n) + 2 for n in names))
    print(" " * width + "".join(f"{n:>{max(len(n) + 2, 10)}}" for n in names))
    for label, name in enumerate(names):
        print(f"{name:>{width}}" + "".join(f"{cm[label, j]:>{max(len(n) + 2, 10)}}" for j, n in enumerate(names)))


def print_validation(ds, result, kind, settings):
    """One kind's validation figures in a normal run, beside the first kind's vote when it is
    another kind, then its files."""
    from sklearn.metrics import classification_report, confusion_matrix
    v, base = result.validations[kind.name], next(iter(result.validations.values()))
    name = kind.paths_name(ds.category)
    print(f"\n{kind.title.capitalize()} ({name}, {kind.unit}): trained in {v.seconds:.1f} s, batches of "
          f"{v.batch_size}" + (f" ({v.seconds / max(base.seconds, 1e-9):.2f}x the {base.kind.title}'s "
                               f"{base.seconds:.1f} s)" if base is not v else ""))
    y, pred = v.units.y, v.probabilities.argmax(1)
    if "val_acc" in v.history[0]:
        print(f"Kept epoch: {v.best}/{settings.epochs}, Val Acc {100 * v.accuracy:.2f}% (picked by validation "
              f"accuracy averaged with the epochs on either side, so this figure is optimistic; `--cv 5` gives an "
              f"unbiased estimate)")
    print(f"\nClassification report (validation, {len(y)} {kind.unit}):")
    labels, names = list(range(len(kind.classes))), list(kind.classes)
    print(classification_report(y, pred, labels=labels, target_names=names, digits=3, zero_division=0))
    print_confusion(confusion_matrix(y, pred, labels=labels), "Confusion matrix", names)
    if ds.has_clips:
        versus = "" if base is v else (f"; {base.kind.vote_words} {100 * base.clip_accuracy_on(v.clip_names):.2f}% "
                                       f"on the same recordings")
        print(f"\nPer recording (validation): {100 * v.clip_accuracy:.2f}% of {len(v.clip_true)} clips get the "
              f"right verdict (the class with the highest mean probability over the clip's {kind.unit}){versus}")
        print_confusion(confusion_matrix(v.clip_true, v.clip_pred, labels=labels), "Per-recording confusion matrix", names)
    if v.removed:
        capped = f"; {REMOVAL_MAX_FRAMES:,} random frames" if len(y) > REMOVAL_MAX_FRAMES else ""
        print(f"\nValidation accuracy with k random points removed from each frame ({REMOVAL_DRAWS} draws, "
              f"one shoulder or hip kept{capped}): " + ", ".join([f"k=0 {100 * v.accuracy:.2f}%"] +
                                                             [f"k={k} {100 * a:.2f}%" for k, a in v.removed.items()]))


def print_files(written, kind):
    """What store.stage_model wrote (its dict), and the stale INT8 model it removed."""
    print(f"\n{kind.title.capitalize()}: ONNX check passed; ONNX Runtime matches PyTorch on the validation inputs, also with "
          f"points missing (max diff {written['parity']:.1e}); the graph has {written['nodes']} operator nodes")
    print("Files written:")
    for path in written["files"]:
        print(f"  {path} ({os.path.getsize(path) / 1e6:.3f} MB)")
    print(f"  {written['record']} (training record: model configuration, validation samples, figures, settings)")
    if written["removed_int8"]:
        print(f"Removed {written['removed_int8']}: quantized from the previous model of this category; "
              f"run `python quantize.py` for one of the new model")
    print()


def print_advice(ds, result):
    """Which verdict to trust, when more than one kind was trained."""
    if len(result.validations) > 1:
        verdict, why = result.advice
        trusted = next(v.kind for v in result.validations.values() if v.kind.verdict == verdict)
        print(f"Advice: trust {trusted.vote_words}'s verdict for {ds.category}: {why}.\n")


def print_cv(result, run):
    """The --cv tables of one category: accuracy per model per frame, with points removed, and
    per recording for every kind; the advice."""
    ds, grouping = result.ds, result.grouping
    print(f"Cross-validation: {ds.category.upper()} ({run.cv} folds, {grouping.words()}, "
          f"{len(ds.y)} samples, {result.seconds:.1f} s)")
    print("=" * 60)
    frame = {n: s for k, by in result.scores.items() if registry_kind(k).frame_figures for n, s in by.items()}
    print_frame_table(ds, frame, grouping)
    print_robustness({n: s for n, s in frame.items() if not s.error and s.removed}, result.folds)
    for name, problem in result.skipped.items():
        print(f"No {registry_kind(name).title} for {ds.category}: {problem}.\n")
    others = {n: s for k, by in result.scores.items() if not registry_kind(k).frame_figures for n, s in by.items()}
    if others:
        print_recording_table(result, frame, others)


def registry_kind(name):
    from MediaPipe_Dataset import registry
    return registry.by_name(name)


def print_frame_table(ds, scores, grouping):
    fitted = {name: s for name, s in scores.items() if not s.error}
    best = max(fitted, key=lambda n: np.mean(fitted[n].accuracy), default=None)
    print(f"  {'model':<20}{'accuracy % (mean +- std)':>26}{'macro F1':>10}{'per recording %':>17}"
          f"{'seconds':>9}   per fold")
    for name, s in scores.items():
        if s.error:
            print(f"  {name:<20}could not be fitted ({s.error}); left out")
            continue
        n_clips, right = s.clip_figures()
        folds_text = " ".join(f"{100 * a:.1f}" for a in s.accuracy)
        clip_text = f"{100 * right / n_clips:.2f}" + ("v" if s.voted else " ")
        print(f"{'*' if name == best else ' '} {name:<20}{100 * np.mean(s.accuracy):>17.2f} +- "
              f"{100 * np.std(s.accuracy):<5.2f}{np.mean(s.f1):>10.3f}{clip_text:>17}{s.seconds:>9.1f}   {folds_text}")
    print("* best mean accuracy. Our models: last epoch of each fold (no epoch picked on test data).")
    for name, s in fitted.items():
        if s.subsample:
            print(f"{name}: fitted on a stratified subsample of {s.subsample:,} training frames per fold (above "
                  f"{evaluation.SVC_MAX_TRAIN:,}, its fit time grows about with the square of the frames).")
    if best is not None:
        unit = "clips" if ds.has_clips else "samples"
        print(f"Per recording: the class with the highest mean probability over a clip's frames, over all "
              f"{fitted[best].clip_figures()[0]} test {unit} of all folds"
              + ("" if ds.has_clips else " (no clips: each sample is its own clip)")
              + (" (a clip split over folds: all its frames, each from the fold that tested it)"
                 if grouping.name == "none" and ds.has_clips else "")
              + ("; v: no probabilities, so a majority vote of frame predictions"
                 if any(s.voted for s in fitted.values()) else "") + ".")


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


def print_recording_table(result, frame, others):
    """Per recording: the frame models' votes and the models of the other kinds, on the same
    folds and recordings, and which verdict the figures advise."""
    ds = result.ds
    print(f"Per recording, {ds.category}: the frame models' votes and the models that judge windows "
          f"(the same folds; the recordings with timestamps):")
    for name, s in frame.items():
        if not s.error:
            n, right = s.clip_figures()
            print(f"  {name + ' (frame vote)':<34}{100 * right / n:>8.2f}%  of {n}")
    for name, s in others.items():
        if s.error:
            print(f"  {name:<34}could not be fitted ({s.error}); left out")
            continue
        n, right = s.clip_figures()
        print(f"  {name:<34}{100 * right / max(n, 1):>8.2f}%  of {n}{s.seconds:>9.1f} s")
    verdict, why = result.advice
    if verdict is not None:
        trusted = next(k for k in result.ours() if k.verdict == verdict)
        print(f"  Advice: trust {trusted.vote_words} for {ds.category}: {why}.")
    print()


def indistinct_words(found):
    """Why no suspect label is listed when the classes look alike (found: suspects.Suspects)."""
    return (f"the two classes cannot be told apart by the nearest neighbours of their poses (out-of-fold balanced "
            f"accuracy {100 * found.balanced:.1f}%, and {100 * found.p:.0f}% of labellings with the recordings' "
            f"labels shuffled do as well), so any list of suspects would be arbitrary; if the models do no better "
            f"than chance either, check that each class folder holds its own class")


def print_report(result, ds, suspects):
    """The report's path (or why it could not be written), and the suspect labels in a line."""
    path = result.report
    if result.indistinct is not None:
        print(f"Suspect labels: none listed: {indistinct_words(result.indistinct)}.")
    elif len(suspects):
        recordings = len(set(ds.groups[suspects]))
        print(f"Suspect labels: {len(suspects)} training sample(s) of {recordings} recording(s) look like the "
              f"other class to their nearest neighbours (e.g. {ds.files[suspects[0]]}); check them"
              + (" in the report" if path else "") + ".")
    else:
        print("Suspect labels: none.")
    if result.report_error:
        print(f"error: {ds.category}: could not write the report ({result.report_error}); the models were "
              f"written", file=sys.stderr)
    if path:
        print(f"Report: {path} ({result.report_seconds:.1f} s; training curves, confusion matrices, recordings over time, the poses misjudged, "
              f"suspect labels)\n")

"""What train.py does with one category in a normal run, for every registered kind alike:
split, fit, validate, export, advise, report (--cv is crossval.py's). It returns a
CategoryResult whose to_json() is the category's part of --json; reports.py prints it and
pictures.py draws it. torch, numpy and scikit-learn.
"""
import dataclasses
import os
import time

import numpy as np
import torch

from MediaPipe_Dataset import evaluation, faults, pictures, registry, reports, store, suspects, training
from MediaPipe_Dataset.config import TrainingConfig, as_dict
from MediaPipe_Dataset.evaluation import Grouping
from MediaPipe_Dataset.kinds import Kind, Units
from MediaPipe_Dataset.model import KeypointNormalizer
from MediaPipe_Dataset.samples import DataError, clip_scores, sample_digest


@dataclasses.dataclass
class Run:
    """What a train.py run does beyond training each model: its folders, which kinds it may
    train (the first registered is always on), whether it writes the report, the settings."""
    data_dir: str = "MediaPipe_Dataset"
    models_dir: str = "models"
    settings: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    off: tuple = ()                 # names of kinds turned off (--no-<name>)
    report: bool = True
    cv: int = 0
    current: str = None             # the category being trained, for the interrupt message
    written: list = dataclasses.field(default_factory=list)    # categories whose files were swapped in

    def kinds(self):
        return list(registry.KINDS)

    def turned_off(self, kind):
        return f"--no-{kind.name}" if kind.name in self.off else None


@dataclasses.dataclass
class Validation:
    """What a normal run measured of one kind's model on the validation split."""
    kind: Kind
    units: Units                  # what it judged (frames, windows)
    probabilities: np.ndarray     # (n, 2)
    history: list
    best: int
    seconds: float
    batch_size: int
    n_train: int
    removed: dict = None          # {k: accuracy with k points removed}, for kinds that measure it
    written: dict = None          # store.write_model's answer

    def __post_init__(self):
        self.clip_names = np.unique(self.units.groups)
        self.clip_true, self.clip_pred = clip_scores(self.units.groups, self.units.y, self.probabilities)

    @property
    def accuracy(self):
        return float((self.probabilities.argmax(1) == self.units.y).mean())

    @property
    def clip_accuracy(self):
        return float((self.clip_true == self.clip_pred).mean())

    def clip_accuracy_on(self, names):
        """Accuracy per recording on the recordings `names` only."""
        keep = np.isin(self.clip_names, names)
        return float((self.clip_true[keep] == self.clip_pred[keep]).mean())


def advise(validations):
    """(verdict, why) from {kind name: Validation}: the kind whose verdicts per recording were the
    most accurate against the first kind's vote on the same recordings; a tie goes to the
    first kind, the simpler and faster. Figures only where another kind was measured."""
    found = list(validations.values())
    if len(found) < 2:
        return found[0].kind.verdict if found else None, f"no other model than the {found[0].kind.title}" \
            if found else "no model"
    base, best, words = found[0], (found[0], None), []
    for v in found[1:]:
        n = len(v.clip_names)
        mine, theirs = v.clip_accuracy, base.clip_accuracy_on(v.clip_names)
        words.append(f"per recording {v.kind.vote_words} scored {100 * mine:.1f}% and {base.kind.vote_words} "
                     f"{100 * theirs:.1f}% on the same {n} recordings (one recording = {100 / max(n, 1):.1f} points)"
                     + ("; a tie goes to " + base.kind.vote_words if mine == theirs else ""))
        if mine > theirs and (best[1] is None or mine - theirs > best[1]):
            best = (v, mine - theirs)
    return best[0].kind.verdict, "; ".join(words)


@dataclasses.dataclass
class CategoryResult:
    """A normal run's outcome for one category."""
    ds: object
    grouping: Grouping
    n_train: int
    n_val: int
    validations: dict = dataclasses.field(default_factory=dict)    # kind name -> Validation
    skipped: dict = dataclasses.field(default_factory=dict)        # kind name -> why it has no model
    warnings: dict = dataclasses.field(default_factory=dict)       # kind name -> Kind.warnings
    fault_validations: dict = dataclasses.field(default_factory=dict)   # kind name -> its fault model's Validation
    faults_skipped: str = None    # why a category with faults has no fault model
    advice: tuple = (None, None)
    report: str = None
    report_error: str = None      # why the report could not be written
    report_seconds: float = None  # what drawing and writing it took
    suspects: np.ndarray = None
    indistinct: object = None     # suspects.Suspects, when its neighbours cannot tell the classes apart

    def to_json(self):
        """--json's figures of the category: the first kind's at the top, each other kind's under
        its name (null, with <name>_skipped, when it has no model), the advice, the report."""
        kinds, result = registry.KINDS, {}
        for i, kind in enumerate(kinds):
            v = self.validations.get(kind.name)
            figures = None if v is None else {**kind.figures(v), "onnx_nodes": v.written["nodes"]}
            if i == 0:
                result.update(figures or {})
                continue
            if v is not None and kinds[0].name in self.validations:
                figures[f"{kinds[0].name}_vote_clip_accuracy"] = round(
                    self.validations[kinds[0].name].clip_accuracy_on(v.clip_names), 6)
            result[kind.name] = figures
            if kind.name in self.skipped:
                result[f"{kind.name}_skipped"] = self.skipped[kind.name]
            if self.warnings.get(kind.name):
                result[f"{kind.name}_warnings"] = self.warnings[kind.name]
        for name, v in self.fault_validations.items():
            target = result if name == kinds[0].name else result[name]
            target.update(val_fault_accuracy=round(v.fault_accuracy[0], 6), val_fault_clip_accuracy=round(
                v.fault_accuracy[1], 6), n_val_fault_clips=len(v.clip_names), fault_names=list(v.kind.classes),
                fault_verdicts=faults.recording_verdicts(v))
        if self.faults_skipped:
            result["faults_skipped"] = self.faults_skipped
        result.update(warning=self.grouping.warning, grouping=self.grouping.name, n_subjects=self.grouping.n_subjects,
                      advised_verdict=self.advice[0], advice=self.advice[1], report=self.report,
                      **({"report_error": self.report_error} if self.report_error else {}),
                      suspect_labels=[self.ds.files[i] for i in self.suspects],
                      **({"classes_indistinct": {"balanced_accuracy": round(self.indistinct.balanced, 6),
                                                 "p": round(self.indistinct.p, 6)}} if self.indistinct else {}))
        return result


# ----------------------------------------------------------------------------- a normal run
def validate(kind, model, ds, data, settings):
    """(Units, probabilities, points-removed figures) of a trained model on validation data;
    raise DataError if it diverged."""
    units, probs = kind.judge(model, data, settings)
    if not (training.finite_model(model) and np.isfinite(probs).all()):
        raise DataError(f"{ds.category}: training diverged (the {kind.title}'s weights or outputs are not finite; "
                        f"--lr {settings.lr:g} may be too high); {kind.paths_name(ds.category)} not written, "
                        f"earlier models kept")
    predict = lambda x: training.probabilities(model, x, settings.device).argmax(1)
    return units, probs, kind.robustness(predict, units, settings.seed)


def record_of(v, ds, run, model, val_idx, grouping, advice):
    """The training record: the kind, its whole configuration, which samples were held out, the
    figures, the advice so far and the settings."""
    return {"kind": v.kind.name, "category": ds.category, "class_names": list(v.kind.classes),
            "data_dir": os.path.abspath(run.data_dir),
            "model": {"class": type(model).__name__, "config": model.config},
            "config": {"training": as_dict(run.settings), **v.kind.config(model)},
            "val_samples": [ds.files[i] for i in val_idx], "val_sample_sha1": [sample_digest(x) for x in ds.X[val_idx]],
            **v.kind.figures(v), "best_epoch": v.best, "advised_verdict": advice[0], "advice": advice[1],
            "split_warning": grouping.warning, "grouping": grouping.name, "n_subjects": grouping.n_subjects,
            "settings": as_dict(run.settings), "versions": {"torch": torch.__version__, "numpy": np.__version__}}


def fit_kind(kind, ds, train_idx, val_idx, settings, log):
    """(model, Validation) of one kind's model of a category, fitted and measured."""
    start = time.perf_counter()
    model, history, best, batch_size = kind.fit(kind.data(ds, train_idx), kind.data(ds, val_idx), settings, log)
    seconds = time.perf_counter() - start
    units, probs, removed = validate(kind, model, ds, kind.data(ds, val_idx), settings)
    return model, Validation(kind, units, probs, history, best, seconds, batch_size, len(train_idx), removed)


def stage_kind(model, v, ds, run, val_idx, grouping, advice, swap):
    """Export one kind's model into the swap (store.stage_model); what will be written."""
    metadata = v.kind.metadata(ds, model.cpu(), run.settings)
    if grouping.warning:
        metadata["split_warning"] = grouping.warning
    written = store.stage_model(model, v.kind.paths_name(ds.category), swap, metadata,
                                record_of(v, ds, run, model, val_idx, grouping, advice),
                                v.kind.parity_inputs(v.units), v.kind.input_shape(model.config))
    model.to(run.settings.device)
    return written


def stage_report(result, own, swap):
    """The report's page into the swap; None, or why it cannot be written (one phrase)."""
    path = store.report_path(swap.folder, result.ds.category)
    try:
        path = os.path.realpath(path)      # through a link, the link stays
        text = pictures.category_page(result, own)
        if os.path.exists(path) and not os.path.isfile(path):
            return f"{path} is {'a folder' if os.path.isdir(path) else 'not a regular file'}"
        with open(swap.temp(path), "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        return f"{path}: {store.write_failure(e, path)}"
    result.report = store.report_path(swap.folder, result.ds.category)
    return None


def fault_view(ds, result):
    """The FaultView of ds, or None when it gets no fault model; a category with faults but too
    few says why in one line (and in result.faults_skipped)."""
    view, why = faults.view(ds)
    if why:
        result.faults_skipped = why
        reports.print_faults_skipped(ds, why)
    return view


def fit_faults(ds, run, result, train_idx, val_idx, log):
    """A fault model for each kind trained (faults.py), on the incorrect samples of the same
    split that name a fault; [(model, Validation, FaultView, validation rows)] to write."""
    view = fault_view(ds, result)
    if view is None:
        return []
    train_v, val_v = view.index(train_idx), view.index(val_idx)
    written = []
    for name in list(result.validations):
        kind = faults.fault_kind(result.validations[name].kind, view.names)
        problem = kind.problem(view, result.grouping, (train_v, val_v))
        if not problem and (not len(val_v) or len(set(view.y[train_v])) < 2):
            problem = "the split leaves no incorrect sample naming a fault to validate on, or one fault only to train on"
        if problem:
            result.faults_skipped = problem
            reports.print_faults_skipped(ds, problem, kind)
            continue
        model, v = fit_kind(kind, view, train_v, val_v, run.settings, log)
        v.fault_accuracy = faults.accuracy(v, view)
        result.fault_validations[name] = v
        reports.print_fault_validation(view, v, run.settings)
        written.append((model, v, view, val_v))
    return written


def train_category(ds, run, log=None):
    """Split, then train and measure every kind the category can have; export them and the
    report, and swap all their files in at once (store.Swap); its CategoryResult."""
    s = run.settings
    train_idx, val_idx, grouping = evaluation.split(ds, s.val_split, s.seed, s.group_by)
    reports.print_plan(ds, s, len(train_idx), len(val_idx), s.batch_for(len(train_idx)), grouping)
    result = CategoryResult(ds, grouping, len(train_idx), len(val_idx))
    models = {}
    for kind in run.kinds():
        if not run.turned_off(kind):
            result.warnings[kind.name] = reports.print_kind_warnings(ds, kind)
        problem = run.turned_off(kind) or kind.problem(ds, grouping, (train_idx, val_idx))
        if problem:
            result.skipped[kind.name] = problem
            reports.print_skipped(ds, kind, problem, store.model_paths(run.models_dir, kind.paths_name(ds.category)))
            continue
        models[kind.name], result.validations[kind.name] = fit_kind(kind, ds, train_idx, val_idx, s, log)
        result.advice = advise(result.validations)
        reports.print_validation(ds, result, kind, s)
    reports.print_advice(ds, result)
    written = [(models[name], v, ds, val_idx) for name, v in result.validations.items()]
    written += fit_faults(ds, run, result, train_idx, val_idx, log)
    found = suspects.find_suspects(ds, train_idx, s.seed, KeypointNormalizer())
    result.suspects, result.indistinct, own = found.index, found if found.indistinct else None, found.own
    swap = store.Swap(run.models_dir)
    try:
        for model, v, data, index in written:
            v.written = stage_kind(model, v, data, run, index, grouping, result.advice, swap)
        if run.report:
            began = time.perf_counter()
            result.report_error = stage_report(result, own, swap)
            result.report_seconds = time.perf_counter() - began
        swap.commit()
    finally:
        swap.discard()
        if swap.committed:
            run.written.append(ds.category)
    for _, v, _, _ in written:
        v.written["removed_int8"] = store.remove_stale_int8(run.models_dir, v.written["name"], v.written["record_sha1"])
        reports.print_files(v.written, v.kind)
    reports.print_report(result, ds, result.suspects)
    return result

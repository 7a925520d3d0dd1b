"""What train.py does with one category, for every registered kind alike: a normal run (split,
fit, validate, export, advise, report) and --cv (the same folds for every model of every
kind). Each returns a result whose to_json() is the category's part of --json; reports.py
prints it and pictures.py draws it. torch, numpy and scikit-learn.
"""
import dataclasses
import os
import time
import warnings

import numpy as np
import torch

from MediaPipe_Dataset import evaluation, faults, pictures, registry, reports, store, suspects, training
from MediaPipe_Dataset.config import TrainingConfig, as_dict
from MediaPipe_Dataset.evaluation import Grouping, Scores
from MediaPipe_Dataset.kinds import Kind, Units
from MediaPipe_Dataset.model import KeypointNormalizer
from MediaPipe_Dataset.samples import CLASS_NAMES, DataError, clip_scores, progress, sample_digest


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
    why = faults.problem(ds)
    if why:
        result.faults_skipped = why
        reports.print_faults_skipped(ds, why)
    return faults.FaultView(ds, faults.fault_names(ds)) if why is None else None


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


# ----------------------------------------------------------------------------- cross-validation
@dataclasses.dataclass
class CvResult:
    """--cv's outcome for one category: {kind name: {model name: Scores}} on the same folds."""
    ds: object
    grouping: Grouping
    folds: list
    scores: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    advice: tuple = (None, None)
    faults: dict = dataclasses.field(default_factory=dict)     # model name -> faults.cv_figures
    faults_skipped: str = None

    def ours(self):
        """{kind: our model's Scores} of the kinds measured (each kind's first model is ours)."""
        return {registry.by_name(k): next(iter(s.values())) for k, s in self.scores.items() if s}

    def to_json(self):
        """{model name: figures} of every model; our models' entries (each kind's first) also hold
        the advice: advised_verdict and advice."""
        result = {}
        for by_kind in self.scores.values():
            for i, (name, s) in enumerate(by_kind.items()):
                result[name] = s.to_json(self.grouping)
                if i == 0:
                    result[name].update(advised_verdict=self.advice[0], advice=self.advice[1])
        if self.faults:
            result["faults"] = self.faults
        if self.faults_skipped:
            result["faults_skipped"] = self.faults_skipped
        return result


def cv_advice(result):
    """(verdict, why): as advise, from our models' out-of-fold verdicts per recording."""
    figures = [(kind, *s.clip_figures()) for kind, s in result.ours().items() if not s.error]
    if len(figures) < 2:
        return (figures[0][0].verdict if figures else None), "no other model of ours was measured"
    (base, n0, r0), best, words = figures[0], (figures[0][0], 0.0), []
    for kind, n, right in figures[1:]:
        mine, theirs = right / max(n, 1), r0 / max(n0, 1)
        words.append(f"per recording {kind.vote_words} scored {100 * mine:.1f}% of {n} recordings and "
                     f"{base.vote_words} {100 * theirs:.1f}% of {n0} (one recording = {100 / max(n, 1):.1f} points)"
                     + ("; a tie goes to " + base.vote_words if mine == theirs else ""))
        if mine - theirs > best[1]:
            best = (kind, mine - theirs)
    return best[0].verdict, "; ".join(words)


def score_fold(kind, model, data_train, data_test, seed, points_removed=True):
    """(Units, probabilities, voted, seconds, points removed or None, rows fitted on) of one
    model on a fold."""
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # e.g. a coordinate never seen in this fold
        fitted = kind.cv_fit(model, data_train)
    units, probs, voted = kind.cv_predict(fitted, data_test)
    seconds = time.perf_counter() - began
    removed = kind.robustness(fitted.predict, units, seed) if points_removed and kind.frame_figures else None
    rows = getattr(fitted, "n_fit_rows_", None)
    return units, probs, voted, seconds, removed, rows if rows is not None and rows < len(data_train) else None


def fold_scores(kind, models, ds, train, test, seed, points_removed=True):
    """{model name: score_fold's figures, or why it could not be fitted or used} of every model
    on one fold, None for an empty test fold; one task of cross_validate_kind's workers."""
    torch.set_num_threads(1)          # as train.py: these models are tiny, and the folds share the cores
    data_train, data_test = kind.data(ds, train), kind.data(ds, test)
    if not len(data_test):
        return None
    figures = {}
    for name, model in models.items():
        try:
            figures[name] = score_fold(kind, model, data_train, data_test, seed, points_removed)
        except ValueError as e:    # e.g. KNeighbors with fewer training samples than neighbours
            figures[name] = str(e).splitlines()[0][:160]
    return figures


PARALLEL_MIN_SAMPLES = 5000   # below, starting worker processes costs more than they save (bundled set, 3
                              # folds: 22 s in this process, 29 s with 2 workers)


def fold_jobs(tasks, samples):
    """Worker processes for the fits: every core this process may use, at most one per task;
    none (this process) for a small dataset."""
    if samples < PARALLEL_MIN_SAMPLES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, tasks))


@dataclasses.dataclass
class CvPlan:
    """One kind's models on the folds of one dataset (a category's, or its FaultView), scored
    into result.scores[kind.name]; table: which printed table it belongs to."""
    kind: Kind
    ds: object
    result: "CvResult"
    table: str
    points_removed: bool = True
    models: dict = None


def cv_tasks(plans, parallel):
    """[(plan index, fold, {name: model})] to score. In this process: one task per fold of each
    plan in turn, all its models. In workers: one task per model and fold, every plan's own
    model (the first, the longest to fit) before any peer, so that the cores are not left with
    one long fit at the end of a table (5 folds on 2 cores would leave one core idle for a whole
    fit), and every model's folds in fold order."""
    folds = lambda plan: range(len(plan.result.folds))
    if not parallel:
        return [(i, fold, plan.models) for i, plan in enumerate(plans) for fold in folds(plan)]
    ours = [(i, fold, dict([next(iter(plan.models.items()))])) for i, plan in enumerate(plans) for fold in folds(plan)]
    return ours + [(i, fold, {name: model}) for i, plan in enumerate(plans) for name, model in list(plan.models.items())[1:]
                   for fold in folds(plan)]


def cross_validate(plans, settings, finished=None):
    """Every model of every plan on its folds: the fits of all of them in one pool of worker
    processes on a large dataset (joblib, a process per core; each fit's figures are the same in
    any process), so that the frame table's fits and the which-fault table's keep both cores
    busy to the end. A model that cannot be fitted or used on a fold (a peer on too few samples)
    keeps the reason and is left out of the later folds' figures. finished(table) is called once
    every fit of that table's plans is in, tables in the order of their first plan."""
    from joblib import Parallel, delayed
    if not plans:
        return
    for plan in plans:
        plan.models = plan.kind.cv_models(settings)
        plan.result.scores[plan.kind.name] = {name: Scores() for name in plan.models}
    samples = max(len(plan.ds.y) for plan in plans)
    jobs = fold_jobs(sum(len(plan.result.folds) * len(plan.models) for plan in plans), samples)
    tasks = cv_tasks(plans, jobs > 1)
    calls = (delayed(fold_scores)(plans[i].kind, chosen, plans[i].ds, *plans[i].result.folds[fold],
                                  settings.seed * 1000 + fold, plans[i].points_removed) for i, fold, chosen in tasks)
    done = progress(Parallel(n_jobs=jobs, return_as="generator")(calls), total=len(tasks),
                    desc=f"{plans[0].ds.category} " + ("fits" if jobs > 1 else "folds"),
                    unit="fit" if jobs > 1 else "fold")
    left = {}
    for i, _, _ in tasks:
        left[plans[i].table] = left.get(plans[i].table, 0) + 1
    for (i, fold, _), figures in zip(tasks, done):
        scores = plans[i].result.scores[plans[i].kind.name]
        for name, got in (figures or {}).items():
            if scores[name].error:
                continue
            if isinstance(got, str):
                scores[name].error = f"fold {fold + 1}: {got}"
                continue
            units, probs, voted, seconds, removed, rows = got
            scores[name].add_fold(units, probs, voted, seconds, plans[i].kind.frame_figures, removed, rows)
        left[plans[i].table] -= 1
        if not left[plans[i].table] and finished:
            finished(plans[i].table)


def cross_validate_kind(kind, ds, result, settings, points_removed=True):
    """Every model of one kind on the result's folds (cross_validate with one plan)."""
    cross_validate([CvPlan(kind, ds, result, kind.name, points_removed)], settings)


def cv_category(ds, run):
    """Cross-validate every kind of one category, and their fault models, on the same folds,
    all fits in one pool (cross_validate); each table is printed once its fits are in. Its
    CvResult."""
    s = run.settings
    folds, grouping = evaluation.cv_folds(ds, run.cv, s.seed, s.group_by)
    reports.print_grouping_warning(ds, grouping)
    result = CvResult(ds, grouping, folds)
    plans = []
    for kind in run.kinds():
        if not run.turned_off(kind):
            reports.print_kind_warnings(ds, kind)
        problem = run.turned_off(kind) or kind.problem(ds, grouping)
        if problem:
            result.skipped[kind.name] = problem
            continue
        plans.append(CvPlan(kind, ds, result, "frame"))
    fault_table = FaultTable(ds, result, plans)
    start = time.perf_counter()

    def finished(table):
        if table == "frame":
            result.seconds = time.perf_counter() - start
            result.advice = cv_advice(result)
            reports.print_cv(result, run)
        else:
            fault_table.print()

    cross_validate(plans + fault_table.plans, s, finished)
    for table, planned in (("frame", plans), ("faults", fault_table.plans)):
        if not planned:            # nothing to fit: printed all the same
            finished(table)
    return result


class FaultTable:
    """The which-fault table of --cv: each planned kind's fault model and its peers on the
    incorrect samples that name a fault (a FaultView), on the same folds (faults.cv_figures).
    No points-removed figures: the table shows none, and at 100,000 frames they cost the peers
    46 s of each fold's 136 (SVC's 7-class predictions 32 s)."""

    def __init__(self, ds, result, plans):
        self.ds, self.result, self.plans, self.skipped = ds, result, [], []
        self.why = faults.problem(ds)      # '': no sample names a fault; None: the category gets fault models
        self.view = faults.FaultView(ds, faults.fault_names(ds)) if self.why is None else None
        if self.view is None:
            return
        inner = CvResult(self.view, result.grouping, [(self.view.index(a), self.view.index(b)) for a, b in result.folds])
        for plan in plans:
            kind = faults.fault_kind(plan.kind, self.view.names)
            problem = kind.problem(self.view, result.grouping)
            if problem:
                self.skipped.append((kind, problem))
            else:
                self.plans.append(CvPlan(kind, self.view, inner, "faults", points_removed=False))

    def print(self):
        """Why there is no table or model, or the table (after the frame table, as before)."""
        result, ds = self.result, self.ds
        if self.why:
            result.faults_skipped = self.why
            reports.print_faults_skipped(ds, self.why)
        if self.view is None:
            return
        for kind, problem in self.skipped:
            result.faults_skipped = problem
            reports.print_faults_skipped(ds, problem, kind)
        for plan in self.plans:
            for model, scores in plan.result.scores[plan.kind.name].items():
                result.faults[model] = faults.cv_figures(scores, self.view, plan.kind.frame_figures)
        reports.print_fault_table(ds, self.view, result.faults)

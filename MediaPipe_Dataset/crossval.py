"""--cv for one category: every registered kind's own model and its scikit-learn peers, and
their fault models, on the same folds (people or recordings kept whole); the fits of all of
them in one pool of worker processes on a large dataset. Returns a CvResult whose to_json() is
the category's part of --json; reports.py prints its tables. torch, numpy, scikit-learn,
joblib.
"""
import dataclasses
import os
import time
import warnings

import torch

from MediaPipe_Dataset import evaluation, faults, registry, reports
from MediaPipe_Dataset.evaluation import Grouping, Scores
from MediaPipe_Dataset.kinds import Kind
from MediaPipe_Dataset.samples import progress


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
        self.view, self.why = faults.view(ds)     # why: '' when no sample names a fault
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

"""How the models are measured: splits that keep recordings whole, accuracy with points
removed, the scikit-learn peers, and the scores of cross-validation.

numpy and scikit-learn (no torch): train.py trains and cross-validates with these, and
quantize.py measures its INT8 models with them.
"""
import dataclasses

import numpy as np
from sklearn.base import BaseEstimator, clone

from MediaPipe_Dataset.samples import CLASS_NAMES, NUM_COORDS, NUM_POINTS, TORSO, DataError, clip_scores

# ----------------------------------------------------------------------------- splits
FRAME_SPLIT_WARNING = ("validation frames come from the training recordings (a class has too few clips to keep "
                       "clips whole), so the accuracy shown is optimistic")
SUBJECT_FALLBACK_WARNING = ("too few subjects ({n}) to keep each person on one side{where}; {instead} kept whole "
                            "instead, so one person may be on both sides and the figures flatter the model for "
                            "people it has not seen")
GROUPINGS = ("subject", "clip", "none")     # coarsest first


@dataclasses.dataclass
class Grouping:
    """What a split kept whole: `name` is subject, clip or none; groups (N,) the group of each
    sample; warning, a sentence when the split had to take a finer grouping than asked."""
    name: str
    groups: np.ndarray
    warning: str = None
    n_subjects: int = 0

    def words(self):
        """How the split treated recordings and people, for the reports."""
        if self.name == "subject":
            return f"subjects kept whole, {self.n_subjects} subjects"
        if self.name == "clip":
            return "clips kept whole"
        return "frames, clips split" if self.warning else "stratified"


def groups_of(dataset, name):
    """Each sample's group under a grouping: its person (person_groups), its recording
    (Dataset.groups), or itself."""
    if name == "subject":
        return person_groups(dataset.subjects, dataset.groups)
    return dataset.groups if name == "clip" else np.array([f"sample:{i}" for i in range(len(dataset.y))])


def person_groups(subjects, recordings):
    """The groups that keep people and recordings whole at once: the connected components of
    the graph joining each sample's recording to its subject. A recording whose subject is on
    some of its frames only goes with that person; a recording naming two people joins them;
    a recording without any subject is a group of its own. A group is named `subject:` and
    its people, or by its recording."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    rec_names, rec = np.unique(recordings, return_inverse=True)
    people = np.array([s is not None for s in subjects])
    names, person = np.unique(np.array([s for s in subjects if s is not None], dtype=object).astype(str),
                              return_inverse=True)
    n = len(rec_names) + len(names)
    edges = coo_matrix((np.ones(people.sum()), (rec[people], len(rec_names) + person)), shape=(n, n))
    _, component = connected_components(edges, directed=False)
    members = {}
    for i, c in enumerate(component[len(rec_names):]):
        members.setdefault(c, []).append(names[i])
    label = {c: "subject:" + "+".join(sorted(m)) for c, m in members.items()}
    return np.array([label.get(component[r], rec_names[r]) for r in rec])


def groups_per_class(y, groups):
    """How many groups hold samples of each class (0, then 1)."""
    return [len(set(groups[y == label])) for label in (0, 1)]


def subject_warning(n_subjects, k, instead):
    """The sentence said when people cannot be kept whole."""
    return SUBJECT_FALLBACK_WARNING.format(n=n_subjects, where=f" in {k} folds" if k > 2 else "", instead=instead)


def choose_grouping(dataset, k, group_by="auto"):
    """The coarsest grouping the data has (subject, then clip, then none), or the one asked
    for, under which each class is in at least k groups; a finer one with a warning when
    that is not so. Raises DataError for a grouping the data does not have."""
    has = {"subject": dataset.has_subjects, "clip": dataset.has_clips, "none": True}
    if group_by != "auto" and not has[group_by]:
        raise DataError(f"{dataset.root}: --group-by {group_by}, but no sample has a `{group_by}` field")
    start = GROUPINGS.index(group_by) if group_by != "auto" else min(i for i, g in enumerate(GROUPINGS) if has[g])
    n_subjects = len({s for s in dataset.subjects if s is not None})
    warning = None
    for name in GROUPINGS[start:]:
        groups = groups_of(dataset, name)
        if name == "none" or (has[name] and min(groups_per_class(dataset.y, groups)) >= k):
            break
        if name == "subject":
            warning = subject_warning(n_subjects, k, "clips" if dataset.has_clips else "single frames")
    if name == "none" and dataset.has_clips and group_by != "none":
        warning = FRAME_SPLIT_WARNING
    return Grouping(name, groups, warning, n_subjects if name == "subject" else 0)


def require_groups(dataset, needed, purpose, grouping):
    """Raise DataError unless each class is in `needed` groups of the grouping (samples, for none)."""
    for label, n_groups in enumerate(groups_per_class(dataset.y, grouping.groups)):
        if n_groups < needed:
            unit = {"subject": "subjects", "clip": "clips", "none": "samples"}[grouping.name]
            raise DataError(f"{dataset.root}: only {n_groups} {unit} of class "
                            f"{CLASS_NAMES[label]}, too few {purpose} (need at least {needed})")


def fold_plan(fraction, n_groups):
    """(k, m): validation = m of k group folds, with m / k closest to fraction (fewest folds
    on a tie), k at most the number of groups and 20: 0.2 -> 1 of 5, 0.4 -> 2 of 5."""
    options = [(abs(m / k - fraction), k, m) for k in range(2, min(n_groups, 20) + 1) for m in range(1, k)]
    return min(options)[1:]


def both_sides(y, folds):
    """Whether each class is on both sides of every (train, test) fold."""
    return all(set(y[train]) == set(y[test]) == {0, 1} for train, test in folds)


def class_folds(y, groups, k, seed):
    """k folds in which each class's groups are dealt out whole over the folds (GroupKFold
    within each class), so that every fold holds each class when each class has k groups."""
    from sklearn.model_selection import GroupKFold
    fold_of = np.empty(len(y), dtype=int)
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, test) in enumerate(splitter.split(rows, groups=groups[rows])):
            fold_of[rows[test]] = i
    return [(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(k)]


def class_split(y, groups, fraction, seed):
    """(train, validation): from each class, round(fraction x its groups) of its groups for
    validation, at least 1 and at most all but 1 (GroupShuffleSplit within each class)."""
    from sklearn.model_selection import GroupShuffleSplit
    val = []
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        n = len(set(groups[rows]))
        splitter = GroupShuffleSplit(n_splits=1, test_size=min(max(round(fraction * n), 1), n - 1), random_state=seed)
        val.append(rows[next(splitter.split(rows, groups=groups[rows]))[1]])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(y)), val), val


def subject_folds(y, groups, k, seed):
    """k StratifiedGroupKFold folds over people (a subject may have both classes), or None when
    no shuffle (seed, seed + 1, ... seed + 19) puts each class on both sides of every fold."""
    from sklearn.model_selection import StratifiedGroupKFold
    for attempt in range(20):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + attempt)
        found = list(splitter.split(np.zeros(len(y)), y, groups))
        if both_sides(y, found):
            return found
    return None


def folds(dataset, k, seed, grouping):
    """k stratified (train, test) folds of the dataset's samples, each group of the grouping
    inside one fold: StratifiedGroupKFold over clips (class_folds when it leaves a class out
    of a fold) or subjects (subject_folds), StratifiedKFold over single frames."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    if grouping.name == "none":
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(dataset.X, dataset.y))
    if grouping.name == "subject":
        return subject_folds(dataset.y, grouping.groups, k, seed)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    found = list(splitter.split(dataset.X, dataset.y, grouping.groups))
    return found if both_sides(dataset.y, found) else class_folds(dataset.y, grouping.groups, k, seed)


def with_subject_fallback(dataset, k, grouping, make):
    """make(grouping) -> folds or None; when subjects cannot be split with each class on both
    sides, the same with clips, and a warning saying so."""
    found = make(grouping)
    if found is None and grouping.name == "subject":
        finer = choose_grouping(dataset, k, "clip" if dataset.has_clips else "none")
        warning = subject_warning(grouping.n_subjects, 2, "clips")
        grouping = Grouping(finer.name, finer.groups, warning if finer.name == "clip" else finer.warning)
        found = make(grouping)
    return found, grouping


def split(dataset, val_split, seed, group_by="auto"):
    """(train, validation indices, Grouping): stratified, with whole groups (people, clips or
    single frames; choose_grouping) on one side, m of k folds. Each class is on both sides
    whenever it is in two groups: when the folds or StratifiedShuffleSplit cannot manage
    that, class_split does (clips, frames), or the clips do (people)."""
    from sklearn.model_selection import StratifiedShuffleSplit
    grouping = choose_grouping(dataset, 2, group_by)
    require_groups(dataset, 2, "to split into training and validation", grouping)

    def make(grouping):
        if grouping.name == "none":
            try:
                splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_split, random_state=seed)
                train, val = next(splitter.split(dataset.X, dataset.y))
            except ValueError:           # fewer validation samples than classes
                train = val = np.array([], dtype=int)
        else:
            k, m = fold_plan(val_split, len(set(grouping.groups)))
            try:
                found = folds(dataset, k, seed, grouping)
            except ValueError:           # class_folds: a class in fewer than k groups
                found = [(np.array([], dtype=int),) * 2]
            if found is None:
                return None
            val = np.sort(np.concatenate([test for _, test in found[:m]]))
            train = np.setdiff1d(np.arange(len(dataset.y)), val)
        if not both_sides(dataset.y, [(train, val)]):
            if grouping.name == "subject":
                return None
            train, val = class_split(dataset.y, grouping.groups, val_split, seed)
        return train, val
    (train, val), grouping = with_subject_fallback(dataset, 2, grouping, make)
    return train, val, grouping


def cv_folds(dataset, k, seed, group_by="auto"):
    """(k folds for --cv, Grouping): people or clips kept whole when each class is in k of
    them, then finer groupings, with a warning when it had to go finer than the data has."""
    grouping = choose_grouping(dataset, k, group_by)
    require_groups(dataset, k, f"for {k}-fold cross-validation", grouping)
    found, grouping = with_subject_fallback(dataset, k, grouping, lambda g: folds(dataset, k, seed, g))
    if grouping.warning == FRAME_SPLIT_WARNING:
        grouping.warning = FRAME_SPLIT_WARNING.replace("validation frames", "test frames")
    return found, grouping


# ----------------------------------------------------------------------------- robustness
# Robustness: each test frame is scored again with this many of its points removed at
# random (REMOVAL_DRAWS draws each), the way occlusion loses them in real recordings. A
# larger test fold is scored on a random REMOVAL_MAX_FRAMES of its frames (the same for
# every model): 20 more predictions of every frame would cost a large CV more than fitting.
REMOVED_POINTS = (1, 2, 3, 4)
REMOVAL_DRAWS = 5
REMOVAL_MAX_FRAMES = 2000


def remove_points(X, k, rng):
    """Copy of raw keypoints X (N, 28) with k random present points of each row set to NaN.
    One shoulder or hip, chosen at random, is always kept, so every row can still be placed."""
    X = np.array(X, dtype=np.float32)
    p = X.reshape(len(X), NUM_POINTS, 2)
    present = ~np.isnan(p[:, :, 0])
    keys = np.where(present, rng.random(present.shape), np.inf)
    anchor = np.array(TORSO)[np.where(present[:, TORSO], rng.random((len(X), len(TORSO))), -1).argmax(1)]
    keys[np.arange(len(X)), anchor] = np.inf
    order = np.argsort(keys, axis=1)[:, :k]
    chosen = np.take_along_axis(keys, order, axis=1) < np.inf
    rows = np.broadcast_to(np.arange(len(X))[:, None], order.shape)
    p[rows[chosen], order[chosen]] = np.nan
    return X


def accuracy_with_points_removed(predict, X, y, seed):
    """{k: mean accuracy over REMOVAL_DRAWS draws with k points removed} for k in REMOVED_POINTS,
    on at most REMOVAL_MAX_FRAMES frames of X; the frames and draws depend only on seed, so
    every model is scored on the same frames."""
    if len(X) > REMOVAL_MAX_FRAMES:
        rows = np.random.default_rng([seed, 0]).choice(len(X), REMOVAL_MAX_FRAMES, replace=False)
        X, y = X[rows], y[rows]
    result = {}
    for k in REMOVED_POINTS:
        rng = np.random.default_rng([seed, k])
        result[k] = float(np.mean([(predict(remove_points(X, k, rng)) == y).mean() for _ in range(REMOVAL_DRAWS)]))
    return result


# ----------------------------------------------------------------------------- peers
class Subsampled(BaseEstimator):
    """An estimator fitted on a stratified random subsample of at most max_rows training rows;
    n_fit_rows_ says how many it got."""

    def __init__(self, estimator=None, max_rows=None, random_state=None):
        self.estimator, self.max_rows, self.random_state = estimator, max_rows, random_state

    def fit(self, X, y):
        from sklearn.model_selection import train_test_split
        rows = np.arange(len(y))
        if len(rows) > self.max_rows:
            rows = train_test_split(rows, train_size=self.max_rows, stratify=y, random_state=self.random_state)[0]
        self.n_fit_rows_ = len(rows)
        self.estimator_ = clone(self.estimator).fit(X[rows], y[rows])
        return self

    def predict(self, X):
        return self.estimator_.predict(X)


# Above this many training frames, the RBF SVC peer is fitted on a stratified subsample of
# that size: its fit time grows about with the square of the frames (synthetic stance,
# 5,000 / 10,000 / 20,000 / 32,000 frames: 0.4 / 1.2 / 4.6 / 12.7 s on 2 cores).
SVC_MAX_TRAIN = 20000


def peers(seed, normalize):
    """scikit-learn baselines on raw keypoints, normalized first by `normalize` (train.py gives
    the KeypointNormalizer, PoseClassifier's first stage), missing
    points left missing (NaN): HistGradientBoosting takes NaN itself; the others get mean
    imputation plus a missing-value indicator for every coordinate, so they know which
    points are absent, as PoseClassifier does from its presence mask."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC

    def imputed(model):
        fill = make_union(SimpleImputer(keep_empty_features=True), MissingIndicator(features="all"))
        return make_pipeline(FunctionTransformer(normalize), fill, StandardScaler(), model)
    return {
        "LogisticRegression": imputed(LogisticRegression(max_iter=5000)),
        "SVC (RBF)": Subsampled(imputed(SVC()), SVC_MAX_TRAIN, seed),
        "KNeighbors": imputed(KNeighborsClassifier()),
        # VarianceThreshold drops coordinates that are missing in every training sample (the
        # legs of an upper-body recording), which HistGradientBoosting cannot bin.
        "HistGradientBoosting": make_pipeline(FunctionTransformer(normalize), VarianceThreshold(),
                                              HistGradientBoostingClassifier(random_state=seed)),
    }


# ----------------------------------------------------------------------------- export checks
def parity_inputs(x, seed=0):
    """What a model's export is checked on, for inputs x of any kind ((N, 28) frames or (N, T,
    28) windows): x, x with 1 to 4 points removed from every frame, the first input with a
    point half missing (x NaN) and with an infinite coordinate (both count as missing), for
    windows every other frame a gap (all NaN), and inputs with nothing to place (all NaN, and
    only the nose)."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(-1, NUM_COORDS)
    removed = [remove_points(flat, k, rng).reshape(x.shape) for k in REMOVED_POINTS]
    odd = np.repeat(x[:1], 2, axis=0).copy()
    odd.reshape(2, -1, NUM_COORDS)[0, :, 2 * 3] = np.nan
    odd.reshape(2, -1, NUM_COORDS)[1, :, 2 * 4 + 1] = np.inf
    gaps = x.copy()
    if x.ndim == 3:
        gaps[:, ::2] = np.nan
    empty = np.full((2,) + x.shape[1:], np.nan, dtype=np.float32)
    empty.reshape(2, -1, NUM_COORDS)[1, :, :2] = 0.5
    return np.concatenate([x, *removed, odd[:len(x)], *([gaps] if x.ndim == 3 else []), empty]).astype(np.float32)


def deciding(value, goal):
    """value with as many decimals (2 to 6) as it takes not to print as the goal it misses or
    only just reaches: 1.6982 against 1.7 prints as 1.698, not 1.70."""
    for digits in range(2, 7):
        text = f"{value:.{digits}f}"
        if value == goal or float(text) != goal:
            break
    return text


# ----------------------------------------------------------------------------- scores
@dataclasses.dataclass
class Scores:
    """One model's cross-validation figures, fold by fold, and its out-of-fold probabilities
    (each input's from the fold that tested it), from which the verdicts per recording come.
    A model of a kind without per-frame figures (frame_figures) is scored per recording only."""
    accuracy: list = dataclasses.field(default_factory=list)
    f1: list = dataclasses.field(default_factory=list)
    removed: list = dataclasses.field(default_factory=list)     # per fold: {k: accuracy with k points removed}
    parts: list = dataclasses.field(default_factory=list)      # per fold: (keys, groups, labels, probabilities)
    seconds: float = 0.0
    voted: bool = False            # no probabilities: the per-recording verdict is a majority vote
    subsample: int = None          # fitted on a subsample of this many training rows
    error: str = None              # why the model could not be fitted on a fold; no figures then

    def add_fold(self, units, probabilities, voted, seconds, per_frame, removed=None, fit_rows=None):
        """Score one test fold: Units and their probabilities; per_frame: whether accuracy and F1
        of the units count (frames), or only the recordings."""
        from sklearn.metrics import accuracy_score, f1_score
        self.seconds += seconds
        self.voted |= voted
        if per_frame:
            pred = probabilities.argmax(1)
            self.accuracy.append(accuracy_score(units.y, pred))
            self.f1.append(f1_score(units.y, pred, average="macro"))
        if removed is not None:
            self.removed.append(removed)
        if fit_rows is not None:
            self.subsample = fit_rows
        self.parts.append((units.keys, units.groups, units.y, probabilities))

    def clip_figures(self):
        """(recordings scored, recordings right): each recording's verdict from all its inputs'
        out-of-fold probabilities, so that a recording split over folds counts once."""
        if not self.parts:
            return 0, 0
        keys, groups, y, probs = (np.concatenate(p) for p in zip(*self.parts))
        order = np.argsort(keys, kind="stable")
        clip_true, clip_pred = clip_scores(groups[order], y[order], probs[order])
        return len(clip_true), int((clip_true == clip_pred).sum())

    def mean_removed(self):
        return {k: float(np.mean([r[k] for r in self.removed])) for k in REMOVED_POINTS}

    def to_json(self, grouping):
        """The --cv figures of the model for --json, with the grouping of the folds; a model that
        could not be fitted has its `error` and null figures."""
        common = {"grouping": grouping.name, "n_subjects": grouping.n_subjects, "error": self.error}
        if self.error:
            return {"mean": None, "clip_mean": None, "n_clips": None, **common}
        n_clips, right = self.clip_figures()
        clip = {"clip_mean": round(right / n_clips, 6) if n_clips else None, "n_clips": n_clips,
                "seconds": round(self.seconds, 3)}
        if not self.accuracy:
            return {"mean": None, **clip, **common}
        return {"mean": round(float(np.mean(self.accuracy)), 6), "std": round(float(np.std(self.accuracy)), 6),
                "folds": [round(float(a), 6) for a in self.accuracy], "f1_mean": round(float(np.mean(self.f1)), 6),
                **clip, "clip_verdict": "majority vote" if self.voted else "mean probability",
                "fitted_on_subsample": self.subsample,
                "points_removed": {str(k): round(v, 6) for k, v in self.mean_removed().items()} if self.removed else None,
                **common}

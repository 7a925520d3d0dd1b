"""Suspect labels: training samples whose label their nearest neighbours in other recordings
contradict, out of fold (numpy, scikit-learn). A label is a recording's (its folder's), so a
recording is suspect as a whole; the report shows them and --json lists them.
"""
import dataclasses

import numpy as np
from sklearn.base import clone

# A recording is suspect when the out-of-fold
# KNeighbors (MediaPipe's pose classification guide finds bad samples by their nearest
# neighbours too) gives its frames their own label with a mean probability of at most this;
# its samples are the list. Chosen with benchmark_suspects.py (README "Pictures").
SUSPECT_BELOW = 0.35
SUSPECT_FOLDS = 5
SUSPECT_NEIGHBOURS = 5
# The classes cannot be told apart, and no label is suspect, when more than half of the
# labellings with the recordings' labels shuffled score as well as the real one: the
# neighbours do no better than a typical labelling by chance (README "Pictures").
PERMUTATIONS = 199
# The neighbours of a fold are looked for among at most this many of its training rows, spread
# evenly over them (rows are in recording and time order, so every recording keeps its share):
# the search costs folds x rows x reference rows, hours at a million frames. Measured on 100,000
# synthetic frames (README "Recording files"): 29 suspect recordings against the 32 found
# without it (7,566 samples against 8,400), in 23.4 s against 32.9 s.
SUSPECT_MAX_REFERENCE = 50_000
# And at most this many of a fold's rows are judged, spread evenly the same way: a recording is
# judged by the mean over its judged frames, and only those are listed. At 100,000 frames no
# fold reaches it; at a million, judging every row would take about 10x the 32 s it takes at 100K.
SUSPECT_MAX_JUDGED = 50_000
ALPHA = 0.5


def neighbours(normalize):
    """KNeighbors on the normalized keypoints as they are (pose units), missing points
    imputed and flagged. Not the --cv peer's standard scaling: that blows the noise of
    coordinates that hardly vary up to the size of those that tell the classes apart."""
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import FunctionTransformer
    fill = make_union(SimpleImputer(keep_empty_features=True), MissingIndicator(features="all"))
    return make_pipeline(FunctionTransformer(normalize), fill, KNeighborsClassifier(SUSPECT_NEIGHBOURS))


@dataclasses.dataclass
class Suspects:
    """The suspect labels of a category: index (into its dataset, most suspect first), own
    (their out-of-fold probability of their own label); balanced, the neighbours' out-of-fold
    balanced accuracy, and p, the share of labellings with whole recordings' labels shuffled
    that score as well (None without 2 recordings per class). When p is above ALPHA the two
    classes cannot be told apart by their poses, and no label is listed: any list would be
    arbitrary."""
    index: np.ndarray
    own: np.ndarray
    balanced: float = None
    p: float = None

    @property
    def indistinct(self):
        return self.p is not None and self.p > ALPHA


def own_label(folds, labels):
    """Each judged row's out-of-fold share of neighbours with its own label (KNeighbors'
    predict_proba, uniform weights), NaN elsewhere; folds: (test rows, their neighbours' rows)."""
    own = np.full(len(labels), np.nan)
    for test, near in folds:
        own[test] = (labels[near] == labels[test][:, None]).mean(1)
    return own


def balanced_accuracy(own, labels):
    """Mean over the classes of the share of judged rows whose own label wins; None when a
    class has no judged row."""
    judged = np.isfinite(own)
    if not all((judged & (labels == c)).any() for c in (0, 1)):
        return None
    right = (own > 0.5) + 0.5 * (own == 0.5)          # a tie between the classes is half right
    return float(np.mean([right[judged & (labels == c)].mean() for c in (0, 1)]))


def shuffled_share(folds, y, groups, real, seed):
    """The share of PERMUTATIONS labellings, each recording's label shuffled among the
    recordings (so that what a recording holds stays together), whose balanced accuracy is at
    least the real one's (counting the real labelling: 1 / (PERMUTATIONS + 1) at best)."""
    names, inverse = np.unique(groups, return_inverse=True)
    labels = np.zeros(len(names), dtype=y.dtype)
    labels[inverse] = y
    rng = np.random.default_rng(seed)
    scores = [balanced_accuracy(own_label(folds, perm[inverse]), perm[inverse])
              for perm in (rng.permutation(labels) for _ in range(PERMUTATIONS))]
    return (1 + sum(s is not None and s >= real for s in scores)) / (1 + PERMUTATIONS)


def evenly(rows, most):
    """rows, or `most` of them spread evenly (rows are in recording and time order, so every
    recording keeps its share)."""
    return rows if len(rows) <= most else rows[np.linspace(0, len(rows) - 1, most).round().astype(int)]


def find_suspects(ds, index, seed, normalize, below=None):
    """Suspects among the samples `index` of ds. Out of fold: folds over them that keep
    recordings whole (StratifiedGroupKFold), KNeighbors on the normalized keypoints fitted on
    the other folds (at most as many neighbours as a fold has training samples). Listed: the
    samples of each recording whose frames get their own label with a mean probability of at
    most `below` (default SUSPECT_BELOW). None without 2 recordings per class, nor when the
    classes cannot be told apart (Suspects.indistinct: the same neighbours score as well
    with the recordings' labels shuffled)."""
    below = SUSPECT_BELOW if below is None else below
    from sklearn.model_selection import StratifiedGroupKFold
    none = np.array([], dtype=int), np.array([])
    index = np.asarray(index)
    y, groups = ds.y[index], ds.groups[index]
    per_class = min(len(set(groups[y == c])) for c in (0, 1))
    if per_class < 2:
        return Suspects(*none)
    splitter = StratifiedGroupKFold(n_splits=min(SUSPECT_FOLDS, per_class), shuffle=True, random_state=seed)
    knn, folds, dropped = neighbours(normalize), [], np.zeros(len(index), dtype=bool)
    for train, test in splitter.split(ds.X[index], y, groups):
        if len(set(y[train])) < 2:
            continue
        train, kept = evenly(train, SUSPECT_MAX_REFERENCE), evenly(test, SUSPECT_MAX_JUDGED)
        dropped[np.setdiff1d(test, kept)] = True
        test = kept
        k = min(SUSPECT_NEIGHBOURS, len(train))
        fitted = clone(knn).set_params(kneighborsclassifier__n_neighbors=k - (k % 2 == 0))    # odd: no ties
        fitted.fit(ds.X[index[train]], y[train])
        near = fitted[-1].kneighbors(fitted[:-1].transform(ds.X[index[test]]), return_distance=False)
        folds.append((test, train[near]))
    own = own_label(folds, y)
    balanced = balanced_accuracy(own, y)
    p = shuffled_share(folds, y, groups, balanced, seed) if balanced is not None else None
    own[np.isnan(own)] = 1.0          # rows of a fold that could not be judged (one class left)
    if p is not None and p > ALPHA:
        return Suspects(*none, balanced, p)
    names, inverse = np.unique(groups, return_inverse=True)
    kept = np.flatnonzero(~dropped)
    with np.errstate(invalid="ignore", divide="ignore"):        # its recording's mean over its judged rows
        recording_own = np.bincount(inverse[kept], own[kept], len(names)) / np.bincount(inverse[kept], None, len(names))
    order = kept[np.lexsort((own[kept], recording_own[inverse[kept]]))]    # the most contradicted recording first
    order = order[recording_own[inverse][order] <= below]
    return Suspects(index[order], own[order], balanced, p)


def suspect_labels(ds, index, seed, normalize, below=None):
    """(indices of the suspect samples, their own-label probability): find_suspects's."""
    found = find_suspects(ds, index, seed, normalize, below)
    return found.index, found.own

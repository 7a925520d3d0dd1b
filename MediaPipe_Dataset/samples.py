"""The sample contract, in one place: the keypoint layout, sample files, dataset folders,
and the recordings that frames belong to.

    from MediaPipe_Dataset.samples import Dataset, parse_keypoints, KEYPOINT_NAMES

numpy only (tqdm for a progress bar), so that extract.py and synthesize.py follow the same
rules as train.py and quantize.py without importing torch. A sample is one JSON file per
frame under <data_dir>/<category>/<correct|incorrect> <category>/; a missing point is NaN
in arrays and `null` in JSON; a recording is a `clip`.
"""
import hashlib
import json
import math
import os
import re
import sys

import numpy as np

# ----------------------------------------------------------------------------- layout
# The 14-point layout (first 14 points of OpenPose COCO-18; neck = shoulder midpoint),
# x and y interleaved: keypoints = [x0, y0, x1, y1, ..., x13, y13].
KEYPOINT_NAMES = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
                  "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                  "right_ankle", "left_hip", "left_knee", "left_ankle"]
NUM_POINTS = len(KEYPOINT_NAMES)
NUM_COORDS = 2 * NUM_POINTS
# Which of MediaPipe Pose's 33 landmarks each point is (neck: the mean of the two shoulders).
MEDIAPIPE_33 = [0, (11, 12), 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27]
# Index of each point's left/right twin, for mirroring.
MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10]
CLASS_NAMES = ["incorrect", "correct"]    # index = label; the folder decides the label
R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 2, 5, 8, 11
TORSO = [R_SHOULDER, L_SHOULDER, R_HIP, L_HIP]
# A landmark MediaPipe reports with a lower visibility is a guess (a hidden arm in a side
# view), and counts as missing (chosen by cross-validation on real recordings, see README).
MIN_VISIBILITY = 0.5
MAX_COORDINATE = 1e6    # image positions; larger values would overflow float32 arithmetic


def class_folder(category, label):
    """The folder name of a class: `correct squat` (label 1) or `incorrect squat` (label 0)."""
    return f"{CLASS_NAMES[label]} {category}"


def class_dir(data_dir, category, label):
    return os.path.join(data_dir, category, class_folder(category, label))


def label_index(label):
    """0 or 1 for a sample's `label` field: 0/1, "0"/"1" or the class names; None otherwise."""
    text = str(label).strip().lower() if not isinstance(label, bool) else None
    names = {name: i for i, name in enumerate(CLASS_NAMES)}
    return names.get(text, int(text) if text in ("0", "1") else None)


# ----------------------------------------------------------------------------- one sample
class DataError(Exception):
    """A problem with the user's data or folders, reported as one sentence."""


def _number(v, where):
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"non-numeric value {shown(v)} at {where}")
    try:
        return float(v)
    except OverflowError:          # JSON integers have no size limit
        raise ValueError(f"number out of range at {where} ({shown(v)})")


def shown(value, width=40):
    """A value as a message shows it: its repr, cut to width characters."""
    text = repr(value)
    return text if len(text) <= width else f"{text[:width - 12]}...({len(text)} characters)"


def _point(row, i):
    """(x, y, visibility) of one point or landmark; NaN for what is not given."""
    if row is None:
        return math.nan, math.nan, math.nan
    if isinstance(row, dict):
        if "x" not in row or "y" not in row:
            raise ValueError(f"point {i} has no x and y")
        return tuple(_number(row.get(k), f"point {i}") for k in ("x", "y", "visibility"))
    if isinstance(row, (list, tuple)) and len(row) >= 2:
        return tuple(_number(v, f"point {i}") for v in (row[0], row[1], row[3] if len(row) > 3 else None))
    raise ValueError(f"point {i} is not an [x, y] pair, null, or an object with x and y")


def _rows(raw):
    """The points of a sample's `keypoints` as (14 or 33, 3) rows of x, y and visibility."""
    scalars = all(not isinstance(v, (list, tuple, dict)) for v in raw)
    if scalars and not (len(raw) == NUM_POINTS and all(v is None for v in raw)):     # 14 nulls: 14 null pairs
        if len(raw) != NUM_COORDS:
            raise ValueError(f"wrong count: {len(raw)} numbers, expected 28 (14 points x 2)")
        rows = np.array([_number(v, f"position {i}") for i, v in enumerate(raw)]).reshape(NUM_POINTS, 2)
        return np.column_stack([rows, np.full(NUM_POINTS, math.nan)])
    if len(raw) in (NUM_POINTS, 33):
        return np.array([_point(r, i) for i, r in enumerate(raw)])
    raise ValueError(f"wrong count: {len(raw)} points, expected 14 [x, y] pairs or 33 MediaPipe landmarks")


def parse_keypoints(raw, visibility=None, min_visibility=MIN_VISIBILITY):
    """28 numbers, 14 [x, y] pairs or 33 MediaPipe landmarks -> float64 array of 28, NaN
    where a point is missing.

    A point is missing when it is `null` (a pair, or both its coordinates), or when its
    visibility is below min_visibility: a landmark's own (4th value of a row, or its
    `visibility` key), or the sample's optional 14-value `visibility` list. The neck of
    the 33 landmarks needs both shoulders. Raises ValueError with the reason when the
    value is not a usable pose: one coordinate of a point null, a value that is not a
    number, or too few points left to place the pose (no shoulder and no hip) or size it
    (all present points at one place).
    """
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError("no keypoints")
    rows = _rows(raw)
    half = np.isnan(rows[:, 0]) != np.isnan(rows[:, 1])
    if half.any():
        noun = "landmark" if len(rows) == 33 else "point"
        raise ValueError(f"{noun} {int(np.argmax(half))} has one coordinate null and the other a number")
    if np.isinf(rows[:, :2]).any() or (np.abs(rows[:, :2]) > MAX_COORDINATE).any():
        raise ValueError(f"infinite value or a coordinate beyond +-{MAX_COORDINATE:g}")
    rows[rows[:, 2] < min_visibility, :2] = math.nan      # NaN visibility (not given) compares False
    if len(rows) == 33:
        # Neck = mean of both shoulders, missing unless both are there.
        xy = np.array([rows[list(m), :2].mean(axis=0) if isinstance(m, tuple) else rows[m, :2]
                       for m in MEDIAPIPE_33])
    else:
        xy = rows[:, :2]
    if visibility is not None:
        if not isinstance(visibility, (list, tuple)) or len(visibility) != NUM_POINTS:
            raise ValueError("visibility must be null or a list of 14 numbers (or nulls), one per point")
        vis = np.array([_number(v, f"visibility {i}") for i, v in enumerate(visibility)])
        xy[vis < min_visibility] = math.nan
    present = ~np.isnan(xy[:, 0])
    if not present[TORSO].any():
        raise ValueError(f"no shoulder and no hip left to place the pose ({NUM_POINTS - present.sum()} "
                         f"of 14 points missing or below visibility {min_visibility:g})")
    if np.ptp(xy[present], axis=0).max() < 1e-6:
        raise ValueError("degenerate pose: all present points at one place")
    return xy.reshape(-1)


RECORDING_FIELDS = ("clip", "source", "subject", "fault")   # what a sample says besides its pose and time


def read_json(path):
    """The parsed JSON of one sample or recording file. Raises ValueError with the reason."""
    try:
        with open(path, encoding="utf-8-sig") as f:      # -sig: a UTF-8 byte order mark is fine
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable ({e.__class__.__name__})")
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg}, line {e.lineno})")
    except RecursionError:
        raise ValueError("malformed JSON (nested too deeply)")


def load_sample(path, folder_label, min_visibility=MIN_VISIBILITY):
    """One JSON file -> (keypoints, {field: its value or None} for RECORDING_FIELDS and the
    timestamp, warning or None). Raises ValueError."""
    return sample_from(read_json(path), folder_label, min_visibility)


def sample_from(data, folder_label, min_visibility=MIN_VISIBILITY):
    """load_sample of parsed JSON: a sample object, or a bare list of keypoints."""
    if isinstance(data, dict):
        raw = data.get("keypoints", data.get("landmarks"))
        if raw is None:
            raise ValueError("no keypoints")
    else:
        raw, data = data, {}
    keypoints = parse_keypoints(raw, data.get("visibility"), min_visibility)
    fields = shared_fields(data, folder_label)
    fields["timestamp"] = timestamp_of(data.get("timestamp"))
    return keypoints, fields, label_warning(data, folder_label)


def shared_fields(data, folder_label):
    """{field: value or None} of RECORDING_FIELDS in a sample (or a recording's shared fields)."""
    fields = {name: None if data.get(name) is None else str(data[name]) for name in ("clip", "source")}
    fields["subject"] = subject_of(data.get("subject"))
    fields["fault"] = faults_of(data.get("fault"), folder_label)
    return fields


def label_warning(data, folder_label):
    """The warning for a `label` field that contradicts the sample's folder, or None."""
    if "label" in data and label_index(data["label"]) != folder_label:
        return (f"label {data['label']!r} contradicts its folder "
                f"({CLASS_NAMES[folder_label]}); using the folder's label {folder_label}")
    return None


def timestamp_of(value):
    """A sample's `timestamp` in seconds as a float, or None when it has none (null or no key;
    a recording without times gets no motion model). Raises ValueError for a value that is not
    a finite number of seconds: a string, true/false, a list, NaN, infinity, or a number past
    float range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"timestamp {shown(value)} is not a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"timestamp out of range ({shown(value)})")
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {value!r} is not a finite number of seconds")
    return seconds


def faults_of(value, label):
    """A sample's `fault`: the names of what is wrong in it, as a tuple (empty when it names
    none). A name, or a list of names where a sample shows several; only an incorrect sample
    (label 0) may name one. Raises ValueError for a fault on a correct sample, an empty or
    blank name, an empty list, or anything but strings."""
    if value is None:
        return ()
    names = value if isinstance(value, list) else [value]
    if not names:
        raise ValueError("fault is an empty list (leave `fault` out when a sample names none)")
    bad = next((n for n in names if not isinstance(n, str) or not n.strip()), None)
    if bad is not None or (isinstance(value, list) and any(isinstance(n, list) for n in names)):
        raise ValueError(f"fault {shown(value)} is not a name (a non-empty string) or a list of names")
    if label != 0:
        raise ValueError(f"fault {shown(value)} on a correct sample (only incorrect samples name a fault)")
    return tuple(dict.fromkeys(n.strip() for n in names))


def subject_of(value):
    """A sample's `subject`: a person's id, as a string (whitespace around it dropped), or None
    when it has none. A whole number is an id too, and 7, 7.0 and "7" are one person. Raises
    ValueError for anything else: an empty or blank string, true/false, a fraction, a list, an
    object."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise ValueError(f"subject {shown(value)} is not a person's id (a non-empty string or a whole number)")


def sample_digest(keypoints):
    """Short SHA-1 of one sample's keypoints as the model sees them (float32)."""
    return hashlib.sha1(np.asarray(keypoints, dtype=np.float32).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- folders
def progress(iterable=None, disable_if=False, **kwargs):
    """tqdm progress bar on a terminal; nothing in logs, pipes and CI."""
    if disable_if:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, disable=None, file=sys.stderr, **kwargs)


def list_folder(folder):
    """os.listdir, with an unreadable folder as a DataError."""
    try:
        return os.listdir(folder)
    except OSError as e:
        raise DataError(f"{folder}: cannot read the folder ({e.strerror or e.__class__.__name__})")


def discover_categories(data_dir):
    """Every folder of data_dir holding `correct <name>/` and `incorrect <name>/`."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data folder not found (expected {data_dir}/<category>/correct <category>/*.json)")
    found = sorted(name for name in list_folder(data_dir)
                   if any(os.path.isdir(class_dir(data_dir, name, label)) for label in (0, 1)))
    if not found:
        raise DataError(f"{data_dir}: no category folders found "
                        f"(expected {data_dir}/<category>/correct <category>/ and incorrect <category>/)")
    return found


def sample_files(folder):
    """The .json files of a class folder, relative to it: its own, sorted, then those of its
    subfolders (correct squat/session1/*.json), which are samples too. Hidden folders (a
    staging folder of extract.py) are skipped, and links to folders are not followed."""
    def unreadable(e):
        raise DataError(f"{e.filename}: cannot read the folder ({e.strerror or e.__class__.__name__})")
    list_folder(folder)
    names = []
    for path, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names += [os.path.relpath(os.path.join(path, n), folder) for n in sorted(files) if n.lower().endswith(".json")]
    return names


def recording_groups(clips, labels, files):
    """The recording of each frame, for keeping recordings whole in splits and for verdicts
    per recording. A recording is (class folder, clip): a clip id used in both class folders
    (rec-0 in each, numbered per folder) is two recordings, `correct/rec-0` and
    `incorrect/rec-0`; elsewhere the clip id alone names it. A sample without a clip is a
    recording of its own (`file:<path>`)."""
    classes = {}
    for clip, label in zip(clips, labels):
        classes.setdefault(clip, set()).add(label)
    return np.array([f"file:{f}" if c is None else f"{CLASS_NAMES[y]}/{c}" if len(classes[c]) > 1 else c
                     for c, y, f in zip(clips, labels, files)])


def identical_across_classes(X, y):
    """(how many distinct keypoint rows occur in both classes, and of the first such row (by
    first occurrence) its first correct and first incorrect index), in one pass over the rows'
    bytes (the float32 values sample_digest hashes)."""
    rows = np.ascontiguousarray(X, dtype=np.float32).view(np.dtype((np.void, 4 * NUM_COORDS))).ravel()
    _, inverse = np.unique(rows, return_inverse=True)
    inverse = inverse.ravel()
    firsts = []
    for label in (0, 1):
        first = np.full(inverse.max(initial=-1) + 1, len(y))
        np.minimum.at(first, inverse[y == label], np.flatnonzero(y == label))
        firsts.append(first)
    both = np.flatnonzero((firsts[0] < len(y)) & (firsts[1] < len(y)))
    if not len(both):
        return 0, None, None
    pick = both[np.argmin(np.minimum(firsts[0], firsts[1])[both])]
    return len(both), int(firsts[1][pick]), int(firsts[0][pick])


def recording_warnings(dataset, clips, sources):
    """Sentences about recordings that look like one recording in two places: a clip id in
    both classes, identical samples in both classes, and two clips of the same source
    content (extract.py's `source` path, or the content digest that ends its clip ids)."""
    found = []
    both = sorted({c for c, y in zip(clips, dataset.y) if c is not None and y == 1}
                  & {c for c, y in zip(clips, dataset.y) if c is not None and y == 0})
    if both:
        found.append(f"{len(both)} clip id(s) name recordings in both class folders ({', '.join(both[:3])}"
                     f"{', ...' if len(both) > 3 else ''}); each class folder's are kept apart as separate "
                     f"recordings; if they are one recording, its frames cannot all be right")
    same, a, b = identical_across_classes(dataset.X, dataset.y)
    if same:
        found.append(f"{same} sample(s) appear in both classes with identical keypoints (e.g. "
                     f"{dataset.files[a]} and {dataset.files[b]}); one of their labels is wrong")
    people = {}
    for group, subject in set(zip(dataset.groups, dataset.subjects)):     # once per recording and person
        people.setdefault(group, set()).add(subject)
    partial = sorted(g for g, s in people.items() if None in s and len(s) > 1)
    several = sorted(g for g, s in people.items() if len(s - {None}) > 1)
    if partial:
        found.append(f"{len(partial)} recording(s) name a subject on some of their frames only ({', '.join(partial[:3])}"
                     f"{', ...' if len(partial) > 3 else ''}); each is kept whole, with its person")
    if several:
        names = sorted(people[several[0]] - {None})
        found.append(f"{len(several)} recording(s) name several subjects ({several[0]}: {', '.join(names[:3])}); "
                     f"to keep each recording whole, their people are kept together in splits")
    content = {}
    for group, clip, source in set(zip(dataset.groups, clips, sources)):    # once per recording
        digest = re.search(r"-([0-9a-f]{10})$", clip or "")
        for key in ([f"source {source}"] if source else []) + ([f"content {digest.group(1)}"] if digest else []):
            content.setdefault(key, set()).add(group)
    for key, groups in sorted(content.items()):
        if len(groups) > 1:
            found.append(f"recordings {', '.join(sorted(groups)[:3])} come from the same source ({key}); "
                         f"a split may put copies of one video on both sides")
    return found


class Dataset:
    """The valid samples of one category, plus what was wrong with the others.

    X (N, 28) float32 keypoints, NaN where missing; y (N,) labels; files, relative to the
    category folder; groups (N,) the recording of each sample (recording_groups); subjects,
    the person of each (its `subject` field) or None; timestamps (N,) seconds, NaN where a
    sample has none;
    recording_warnings, sentences about recordings that look like copies (recording_warnings).
    """

    def __init__(self, data_dir, category, min_visibility=MIN_VISIBILITY):
        from MediaPipe_Dataset.recordings import load_rows, stack   # per-frame and recording files alike
        self.category, self.root = category, os.path.join(data_dir, category)
        self.invalid, self.warnings, self.ignored = [], [], 0
        chunks, labels = [], []
        for label in (0, 1):
            folder = class_dir(data_dir, category, label)
            if not os.path.isdir(folder):
                raise DataError(f"{folder}: folder missing, so the {CLASS_NAMES[label]} class has no samples")
            names = sample_files(folder)
            # macOS leaves ._name.json AppleDouble files beside copied files: not samples.
            self.ignored += sum(os.path.basename(n).startswith("._") for n in names)
            names = [n for n in names if not os.path.basename(n).startswith("._")]
            for name in progress(names, desc=f"Loading {os.path.basename(folder)}", unit="file", leave=False):
                path = os.path.join(folder, name)
                rows = load_rows(path, os.path.relpath(path, self.root), label, min_visibility)
                self.invalid += rows.invalid
                self.warnings += rows.warnings
                if rows.names:
                    chunks.append(rows)
                    labels.append(label)
        self.X, self.y, self.timestamps, fields, self.files, self.groups = stack(chunks, labels)
        clips = [f["clip"] for f in fields]
        self.has_clips = any(c is not None for c in clips)
        self.subjects = [f["subject"] for f in fields]          # the person of each sample, or None
        self.has_subjects = any(s is not None for s in self.subjects)
        self.faults = [f["fault"] for f in fields]              # the fault names of each sample, () for none
        self.recording_warnings = recording_warnings(self, clips, [f["source"] for f in fields])

    def count(self, label):
        return int((self.y == label).sum())

    def fault_counts(self):
        """{fault: (samples, recordings)} in name order, and the incorrect recordings that name
        no fault on any frame (sorted)."""
        found, named = {}, set()
        for faults, group in zip(self.faults, self.groups):
            for name in faults:
                found.setdefault(name, [0, set()])
                found[name][0] += 1
                found[name][1].add(group)
            if faults:
                named.add(group)
        silent = sorted(set(self.groups[self.y == 0]) - named) if found else []
        return {n: (k, len(g)) for n, (k, g) in sorted(found.items())}, silent

    def missing(self):
        """(samples with a missing point, {point name: samples missing it}, most often first)."""
        absent = np.isnan(self.X[:, 0::2])
        counts = {KEYPOINT_NAMES[i]: int(absent[:, i].sum()) for i in np.argsort(-absent.sum(0), kind="stable")
                  if absent[:, i].any()}
        return int(absent.any(1).sum()), counts


# ----------------------------------------------------------------------------- recordings
def group_sums(groups, probabilities):
    """(names in np.unique(groups) order, (names, classes) sums of each group's rows, rows per group)."""
    names, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(names), probabilities.shape[1]))
    np.add.at(sums, inverse, probabilities)
    return names, sums, np.bincount(inverse, minlength=len(names))


def group_means(groups, probabilities):
    """(names in np.unique(groups) order, each group's mean probability per class)."""
    names, sums, counts = group_sums(groups, probabilities)
    return names, sums / counts[:, None]


def clip_verdicts(groups, probabilities):
    """One verdict per recording, in the order of np.unique(groups): the class with the highest
    mean probability over the clip's frames. One-hot rows (predictions or labels) make it a
    majority vote; a tie goes to class 0."""
    return group_sums(groups, probabilities)[1].argmax(1)


def clip_scores(groups, y, probabilities):
    """(clip labels, clip verdicts): a clip's label is the majority of its frames' labels."""
    return clip_verdicts(groups, np.eye(probabilities.shape[1])[y]), clip_verdicts(groups, probabilities)

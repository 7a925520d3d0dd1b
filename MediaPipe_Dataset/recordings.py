"""Recording files: one JSON file per recording, its frames in time order, beside (or instead
of) one file per frame, in the same class folders.

    {"category": "squat", "clip": "squat-017", "subject": "p03", "source": "videos/p03.mp4",
     "frames": [{"keypoints": [28 numbers], "timestamp": 0.0, "visibility": [14 numbers]},
                {"keypoints": [...], "timestamp": 0.033}, ...]}

A field at the top (clip, source, subject, fault, label) holds for every frame; a frame may
name its own (a `fault` on some frames only), which wins. Each frame is read with the rules of a
per-frame sample (samples.sample_from), so both layouts give the same rows, and a bad frame is
skipped with its file and index. A recording without a `clip` is named by its path in the
class folder. Frames that hold only keypoints (28 numbers), a timestamp and a visibility list
are checked in one numpy pass; the others, and any a fast check doubts, one by one.
"""
import dataclasses
import itertools
import os

import numpy as np

from MediaPipe_Dataset.samples import (MAX_COORDINATE, NUM_COORDS, NUM_POINTS, TORSO, read_json,
                                       sample_from, shared_fields, label_warning)

FAST_KEYS = frozenset(("keypoints", "timestamp", "visibility", "file"))
NUMBERS = frozenset((float, int, type(None)))
FRAME_NAME_KEY = "file"          # a frame's own file name, kept by convert.py for the way back


def is_recording(data):
    """A recording file's JSON: an object with `frames` (and no keypoints of its own, so that a
    per-frame sample with a `frames` field of its own stays a sample)."""
    return isinstance(data, dict) and "frames" in data and "keypoints" not in data and "landmarks" not in data


@dataclasses.dataclass
class Rows:
    """The valid frames of one file: X (n, 28) float32, timestamps (n,) seconds (NaN for none),
    fields (n,) dicts of RECORDING_FIELDS (one dict shared by the frames that name nothing of
    their own), names (n,) each frame's name in Dataset.files, keys (n,) the names that order
    rows (a frame's per-frame file name where convert.py kept it), and what was wrong."""
    X: np.ndarray
    timestamps: np.ndarray
    fields: list
    names: list
    keys: list
    invalid: list
    warnings: list


def empty_rows(invalid=(), warnings=()):
    return Rows(np.empty((0, NUM_COORDS), np.float32), np.empty(0), [], [], [], list(invalid), list(warnings))


def load_rows(path, name, folder_label, min_visibility):
    """Rows of one .json file in a class folder: a per-frame sample or a recording. `name` is its
    path relative to the category folder. Never raises for bad data: it lands in Rows.invalid."""
    try:
        data = read_json(path)
        if not is_recording(data):
            keypoints, fields, warning = sample_from(data, folder_label, min_visibility)
            timestamp = fields.pop("timestamp")
            return Rows(np.asarray(keypoints, np.float32)[None], np.array([np.nan if timestamp is None else timestamp]),
                        [fields], [name], [name], [], [(path, warning)] if warning else [])
        return recording_rows(path, name, data, folder_label, min_visibility)
    except ValueError as e:
        return empty_rows(invalid=[(path, str(e))])


def recording_rows(path, name, data, folder_label, min_visibility):
    """Rows of a recording file's JSON: fast_frames for the plain frames, sample_from (with the
    shared fields) for the rest; a label warning is given once per recording."""
    frames = data["frames"]
    if not isinstance(frames, list):
        raise ValueError("`frames` is not a list of frames")
    shared = {k: v for k, v in data.items() if k != "frames"}
    fields = shared_fields(shared, folder_label)
    if fields["clip"] is None:
        fields["clip"] = os.path.splitext(name.split(os.sep, 1)[-1])[0].replace(os.sep, "/")
    X, timestamps, doubtful = fast_frames(frames, min_visibility)
    row_fields, invalid, warnings = [], [], {}
    warning = label_warning(shared, folder_label)
    if warning:
        warnings[warning] = None
    for i in np.flatnonzero(doubtful):
        frame = frames[i]
        try:
            if not isinstance(frame, dict):
                raise ValueError("a frame is not an object with keypoints")
            keypoints, own, warning = sample_from({**shared, **frame}, folder_label, min_visibility)
        except ValueError as e:
            invalid.append((f"{path}, frame {i}", str(e)))
            continue                   # its row stays NaN: not kept
        if warning:
            warnings.setdefault(warning, i)
        X[i], timestamps[i] = keypoints, np.nan if own["timestamp"] is None else own["timestamp"]
        own.pop("timestamp")
        if own["clip"] is None:
            own["clip"] = fields["clip"]
        row_fields.append((i, own))
    kept = np.flatnonzero(~np.isnan(X).all(1))     # a kept frame has a shoulder or a hip
    own_fields = dict(row_fields)
    return Rows(X[kept].astype(np.float32), timestamps[kept], [own_fields.get(i, fields) for i in kept],
                [f"{name}#{i}" for i in kept], [frame_key(name, frames[i], i) for i in kept], invalid,
                [(path if i is None else f"{path}, frame {i}", w) for w, i in warnings.items()])


def frame_key(name, frame, i):
    """The name that orders a recording's frame among all rows: its per-frame file name when it
    keeps one (convert.py), so both layouts sort alike; else the recording's name and index."""
    own = frame.get(FRAME_NAME_KEY)
    return os.path.join(os.path.dirname(name), own) if isinstance(own, str) else f"{name}#{i:09d}"


def fast_frames(frames, min_visibility):
    """(X (n, 28) float64, timestamps (n,), doubtful (n,) bool) of a recording's frames, in one
    numpy pass. A doubtful frame (any other shape, or one a check fails) is for sample_from to
    read or reject; the others are exactly what sample_from would make of them."""
    n = len(frames)
    plain = np.array([type(f) is dict and f.keys() <= FAST_KEYS for f in frames], bool)
    keypoints, stamps, seen = [], [], []
    for i, f in enumerate(frames):
        k, v, t = (f.get("keypoints"), f.get("visibility"), f.get("timestamp")) if plain[i] else (None, None, None)
        if not (plain[i] and type(k) is list and len(k) == NUM_COORDS and type(t) in NUMBERS
                and (v is None or type(v) is list and len(v) == NUM_POINTS)):
            plain[i], k, v, t = False, None, None, None
        keypoints.append(k or [None] * NUM_COORDS)
        seen.append(v or [None] * NUM_POINTS)
        stamps.append(t)
    for lists in (keypoints, seen):       # every value a number or null: one check for all frames,
        if not set(map(type, itertools.chain.from_iterable(lists))) <= NUMBERS:   # else frame by frame
            for i, values in enumerate(lists):
                if not set(map(type, values)) <= NUMBERS:
                    plain[i], keypoints[i], seen[i], stamps[i] = False, [None] * NUM_COORDS, [None] * NUM_POINTS, None
    try:
        X = np.array(keypoints, dtype=np.float64).reshape(n, NUM_COORDS)
        visibility = np.array(seen, dtype=np.float64).reshape(n, NUM_POINTS)
        timestamps = np.array(stamps, dtype=np.float64)
    except OverflowError:         # an integer past float range: let sample_from name it
        return np.full((n, NUM_COORDS), np.nan), np.full(n, np.nan), np.ones(n, bool)
    xy = X.reshape(n, NUM_POINTS, 2)
    with np.errstate(invalid="ignore"):
        bad = (np.isnan(xy[..., 0]) != np.isnan(xy[..., 1])).any(1)
        bad |= (np.isinf(X) | (np.abs(X) > MAX_COORDINATE)).any(1)
        bad |= np.isinf(timestamps) | np.array([t != t for t in stamps])      # NaN or infinite times: rejected
        xy[visibility < min_visibility] = np.nan
        present = ~np.isnan(xy[..., 0])
        bad |= ~present[:, TORSO].any(1)
        spread = np.nanmax(np.where(present[..., None], xy, -np.inf), 1) - np.nanmin(
            np.where(present[..., None], xy, np.inf), 1)
        bad |= ~(spread.max(1) >= 1e-6)
    doubtful = ~plain | bad
    X[doubtful] = np.nan
    timestamps[doubtful] = np.nan
    return X, timestamps, doubtful


def stack(chunks, labels):
    """(X, y, timestamps, fields, names, groups) of all rows, in one order whatever the layout:
    by class, then recording (samples.recording_groups) in the order of their first row name,
    then time, then name. X is filled chunk by chunk, each freed as it goes, so the keypoints
    are never held twice."""
    from MediaPipe_Dataset.samples import recording_groups
    y = np.concatenate([np.full(len(c.names), label, np.int64) for c, label in zip(chunks, labels)]
                       or [np.empty(0, np.int64)])
    names = [n for c in chunks for n in c.names]
    fields = [f for c in chunks for f in c.fields]
    timestamps = np.concatenate([c.timestamps for c in chunks] or [np.empty(0)])
    groups = recording_groups([f["clip"] for f in fields], y, names)
    rank = np.empty(len(y), np.int64)
    rank[np.argsort(np.array([k for c in chunks for k in c.keys]), kind="stable")] = np.arange(len(y))
    _, inverse = np.unique(groups, return_inverse=True)
    first = np.full(inverse.max(initial=-1) + 1, len(y))
    np.minimum.at(first, inverse, rank)
    order = np.lexsort((rank, np.where(np.isnan(timestamps), np.inf, timestamps), first[inverse], y))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    X, start = np.empty((len(y), NUM_COORDS), np.float32), 0
    for c in chunks:
        X[position[start:start + len(c.names)]] = c.X
        start, c.X = start + len(c.names), None
    return X, y[order], timestamps[order], [fields[i] for i in order], [names[i] for i in order], groups[order]

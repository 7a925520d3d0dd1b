"""Turn videos and images into samples that train.py reads, with MediaPipe Pose.

    python MediaPipe_Dataset/extract.py squat_good.mp4 --out my_data --category squat --label correct
    python MediaPipe_Dataset/extract.py videos/bad/ photos/ --out my_data --category squat --label incorrect

Writes my_data/<category>/<label> <category>/<clip>.json, one recording file per video
(recordings.py's format: the shared fields at the top, a `frames` list in time order), or
with --frames one file per frame, <clip>_<frame>.json; a photo is always one file,
<clip>_000000.json. A frame is kept when a person is found in it (and can be placed: a
shoulder or a hip seen), with MediaPipe's 33 landmarks as [x, y, z, visibility] rows, its
timestamp (seconds into the video) and frame index; label, category, clip, source (and
subject, fault) are shared. A video's clip id is its file name plus a digest of its content,
so re-extracting the same file gives the same ids and replaces its samples, in either layout
(the new ones are written first, then swapped in; writing.py); each image is a clip of its
own. --jobs N uses the cores of this machine, --scheduler ADDRESS a Dask cluster (cluster.py).
Needs the video extra: `pip install -r requirements-video.txt`.
"""
import argparse
import hashlib
import importlib.util
import math
import os
import re
import signal
import sys
import time

if __package__ in (None, ""):      # run as a script: make MediaPipe_Dataset importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The sample contract (numpy only: no torch here): a sample extract.py writes is one train.py accepts.
from MediaPipe_Dataset import outputs, store  # noqa: E402
from MediaPipe_Dataset.writing import WriteError, read_sources, remove_from_other_class, write_samples  # noqa: E402
from MediaPipe_Dataset.workers import Workers  # noqa: E402
from MediaPipe_Dataset.samples import CLASS_NAMES, class_dir, parse_keypoints  # noqa: E402

VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LABELS = {name: label for label, name in enumerate(CLASS_NAMES)}    # the label comes from the folder
INSTALL_HINT = "pip install -r requirements-video.txt"
MAX_JOBS = 1024
CUT_SHARE = 0.9     # a video that gives fewer of the frames its header announces is named as cut short


class InputError(Exception):
    """A problem with one input file or the output folder, reported as one sentence."""


# ----------------------------------------------------------------------------- inputs
def find_inputs(paths, out):
    """(files to extract, in order, each once; files skipped in folder walks). Each file given
    is extracted (or named as an error: not media, or missing); each folder given is walked
    (sorted, hidden files and folders skipped, and the output folder `out` too), and files in
    it that are neither videos nor images are skipped, not errors."""
    found, skipped, outside = [], [], os.path.realpath(out)
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and os.path.realpath(os.path.join(folder, d)) != outside)
            for name in sorted(f for f in files if not f.startswith(".")):
                (found if kind_of(name) else skipped).append(os.path.join(folder, name))
    unique = list({os.path.realpath(p) if os.path.isfile(p) else p: p for p in reversed(found)}.values())[::-1]
    return unique, skipped


def kind_of(path):
    extension = os.path.splitext(path)[1].lower()
    return "video" if extension in VIDEO_EXTENSIONS else "image" if extension in IMAGE_EXTENSIONS else None


def clip_id(path):
    """`<file name>-<first 10 hex digits of the SHA-1 of its content>`: the same file gives the
    same id wherever it lies, and two different files never share one."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(path))[0]) or "clip"
    return f"{stem}-{digest.hexdigest()[:10]}"


# ----------------------------------------------------------------------------- MediaPipe
def load_mediapipe():
    """(cv2, mediapipe pose module), or InputError saying what to install."""
    try:
        import cv2
        import mediapipe as mp
        return cv2, mp.solutions.pose
    except ImportError as e:
        raise InputError(f"extract.py needs MediaPipe and OpenCV ({e.name} is not installed): {INSTALL_HINT}")


def missing_video_extra():
    """The name of the first of OpenCV and MediaPipe that is not installed, or None; without
    importing them (the main process of a run with workers never needs them)."""
    for module in ("cv2", "mediapipe"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ValueError:          # sys.modules[module] is None: blocked
            return module
    return None


def landmarks(pose, rgb):
    """33 [x, y, z, visibility] rows of the most prominent person in an RGB image, None when
    there is nobody, or "hidden" when train.py could not place the pose (no shoulder and no
    hip seen with visibility >= its default --min-visibility)."""
    result = pose.process(rgb)
    if result.pose_landmarks is None:
        return None
    marks = [[round(m.x, 6), round(m.y, 6), round(m.z, 6), round(m.visibility, 4)]
             for m in result.pose_landmarks.landmark]
    try:
        parse_keypoints(marks)
    except ValueError:
        return "hidden"
    return marks


def sample_frames(cv2, capture, every_s, bar, read):
    """(frame index, seconds, BGR frame) of the frames to keep: the first, then one each
    every_s seconds of video (every frame when every_s is 0). Skipped frames are only
    grabbed, not decoded. read[0] counts the frames grabbed."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    index, next_time = 0, 0.0
    while capture.grab():
        read[0] += 1
        seconds = index / fps
        if seconds + 1e-9 >= next_time:
            ok, frame = capture.retrieve()
            if ok:
                yield index, seconds, frame
            next_time = seconds + every_s if every_s else 0.0
        index += 1
        bar.update(1)


# ----------------------------------------------------------------------------- extraction
def extract_video(path, cv2, pose_module, args, progress):
    """[(clip, frame index, seconds, landmarks)] of one video; raises InputError."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise InputError(f"{path}: cannot be read as a video (corrupt, or a format OpenCV cannot open)")
    # Phones record portrait video coded sideways, with a rotation in the container's display
    # matrix; OpenCV 4.11 ignores it unless asked, and MediaPipe then sees a lying person.
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    clip = clip_id(path)
    found, sampled, hidden, read = [], 0, 0, [0]
    with pose_module.Pose(static_image_mode=False, model_complexity=1,
                          min_detection_confidence=args.min_detection_confidence) as pose, \
            progress(total=total, desc=os.path.basename(path), unit="frame") as bar:
        for index, seconds, frame in sample_frames(cv2, capture, 1 / args.fps if args.fps else 0, bar, read):
            sampled += 1
            marks = landmarks(pose, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if marks == "hidden":
                hidden += 1
            elif marks is not None:
                found.append((clip, index, round(seconds, 4), marks))
    capture.release()
    if total and read[0] < CUT_SHARE * total:
        cut = f"read {read[0]} of the {total} frames its header announces: the file may be cut short"
    else:
        cut = None
    if sampled == 0:
        raise InputError(f"{path}: no frame could be decoded (corrupt or empty video)")
    if not found:
        raise InputError(f"{path}: no person found in any of its {sampled} sampled frames"
                         + (f" ({hidden} with a person too hidden to place)" if hidden else "")
                         + (f"; it {cut}" if cut else ""))
    return found, sampled, hidden, cut


def extract_image(path, cv2, pose_module, args):
    image = cv2.imread(path)
    if image is None:
        raise InputError(f"{path}: cannot be read as an image (corrupt, or a format OpenCV cannot open)")
    marks = landmarks(image_pose(pose_module, args.min_detection_confidence), cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if marks is None:
        raise InputError(f"{path}: no person found in the image")
    if marks == "hidden":
        raise InputError(f"{path}: the person is too hidden to place (no shoulder and no hip seen)")
    return [(clip_id(path), 0, 0.0, marks)], 1, 0, None


IMAGE_POSES = {}      # one MediaPipe Pose per process for photos: building one takes ~0.15 s


def image_pose(pose_module, confidence):
    """The process's MediaPipe Pose in static image mode (each image on its own, no tracking,
    so reusing it changes no result), made at the first image."""
    if confidence not in IMAGE_POSES:
        IMAGE_POSES[confidence] = pose_module.Pose(static_image_mode=True, model_complexity=1,
                                                   min_detection_confidence=confidence)
    return IMAGE_POSES[confidence]


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Extract MediaPipe Pose landmarks from videos and images into "
                                            "samples that train.py reads.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_IMAGE_OR_FOLDER",
                   help="videos, images, or folders of them (searched recursively)")
    p.add_argument("--out", required=True, metavar="DATA_DIR",
                   help="dataset folder; samples go to DATA_DIR/<category>/<label> <category>/")
    p.add_argument("--category", required=True, metavar="NAME", help="exercise or pose name, e.g. squat")
    p.add_argument("--label", required=True, choices=sorted(LABELS), help="the form shown in these inputs")
    p.add_argument("--fps", type=float, default=10.0,
                   help="frames kept per second of video; 0 keeps every frame (default: 10, i.e. 600 "
                        "samples from a minute of video)")
    p.add_argument("--min-detection-confidence", type=float, default=0.5, metavar="C",
                   help="MediaPipe's person detection threshold (default: 0.5)")
    p.add_argument("--fault", metavar="NAME", action="append",
                   help="what is wrong in these inputs, e.g. 'hips too high', written as each sample's `fault`; "
                        "give it twice for inputs that show two faults; with --label incorrect only (default: none)")
    p.add_argument("--subject", metavar="ID",
                   help="the person in these inputs (any id: a name, a number, a session), written as the samples' "
                        "`subject`, so that train.py keeps each person on one side of its splits (default: none)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes, each with its own MediaPipe, each taking whole videos (images in "
                        "batches); 1 extracts in this process (default: every core this process may use, at most "
                        "one per video or batch)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="send one task per input to the Dask distributed scheduler at ADDRESS (e.g. "
                        "tcp://10.0.0.5:8786), whose workers each load MediaPipe once; the files are written here, "
                        "in input order, as with --jobs 1 (default: extract on this machine)")
    p.add_argument("--frames", action="store_true",
                   help="write one file per video frame, <clip>_<frame>.json, the layout before recording files "
                        "(default: one recording file per video, <clip>.json; a photo is always one file)")
    args = p.parse_args(argv)
    if args.scheduler is not None and args.jobs is not None:
        p.error("--jobs and --scheduler exclude each other: with --scheduler, the cluster's workers do the work")
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        p.error(f"--jobs must be between 1 and {MAX_JOBS}")
    if args.fault and (args.label != "incorrect" or not all(f.strip() for f in args.fault)):
        p.error("--fault needs --label incorrect (a correct sample has no fault) and a non-empty name")
    if args.fault:
        args.fault = list(dict.fromkeys(f.strip() for f in args.fault))
    if args.subject is not None and not args.subject.strip():
        p.error("--subject needs a non-empty id")
    if not (math.isfinite(args.fps) and (args.fps == 0 or 1e-3 <= args.fps <= 1e6)):
        p.error("--fps must be 0 (every frame) or a number of frames per second from 0.001 to 1000000")
    if not 0 <= args.min_detection_confidence <= 1:
        p.error("--min-detection-confidence must be between 0 and 1")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.category) or args.category.startswith("."):
        p.error("--category: use letters, digits, '_', '-' or '.', e.g. squat or bicep_curl")
    if store.report_collision(args.category):
        p.error(f"--category may not be {args.category}: train.py names its --cv report {store.CV_REPORT}, the "
                f"name of that category's report")
    if store.reserved_suffix(args.category):
        p.error(f"--category may not end in {' or '.join(store.RESERVED_SUFFIXES)} (quantize.py names its models "
                f"<category>{store.INT8}, train.py its other model kinds <category>_motion and fault models "
                f"<category>_fault, and train.py refuses "
                f"such a category)")
    return args


def extract_one(path, cv2, pose_module, args, progress):
    """(samples, sampled frames, hidden frames, kind, seconds, why it looks cut short or None) of
    one input; raises InputError."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file or folder")
    kind = kind_of(path)
    if kind is None:
        raise InputError(f"{path}: neither a video nor an image (by its extension; videos: "
                         f"{', '.join(sorted(VIDEO_EXTENSIONS))}; images: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    start = time.perf_counter()
    if kind == "video":
        samples, sampled, hidden, cut = extract_video(path, cv2, pose_module, args, progress)
    else:
        samples, sampled, hidden, cut = extract_image(path, cv2, pose_module, args)
    return samples, sampled, hidden, kind, time.perf_counter() - start, cut


def report(path, kind, n, sampled, hidden, clip, elapsed, moved, other):
    if kind == "video":
        print(f"{path}: {n} samples from {sampled} sampled frames ({sampled - n - hidden} without a "
              f"person, {hidden} with the person too hidden to place: no shoulder and no hip seen; "
              f"skipped); clip {clip}; {sampled / elapsed:.1f} frames/s")
    else:
        print(f"{path}: 1 sample; clip {clip}")
    if moved:
        print(f"{path}: removed its {moved} earlier sample file(s) from {other} (extracted before with the other --label)")


# ----------------------------------------------------------------------------- workers
def default_jobs(n_tasks):
    """Every core this process may use (os.sched_getaffinity where it exists), at most one
    worker per task."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, n_tasks))


def make_tasks(inputs, jobs):
    """Work for the workers, in input order: each video a task of its own (its frames stay in
    order in one worker, so MediaPipe's tracking works as with one job), the images in up to
    `jobs` batches of consecutive ones. A task is a list of (input index, path)."""
    videos = [[(i, p)] for i, p in enumerate(inputs) if kind_of(p) != "image"]
    images = [(i, p) for i, p in enumerate(inputs) if kind_of(p) == "image"]
    size = max(1, math.ceil(len(images) / jobs))
    return sorted(videos + [images[k:k + size] for k in range(0, len(images), size)], key=lambda t: t[0][0])


def outcome(path, mediapipe, args, progress):
    """("ok", extract_one's result) or ("error", one sentence) of one input; mediapipe is
    load_mediapipe()'s (cv2, pose module), or the InputError it raised."""
    try:
        if isinstance(mediapipe, InputError):
            raise mediapipe
        return "ok", extract_one(path, *mediapipe, args, progress)
    except InputError as e:
        return "error", str(e)
    except Exception as e:         # MediaPipe or OpenCV failing on one input: name it, go on
        return "error", f"{path}: extraction failed ({e.__class__.__name__}: {e})"


def no_progress(**kw):
    """A progress bar that shows nothing (a worker on another machine has no terminal of ours)."""
    from tqdm import tqdm
    return tqdm(disable=True, **kw)


def loaded_mediapipe():
    """load_mediapipe()'s (cv2, pose module), or the InputError it raised (for outcome)."""
    try:
        return load_mediapipe()
    except InputError as e:
        return e


def worker(slot, conn, args):
    """A worker process: its own MediaPipe, tasks from its own pipe until None; sends
    (index, outcome) after each input. A pipe per worker, and no shared queue: a worker killed
    at any moment then leaves no lock held and no message half-sent that another would need."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the main process stops the workers
    from tqdm import tqdm
    progress = lambda **kw: tqdm(disable=None, file=sys.stderr, leave=False, position=slot, **kw)
    mediapipe = loaded_mediapipe()
    for task in iter(conn.recv, None):
        for index, path in task:
            conn.send((index, outcome(path, mediapipe, args, progress)))


def serial_outcomes(inputs, args, progress):
    """(path, outcome) of each input in order, in this process: --jobs 1."""
    mediapipe = load_mediapipe()
    for path in inputs:
        yield path, outcome(path, mediapipe, args, progress)


def parallel_outcomes(inputs, args, jobs):
    """(path, outcome) of each input in input order, from `jobs` worker processes that take
    whole tasks (make_tasks). A worker that dies (killed, out of memory) costs the input it
    held, named as an error; the rest of its task goes to a new worker. Closing the generator
    (the run ends or is interrupted) stops the workers."""
    workers, next_index = Workers(worker, args, jobs, make_tasks(inputs, jobs)), 0
    try:
        while next_index < len(inputs):
            while next_index in workers.done:
                yield inputs[next_index], workers.done.pop(next_index)
                next_index += 1
            if next_index < len(inputs):
                workers.wait()
    finally:
        workers.stop()


def chosen_outcomes(inputs, args):
    """(what does the work, for the summary line; the (path, outcome) generator)."""
    from tqdm import tqdm
    progress = lambda **kw: tqdm(disable=None, file=sys.stderr, leave=False, **kw)
    if args.scheduler is not None:
        try:
            from MediaPipe_Dataset import cluster
        except ImportError as e:
            raise InputError(f"--scheduler needs dask.distributed ({e.name} is not installed): {INSTALL_HINT}")
        return f"the cluster at {args.scheduler}", as_input_errors(cluster.cluster_outcomes(inputs, args, progress),
                                                                    cluster.ClusterError)
    jobs = min(args.jobs, len(make_tasks(inputs, args.jobs)) or 1) if args.jobs else \
        default_jobs(len(make_tasks(inputs, len(inputs) or 1)))
    if jobs == 1:
        return f"{jobs} job(s)", serial_outcomes(inputs, args, progress)
    return f"{jobs} job(s)", parallel_outcomes(inputs, args, jobs)


def as_input_errors(outcomes, errors):
    """outcomes, with the exceptions `errors` raised as InputError (one sentence). Run as a
    script, this module is __main__, not the MediaPipe_Dataset.extract that cluster.py imports,
    so cluster.py cannot raise this module's InputError itself."""
    try:
        yield from outcomes
    except errors as e:
        raise InputError(str(e))


def main(argv=None):
    began = time.perf_counter()
    args = parse_args(argv)
    missing = missing_video_extra()
    if missing:
        print(f"error: extract.py needs MediaPipe and OpenCV ({missing} is not installed): {INSTALL_HINT}",
              file=sys.stderr)
        return 1
    folder = class_dir(args.out, args.category, LABELS[args.label])
    other = class_dir(args.out, args.category, 1 - LABELS[args.label])
    try:
        outputs.check_writable(folder, InputError, "samples")
    except InputError as e:
        print(f"error: {e}; nothing extracted", file=sys.stderr)
        return 1
    sources, other_sources = read_sources(folder), read_sources(other) if os.path.isdir(other) else {}
    inputs, skipped = find_inputs(args.inputs, args.out)
    if skipped:
        print(f"Skipped {len(skipped)} file(s) in the folders given that are neither videos nor images: "
              f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}")
    try:
        jobs, outcomes = chosen_outcomes(inputs, args)
    except InputError as e:
        print(f"error: {e}; nothing extracted", file=sys.stderr)
        return 1
    failed, cut, written, frames, seconds = [], [], {}, 0, 0.0
    try:
        for path, (status, result) in outcomes:
            if status == "error":
                print(f"error: {result}", file=sys.stderr)
                failed.append(path)
                continue
            try:
                write_one(path, result, args, folder, sources, other, other_sources, written)
            except InputError as e:
                print(f"error: {e}", file=sys.stderr)
                failed.append(path)
                continue
            frames, seconds = frames + result[1], seconds + result[4]
            if result[5]:
                print(f"error: {path}: {result[5]}; the samples of the frames read were written", file=sys.stderr)
                cut.append(path)
    except InputError as e:           # the cluster cannot be used (cluster.ClusterError)
        print(f"error: {e}; {sum(written.values())} samples written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        outcomes.close()
        print(f"\nInterrupted: {sum(written.values())} samples of {len(written)} input(s) written, each whole; "
              f"the samples of the other inputs were not changed.", file=sys.stderr)
        return 130
    wall = time.perf_counter() - began
    speed = (f" ({frames} frames in {wall:.1f} s: {frames / wall:.1f} frames/s over the whole run with {jobs}, "
             f"startup included; {frames / seconds:.1f} frames/s per job through MediaPipe)" if seconds else "")
    print(f"Wrote {sum(written.values())} samples to {folder}{speed}"
          + (f"; {len(failed)} input(s) failed" if failed else "")
          + (f"; {len(cut)} video(s) look cut short (named above)" if cut else ""))
    return 1 if failed or cut else 0


def write_one(path, result, args, folder, sources, other, other_sources, written):
    """Write one input's samples (swapped in for its earlier ones), move its samples out of the
    other class's folder, and report it; raises InputError when the folder cannot be written."""
    samples, sampled, hidden, kind, elapsed, _ = result
    with outputs.signals_held():          # Ctrl-C waits: no staging folder left, the input counted
        try:
            n = write_samples(folder, path, samples, LABELS[args.label], args, sources,
                              kind == "video" and not args.frames)
            moved = remove_from_other_class(other, other_sources, path, {samples[0][0]})
        except WriteError as e:
            raise InputError(str(e))
        written[samples[0][0]] = n            # the same clip again replaces its samples
    report(path, kind, n, sampled, hidden, samples[0][0], elapsed, moved, other)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, outputs.terminate)     # like Ctrl-C: the workers are stopped, nothing half-written
    sys.exit(main())

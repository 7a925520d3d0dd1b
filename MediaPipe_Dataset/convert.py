"""Turn a data folder of per-frame sample files into recording files, or back.

    python MediaPipe_Dataset/convert.py SRC DST --to recordings
    python MediaPipe_Dataset/convert.py DST SRC2 --to frames

--to recordings makes one file per recording (a clip in one folder), its frames in time order,
the fields all its frames share written once at the top and each frame's own file name kept,
so that --to frames gives back the same files, every number and field equal. Samples without
a clip, unreadable files and files that are not samples are copied as they are; train.py reads
them in either layout, and reads both layouts to the same rows in the same order. DST must be
new or empty; it is written in a staging folder beside it and renamed at the end, so an
interrupted run leaves nothing half-written.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from MediaPipe_Dataset.recordings import FRAME_NAME_KEY, is_recording  # noqa: E402
from MediaPipe_Dataset.samples import DataError, class_dir, discover_categories, progress, sample_files  # noqa: E402

PER_FRAME = ("keypoints", "landmarks", "timestamp", "visibility", FRAME_NAME_KEY)   # never shared


def read(path):
    """The parsed JSON of a file, or None when it is not valid JSON (copied as it is)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def recording_of(frames):
    """One recording record of [(file name, sample dict)], in time order (then name order): the
    fields every frame holds with one value at the top, the rest and the file name per frame."""
    frames = sorted(frames, key=lambda nf: (*time_key(nf[1].get("timestamp")), nf[0]))
    first = frames[0][1]
    shared = {k: v for k, v in first.items() if k not in PER_FRAME
              and all(k in d and d[k] == v and type(d[k]) is type(v) for _, d in frames)}
    return {**shared, "frames": [{FRAME_NAME_KEY: name, **{k: v for k, v in d.items() if k not in shared}}
                                 for name, d in frames]}


def time_key(t):
    """Frames in time order; frames without a usable time after them, in name order."""
    usable = isinstance(t, (int, float)) and not isinstance(t, bool) and t == t
    return (0, float(t)) if usable else (1, 0.0)


def frames_of(name, record):
    """[(file name, sample dict)] of one recording record; the frames take the shared fields,
    and a recording without a clip names its clip after its file, so it stays one recording."""
    shared = {k: v for k, v in record.items() if k != "frames"}
    shared.setdefault("clip", os.path.splitext(os.path.basename(name))[0])
    stem, width = os.path.splitext(os.path.basename(name))[0], max(5, len(str(len(record["frames"]) - 1)))
    out = []
    for i, frame in enumerate(record["frames"]):
        own = {k: v for k, v in frame.items() if k != FRAME_NAME_KEY}
        kept = frame.get(FRAME_NAME_KEY)
        safe = isinstance(kept, str) and kept == os.path.basename(kept) and kept.lower().endswith(".json")
        out.append((kept if safe else f"{stem}_{i:0{width}d}.json", {**shared, **own}))
    return out


def groupable(data):
    """A per-frame sample that can join a recording: an object with a clip and no file-name key."""
    return (isinstance(data, dict) and not is_recording(data) and isinstance(data.get("clip"), str)
            and FRAME_NAME_KEY not in data)


def recording_name(clip, taken):
    """A file name for a recording of `clip`, not in `taken`."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip).strip(".") or "recording"
    name, n = f"{stem}.json", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.json"
    taken.add(name.lower())
    return name


def convert_folder(src, dst, to, bar):
    """Convert one class folder (subfolders kept) from src into dst."""
    by_dir = {}
    for name in sample_files(src):
        by_dir.setdefault(os.path.dirname(name), []).append(os.path.basename(name))
    for sub, names in by_dir.items():
        os.makedirs(os.path.join(dst, sub), exist_ok=True)
        clips, taken = {}, {n.lower() for n in names}
        for name in names:
            source, data = os.path.join(src, sub, name), read(os.path.join(src, sub, name))
            bar.update()
            if to == "recordings" and groupable(data):
                clips.setdefault(data["clip"], []).append((name, data))
            elif to == "frames" and is_recording(data) and isinstance(data["frames"], list) \
                    and all(isinstance(f, dict) for f in data["frames"]):
                for frame_name, sample in frames_of(name, data):
                    write(os.path.join(dst, sub, frame_name), sample)
            else:
                shutil.copyfile(source, os.path.join(dst, sub, name))
        for clip, frames in clips.items():
            write(os.path.join(dst, sub, recording_name(clip, taken)), recording_of(frames))


def write(path, data):
    if os.path.exists(path):
        raise DataError(f"{path}: two samples would be written to this file; rename one in the source folder")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(data) + "\n")


def convert(src, dst, to):
    """Convert every category of data folder src into the new folder dst."""
    categories = discover_categories(src)
    folders = [(class_dir(src, c, label), class_dir(dst, c, label)) for c in categories for label in (0, 1)
               if os.path.isdir(class_dir(src, c, label))]
    total = sum(len(sample_files(s)) for s, _ in folders)
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dst))}-", dir=parent)
    try:
        with progress(total=total, desc=f"Converting to {to}", unit="file") as bar:
            for s, d in folders:
                convert_folder(s, os.path.join(staging, os.path.relpath(d, dst)), to, bar)
        if os.path.isdir(dst):
            os.rmdir(dst)            # empty, checked before
        os.replace(staging, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="data folder of <category>/{correct,incorrect} <category>/*.json")
    parser.add_argument("dst", help="new (or empty) folder to write the converted data folder to")
    parser.add_argument("--to", required=True, choices=("recordings", "frames"),
                        help="recordings: one file per recording; frames: one file per frame")
    args = parser.parse_args(argv)
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        sys.exit(f"{args.dst}: the output folder is the input folder; choose a new folder")
    if os.path.exists(args.dst) and (not os.path.isdir(args.dst) or os.listdir(args.dst)):
        sys.exit(f"{args.dst}: already exists and is not an empty folder; choose a new folder")
    try:
        n = convert(args.src, args.dst, args.to)
    except DataError as e:
        sys.exit(str(e))
    except OSError as e:
        sys.exit(f"{e.filename or args.dst}: cannot write ({e.strerror or e.__class__.__name__}); nothing written")
    print(f"{args.src} -> {args.dst}: {n} file(s) read, written as {args.to}")


if __name__ == "__main__":
    main()

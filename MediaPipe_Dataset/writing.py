"""How extract.py writes what it found: one recording file per video (`<clip>.json`, the
format of recordings.py, the default) or one file per frame (`<clip>_<frame>.json`, --frames);
a photo is always one file. One input's files are written to a hidden staging folder and
then swapped in for its earlier ones (the same clip id, or the same source path if the file
was edited since), so a failure leaves the earlier samples as they were. Standard library only.
"""
import json
import os
import shutil
import tempfile


class WriteError(Exception):
    """A folder that cannot be written, as one sentence."""


def read_sources(folder):
    """{sample file name: its source path} of the samples already in folder, read once per run
    (a file that is not one of ours maps to None and is never touched)."""
    sources = {}
    for name in os.listdir(folder):
        if name.endswith(".json") and not name.startswith("."):
            try:
                with open(os.path.join(folder, name)) as f:
                    sources[name] = json.load(f).get("source")
            except (OSError, ValueError, AttributeError, RecursionError):
                sources[name] = None
    return sources


def samples_of(sources, source, clips):
    """The sample files in a read_sources index that come from `source` (an absolute path) or
    belong to one of `clips` (the file was edited since): `<clip>_<frame>.json` or `<clip>.json`."""
    return [n for n, src in sources.items() if src == source or n.rsplit("_", 1)[0] in clips or n[:-5] in clips]


def shared(clip, source, label, args):
    """The fields every sample of one input holds."""
    fields = {"label": label, "category": args.category, "clip": clip, "source": source}
    if args.subject is not None:
        fields["subject"] = args.subject
    if args.fault:
        fields["fault"] = args.fault[0] if len(args.fault) == 1 else args.fault
    return fields


def files_of(samples, source, label, args, recording):
    """{file name: JSON object} of one input's samples [(clip, frame index, seconds, landmarks)]:
    one recording file, or one file per frame (a per-frame sample's keys in their old order)."""
    clip = samples[0][0]
    fields = shared(clip, source, label, args)
    if recording:
        return {f"{clip}.json": {**fields, "frames": [{"keypoints": marks, "timestamp": seconds, "frame": index}
                                                      for _, index, seconds, marks in samples]}}
    files = {}
    for _, index, seconds, marks in samples:
        sample = {"keypoints": marks, "label": label, "category": args.category, "timestamp": seconds,
                  "clip": clip, "source": source, "frame": index}
        files[f"{clip}_{index:06d}.json"] = {**sample, **fields}
    return files


def write_samples(folder, source, samples, label, args, sources, recording):
    """Write one input's samples (files_of), then swap them in for that input's earlier ones.
    `sources` (read_sources) is kept up to date. How many samples were written."""
    source = os.path.abspath(source)
    try:
        staging = tempfile.mkdtemp(prefix=".extract-", dir=folder)
    except OSError as e:
        raise WriteError(f"{folder}: cannot write samples there ({e.strerror or e.__class__.__name__})")
    try:
        files = files_of(samples, source, label, args, recording)
        for name, data in files.items():
            with open(os.path.join(staging, name), "w") as f:
                json.dump(data, f)
        earlier = set(samples_of(sources, source, {samples[0][0]}))
        for name in earlier - set(files):
            os.remove(os.path.join(folder, name))
            del sources[name]
        for name in files:
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
            sources[name] = source
    except OSError as e:
        raise WriteError(f"{folder}: cannot write samples there ({e.strerror or e.__class__.__name__})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(samples)


def remove_from_other_class(folder, sources, source, clips):
    """Remove the samples of `source` (or of its clips) from the other class's folder: an
    input re-extracted with the other --label moves there. How many files went."""
    names = samples_of(sources, os.path.abspath(source), clips)
    try:
        for name in names:
            os.remove(os.path.join(folder, name))
            del sources[name]
    except OSError as e:
        raise WriteError(f"{folder}: cannot remove the earlier samples of {source} there "
                         f"({e.strerror or e.__class__.__name__})")
    return len(names)

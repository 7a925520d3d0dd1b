"""Benchmark: loading and training at 10K, 100K and 1M frames, in either layout.

    python MediaPipe_Dataset/benchmark_scale.py --frames 10000 100000 1000000 --work /tmp/scale
    python MediaPipe_Dataset/benchmark_scale.py --frames 100000 --cv --work /tmp/scale

For each N it writes N synthetic stance frames (synthesize.py's generator, its clips as
recordings) in the per-frame layout and in recording files, measures their disk use (du) and
how long the Dataset takes to load each, then runs `train.py` (frame and motion model) on the
recording files and, with --cv, `train.py --cv 5`, each in a child process under
/usr/bin/time-style accounting (wall time and peak resident memory, from os.wait4). Not a
test: the figures are for the README's table and depend on the machine.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from MediaPipe_Dataset import synthesize  # noqa: E402
from MediaPipe_Dataset.convert import recording_name, recording_of  # noqa: E402
from MediaPipe_Dataset.recordings import FRAME_NAME_KEY  # noqa: E402
from MediaPipe_Dataset.samples import class_dir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATEGORY = "stance"


FRAMES_PER_CLIP = (200, 400)    # recordings of 40-80 s at synthesize.py's 5 frames/s


def frames(n, seed=0):
    """N synthetic frames (sample dicts) from synthesize.py's generator, in recordings of
    FRAMES_PER_CLIP frames rather than the bundled set's few."""
    return synthesize.synthesize(CATEGORY, seed, n, FRAMES_PER_CLIP)


def generate(out, n, layout, seed=0):
    """N synthetic frames of one category in `layout` (frames or recordings) under out, written
    to a staging folder and renamed when complete."""
    staging = out + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    clips = {}
    for s in frames(n, seed):
        if layout == "frames":
            synthesize.write([s], staging)
        else:
            clips.setdefault((s["label"], s["clip"]), []).append({k: v for k, v in s.items() if not k.startswith("_")})
    taken = set()
    for (label, clip), samples in clips.items():      # as extract.py writes a video: no per-frame names
        folder = class_dir(staging, CATEGORY, label)
        os.makedirs(folder, exist_ok=True)
        record = recording_of([("", s) for s in samples])
        for frame in record["frames"]:
            del frame[FRAME_NAME_KEY]
        with open(os.path.join(folder, recording_name(clip, taken)), "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(record) + "\n")
    os.replace(staging, out)


def disk_usage(folder):
    """Bytes on disk, as du counts them (allocated blocks)."""
    return int(subprocess.run(["du", "-sk", folder], capture_output=True, text=True, check=True).stdout.split()[0]) * 1024


def timed(cmd):
    """(seconds, peak resident MB, exit code) of a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    err = child.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(err[-2000:], file=sys.stderr)
    return round(seconds, 1), round(usage.ru_maxrss / 1024), code


LOAD = ("import sys, time; from MediaPipe_Dataset.samples import Dataset; t = time.perf_counter(); "
        "ds = Dataset(sys.argv[1], 'stance'); print(len(ds.y), time.perf_counter() - t)")


def measure(n, work, cv, layouts):
    """The figures of one N."""
    row = {"frames": n}
    for layout in layouts:
        folder = os.path.join(work, f"{layout}_{n}")
        if not os.path.isdir(folder):
            generate(folder, n, layout)
        row[f"{layout}_disk_mb"] = round(disk_usage(folder) / 2**20, 1)
        row[f"{layout}_files"] = sum(len(fs) for _, _, fs in os.walk(folder))
        row[f"{layout}_load_s"], row[f"{layout}_load_mb"], _ = timed([sys.executable, "-c", LOAD, folder])
    data = os.path.join(work, f"{layouts[-1]}_{n}")
    models = os.path.join(work, f"models_{n}")
    row["train_s"], row["train_mb"], row["train_exit"] = timed(
        [sys.executable, "train.py", "--data-dir", data, "--categories", CATEGORY, "--models-dir", models,
         "--json", os.path.join(work, f"train_{n}.json")])
    if cv:
        row["cv_s"], row["cv_mb"], row["cv_exit"] = timed(
            [sys.executable, "train.py", "--data-dir", data, "--categories", CATEGORY, "--cv", "5",
             "--models-dir", models, "--json", os.path.join(work, f"cv_{n}.json")])
        with open(os.path.join(work, f"cv_{n}.json")) as f:
            figures = json.load(f)[CATEGORY]
        row["cv_model_seconds"] = {name: v.get("seconds") for name, v in figures.items() if isinstance(v, dict)}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10000, 100000, 1000000],
                        help="dataset sizes N (default: 10000 100000 1000000)")
    parser.add_argument("--work", required=True, help="folder for the generated data and models (kept for reruns)")
    parser.add_argument("--cv", action="store_true", help="also time train.py --cv 5")
    parser.add_argument("--layouts", nargs="+", choices=("frames", "recordings"), default=["frames", "recordings"],
                        help="layouts to write and load (default: both; training uses the last)")
    parser.add_argument("--generate-only", metavar="LAYOUT", choices=("frames", "recordings"),
                        help="only write the data of each N in this layout, under --work")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.generate_only:
        for n in args.frames:
            generate(os.path.join(args.work, f"{args.generate_only}_{n}"), n, args.generate_only)
        return
    rows = []
    for n in args.frames:
        rows.append(measure(n, args.work, args.cv, args.layouts))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()

"""Benchmark of `extract.py --jobs` (or `--scheduler`): the same videos with --jobs 1 and with
the default, in one run.

    python MediaPipe_Dataset/benchmark_jobs.py ../shared/fixtures/pose2sim/cam01.mp4 --copies 4
    python MediaPipe_Dataset/benchmark_jobs.py ../shared/fixtures/pose2sim/cam01.mp4 --copies 4 --cluster 2

With --cluster N the other setting is `--scheduler` on a Dask LocalCluster of N single-threaded
worker processes, started once before the first round (as a cluster's workers are running
before extract.py is), and the peak memory is that of extract.py alone.

Copies the video into a temporary folder, then runs extract.py on the copies (every frame,
--fps 0) with --jobs 1 and with the default --jobs, alternating, --rounds times each. For each run
it prints the wall time (startup included), frames per second over the whole run, and peak
memory: all the run's processes together (their RSS summed, sampled every 50 ms from /proc)
and its largest worker. Then the speed-up (median times) and whether the whole run's peak
stays within N x one worker's peak + 200 MB. Linux only (it reads /proc). Standard library only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

EXTRACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extract.py")
MARGIN_MB = 200


def rss_kb(pid):
    """Resident memory of one process in kB, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def tree(pid):
    """pid and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spawn_main" in f.read()
    except OSError:
        return False


def run_once(videos, out, jobs, scheduler=None):
    """(seconds, frames, peak MB of the whole run, peak MB of its largest worker or of the run
    itself with one job) of one extract.py run; with scheduler, --scheduler instead of --jobs."""
    command = [sys.executable, EXTRACT, *videos, "--out", out, "--category", "bench", "--label", "correct",
               "--fps", "0"] + ([] if jobs is None else ["--jobs", str(jobs)]) + \
        ([] if scheduler is None else ["--scheduler", scheduler])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks, worker_peak, stop = [0], {}, threading.Event()

    def sample():
        while not stop.is_set():
            pids = tree(process.pid)
            sizes = {p: rss_kb(p) for p in pids}
            peaks[0] = max(peaks[0], sum(sizes.values()))
            for p, size in sizes.items():
                if is_worker(p) or jobs == 1:
                    worker_peak[p] = max(worker_peak.get(p, 0), size)
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"extract.py failed ({process.returncode}):\n" + "\n".join(stderr.strip().splitlines()[-5:]))
    frames = sum(int(line.split(" samples from ")[1].split()[0]) for line in stdout.splitlines()
                 if " samples from " in line)
    return seconds, frames, peaks[0] / 1024, max(worker_peak.values(), default=0) / 1024, stdout.splitlines()[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description="Time extract.py with --jobs 1 against the default --jobs.")
    p.add_argument("video", help="a video to copy, e.g. ../shared/fixtures/pose2sim/cam01.mp4")
    p.add_argument("--copies", type=int, default=4, help="copies of the video to extract (default: 4)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each setting, alternating (default: 1)")
    p.add_argument("--cluster", type=int, metavar="N",
                   help="compare --jobs 1 with --scheduler on a LocalCluster of N worker processes instead of "
                        "with the default --jobs (needs dask.distributed)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.video):
        p.error(f"{args.video}: no such file")
    if args.cluster:
        from distributed import LocalCluster
        with LocalCluster(n_workers=args.cluster, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=50) as cluster:
            return compare(args, cluster.scheduler_address)
    return compare(args)


def compare(args, scheduler=None):
    """Run both settings args.rounds times, alternating, and print the figures."""
    other = f"--scheduler (a cluster of {args.cluster} workers)" if scheduler else "the default --jobs"
    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for i in range(args.copies):
            videos.append(os.path.join(tmp, f"copy{i}{os.path.splitext(args.video)[1]}"))
            shutil.copy(args.video, videos[-1])
        figures = {1: [], None: []}
        for r in range(args.rounds):
            for jobs in (1, None):
                out = os.path.join(tmp, f"out_{jobs}_{r}")
                figures[jobs].append(run_once(videos, out, jobs, scheduler if jobs is None else None))
                seconds, frames, peak, worker, last = figures[jobs][-1]
                print(f"{'--jobs 1' if jobs else other}: {seconds:.2f} s, {frames / seconds:.1f} frames/s over the "
                      f"whole run; " + (f"peak memory {peak:.0f} MB in extract.py (the workers are the cluster's)"
                                        if scheduler and not jobs else f"peak memory {peak:.0f} MB in all, "
                      f"{worker:.0f} MB in its largest {'process' if jobs == 1 else 'worker'}") + f"\n  extract.py: {last}")
    one, default = (statistics.median(f[0] for f in figures[k]) for k in (1, None))
    if scheduler:
        print(f"Speed-up of {other} over --jobs 1: {one / default:.2f}x (median of {args.rounds} run(s) each: "
              f"{one:.2f} s against {default:.2f} s)")
        return
    n = int(figures[None][-1][4].split(" with ")[1].split()[0])
    peak, worker = max(f[2] for f in figures[None]), max(f[3] for f in figures[None])
    print(f"Speed-up of the default --jobs ({n}) over --jobs 1: {one / default:.2f}x (median of {args.rounds} "
          f"run(s) each: {one:.2f} s against {default:.2f} s)")
    print(f"Peak memory of the default run: {peak:.0f} MB, against {n} x {worker:.0f} MB + {MARGIN_MB} MB = "
          f"{n * worker + MARGIN_MB:.0f} MB: {'within' if peak <= n * worker + MARGIN_MB else 'OVER'}")


if __name__ == "__main__":
    main()

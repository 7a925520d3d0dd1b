"""extract.py --scheduler (issue 29) on a Dask LocalCluster of 2 worker processes: the same
bytes as --jobs 1, a lost worker costs only the video it held, Ctrl-C cancels the tasks, and
a scheduler that cannot be reached is one sentence."""
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_main
from test_extract import CLIP, FRAME, copies_of_the_clip, extract, fixture_frames, write_video

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mediapipe", "cv2", "distributed")),
    reason="the video extra is not installed here (pip install -r requirements-video.txt); CI installs it")
SCRIPT = os.path.join(ROOT, "MediaPipe_Dataset", "extract.py")


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes, and a client of it. Its scheduler
    gives each worker one task at a time (worker-saturation 1.0, not 1.1, which lets a worker
    hold a second task that it has not started) and names a video as lost at the first worker
    that dies with it (allowed-failures 0, not 3), so that a test can tell which videos a kill costs."""
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                                    "distributed.scheduler.worker-saturation": 1.0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.CRITICAL) as local, Client(local) as client:
        yield local, client


def extraction(inputs, out, *flags):
    return [sys.executable, "-u", SCRIPT, *map(str, inputs), "--out", str(out), "--category", "pose",
            "--label", "correct", "--fps", "0", *flags]


def long_videos(folder, n):
    """n different 120-frame videos (the clip four times), each a few seconds of MediaPipe."""
    folder.mkdir()
    write_video(folder / "long.mp4", fixture_frames() * 4)
    for i in range(n):
        (folder / f"long{i}.mp4").write_bytes((folder / "long.mp4").read_bytes() + bytes(i))
    return [folder / f"long{i}.mp4" for i in range(n)]


def wait_until(condition, timeout=60):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_the_cluster_writes_byte_identical_samples_to_jobs_1(tmp_path, cluster):
    local, _ = cluster
    inputs = [CLIP, FRAME, *copies_of_the_clip(tmp_path / "more", 2)]
    for name, flags in (("one", ["--jobs", "1"]), ("cluster", ["--scheduler", local.scheduler_address])):
        run = subprocess.run(extraction(inputs, tmp_path / name, *flags), capture_output=True, text=True)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert f"with the cluster at {local.scheduler_address}" in run.stdout
    assert run.stdout.index(os.path.basename(CLIP)) < run.stdout.index(os.path.basename(FRAME))   # input order
    folder = os.path.join("pose", "correct pose")
    one, other = sorted(os.listdir(tmp_path / "one" / folder)), sorted(os.listdir(tmp_path / "cluster" / folder))
    assert one == other and len(one) == 3 + 1
    for name in one:
        assert (tmp_path / "one" / folder / name).read_bytes() == (tmp_path / "cluster" / folder / name).read_bytes()


def test_a_lost_worker_costs_only_the_video_it_held(tmp_path, cluster):
    local, client = cluster
    videos = long_videos(tmp_path / "videos", 3)
    process = subprocess.Popen(extraction(videos, tmp_path / "d", "--scheduler", local.scheduler_address),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: sum(map(len, client.processing().values())) == 2)     # each worker holds a video
    for pid in client.run(os.getpid).values():
        os.kill(pid, signal.SIGKILL)
    out, err = process.communicate(timeout=180)
    lost = [ln for ln in err.splitlines() if "the Dask worker extracting it was lost" in ln]
    assert process.returncode == 1 and "Traceback" not in err and len(lost) == 2, err
    (kept,) = [v for v in videos if not any(ln.startswith(f"error: {v}: ") for ln in lost)]
    assert out.count(" samples from ") == 1 and "; 2 input(s) failed" in out      # the third went on
    assert os.listdir(tmp_path / "d" / "pose" / "correct pose") == [f"{extract.clip_id(str(kept))}.json"]
    client.wait_for_workers(2, timeout=60)


def test_ctrl_c_cancels_the_tasks(tmp_path, cluster):
    local, client = cluster
    videos = long_videos(tmp_path / "videos", 4)
    process = subprocess.Popen(extraction(videos, tmp_path / "d", "--scheduler", local.scheduler_address),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: sum(map(len, client.processing().values())) >= 1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Interrupted: " in err and "Traceback" not in err, err
    wait_until(lambda: not local.scheduler.tasks, timeout=30)        # nothing left on the cluster


def test_a_scheduler_that_cannot_be_reached_is_one_sentence(tmp_path, monkeypatch):
    from MediaPipe_Dataset import cluster as module
    monkeypatch.setattr(module, "CONNECT_TIMEOUT_S", 1)
    code, _, err = run_main(extract, CLIP, "--out", tmp_path / "d", "--category", "pose", "--label", "correct",
                            "--scheduler", "tcp://127.0.0.1:9")
    (line,) = err.strip().splitlines()
    assert code == 1 and line.startswith("error: cannot reach a Dask scheduler at tcp://127.0.0.1:9 within 1 s")
    assert not os.listdir(tmp_path / "d" / "pose" / "correct pose")


def test_jobs_and_scheduler_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        extract.parse_args([CLIP, "--out", "d", "--category", "pose", "--label", "correct", "--jobs", "2",
                            "--scheduler", "tcp://127.0.0.1:8786"])
    assert e.value.code == 2 and "--jobs and --scheduler exclude each other" in capsys.readouterr().err


def test_the_readme_commands_need_this_package_on_the_client_only(tmp_path):
    """`dask scheduler` and `dask worker` started, as the README says, outside the project and
    without it on their path: the scheduler unpickles each task without this package, and the
    workers get it from the client."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = []

    def start(*command):
        started.append(subprocess.Popen([sys.executable, "-m", "dask", *command], cwd=tmp_path, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        start("scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", "scheduler.json")
        wait_until(lambda: (tmp_path / "scheduler.json").exists())
        start("worker", "--scheduler-file", "scheduler.json", "--nworkers", "1", "--nthreads", "1", "--no-dashboard")
        address = json.loads((tmp_path / "scheduler.json").read_text())["address"]
        run = subprocess.run(extraction([CLIP], tmp_path / "d", "--scheduler", address), capture_output=True, text=True)
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert os.listdir(tmp_path / "d" / "pose" / "correct pose") == [f"{extract.clip_id(CLIP)}.json"]

"""extract.py --scheduler ADDRESS: extraction on a running Dask distributed scheduler.

Each input is one task (a video's frames stay in order in one worker, so MediaPipe's tracking
works as with --jobs 1). Each worker process loads MediaPipe once (MediaPipeOnWorker, a worker
plugin) and runs one task at a time. The client, extract.py, takes the results in input order
and writes every file itself, so the output is byte-identical to --jobs 1. A worker lost in
the middle of a video costs only that video: Dask gives a task whose worker died to another
worker, up to its `distributed.scheduler.allowed-failures` (3 by default); past that, the video
is named as an error and the others go on. Ctrl-C (or SIGTERM) cancels the tasks.

Workers need the video extra installed and nothing else: the client sends them this package
(distributed's UploadFile worker plugin puts it on their sys.path), and they open the videos
by the paths extract.py was given. The scheduler needs only distributed: it unpickles every
task it is sent, so each task is `on_worker`'s function, pickled by value, which imports this
package only when it runs on a worker. See README "Extraction on several machines".
"""
import os
import tempfile
import threading
import uuid
import zipfile

from distributed import Client, WorkerPlugin
from distributed.diagnostics.plugin import UploadFile
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from MediaPipe_Dataset import extract

CONNECT_TIMEOUT_S = 10
WORKER_WAIT_S = 60
MEDIAPIPE = {}              # in a worker process: load_mediapipe()'s result, loaded once
ONE_AT_A_TIME = threading.Lock()    # MediaPipe's photo Pose is one per process: one task at a time


class ClusterError(Exception):
    """The scheduler cannot be reached or has no workers, as one sentence."""


class MediaPipeOnWorker(WorkerPlugin):
    """Loads MediaPipe and OpenCV once when a worker starts (or joins a running client)."""
    name = "extract-mediapipe"

    def setup(self, worker):
        loaded()


def loaded():
    if "loaded" not in MEDIAPIPE:
        MEDIAPIPE["loaded"] = extract.loaded_mediapipe()
    return MEDIAPIPE["loaded"]


def run_task(path, args):
    """One input's outcome (extract.outcome), on a worker."""
    with ONE_AT_A_TIME:
        return extract.outcome(path, loaded(), args, extract.no_progress)


def on_worker():
    """The function each task runs: run_task, reached by importing this package when the task
    runs. cloudpickle pickles a nested function by value (its code, not a module reference) and
    this one uses no global name, so the scheduler unpickles it without this package."""
    def extract_one_input(path, args):
        import importlib
        return importlib.import_module("MediaPipe_Dataset.cluster").run_task(path, args)
    return extract_one_input


def connect(address):
    """A Client of the scheduler at address, with MediaPipeOnWorker on every worker and at
    least one worker joined; raises ClusterError."""
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(f"cannot reach a Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s "
                           f"({e.__class__.__name__}: {e}); start one with `dask scheduler`")
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        client.close()
        raise ClusterError(f"no Dask worker joined the scheduler at {address} within {WORKER_WAIT_S} s; start "
                           f"workers with `dask worker {address} --nthreads 1`")
    with tempfile.TemporaryDirectory() as folder:        # to the workers only, not to the scheduler
        client.register_plugin(UploadFile(package_zip(folder)), name="extract-package")
    client.register_plugin(MediaPipeOnWorker())
    return client


def package_zip(folder):
    """MediaPipe_Dataset's Python files as a zip in folder, for the workers' sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(folder, "MediaPipe_Dataset.zip")
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(here)):
            if name.endswith(".py"):
                z.write(os.path.join(here, name), f"MediaPipe_Dataset/{name}")
    return path


def cluster_outcomes(inputs, args, progress):
    """(path, outcome) of each input in input order, each a task on the cluster at
    args.scheduler. Closing the generator (the run ends or is interrupted) cancels the tasks
    not yet done."""
    client, run = connect(args.scheduler), uuid.uuid4().hex[:8]     # two runs at once never share a key
    task = on_worker()
    futures = [client.submit(task, path, args, key=f"extract-{run}-{i}-{os.path.basename(path)}", pure=False)
               for i, path in enumerate(inputs)]
    try:
        with progress(total=len(inputs), desc=f"Inputs on {args.scheduler}", unit="input") as bar:
            for path, future in zip(inputs, futures):
                yield path, result_of(path, future)
                bar.update(1)
    finally:
        client.cancel(futures)
        client.close()


def result_of(path, future):
    """A task's outcome; a task whose workers all died is this input's error."""
    try:
        return future.result()
    except KilledWorker as e:
        return "error", (f"{path}: the Dask worker extracting it was lost (it died or was cut off; "
                         f"{e.allowed_failures + 1} worker(s) lost it, more than the scheduler's allowed-failures)")
    except FutureCancelledError:
        return "error", f"{path}: its task was cancelled on the scheduler"
    except Exception as e:            # the task could not run there (e.g. a worker without the video extra)
        return "error", f"{path}: its task failed on the cluster ({e.__class__.__name__}: {e})"

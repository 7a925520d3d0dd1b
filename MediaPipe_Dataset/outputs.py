"""Writing files so that a failure leaves nothing half-written, for train.py, quantize.py and
extract.py: temporary files renamed into place, the leftovers of killed runs, a lock on the
models folder, writable folders, signals held while files are swapped in, the --json report and
the exit code. Standard library only.
"""
import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import sys
import tempfile

TEMP_PREFIX = ".tmp-"      # our temporary files: .tmp-<pid>-<target name>.<random>


def temp_path(folder, name):
    """A new empty temporary file in folder, for writing `name` and renaming it into place.
    It gets the mode any new file gets under the user's umask (mkstemp alone gives 0600,
    which a service running as another user could not read), and the process id in its
    name, so that a later run can tell a leftover from a file still being written."""
    fd, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{name}.", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True         # exists, owned by someone else
    return True


def remove_stale_temps(folder):
    """Remove the temporary files that a killed run of ours left in folder: .tmp-<pid>-...
    whose process is gone. Nothing else is provably ours (a model of a category named like
    `.squat.baseline` looks like an older version's temporary file), so nothing else goes."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        ours = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", name)
        if not ours or pid_alive(int(ours.group(1))):
            continue
        try:
            os.remove(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def report_stale_temps(folder):
    removed = remove_stale_temps(folder)
    if removed:
        print(f"Removed {removed} temporary file(s) that an interrupted run left in {folder}", file=sys.stderr)


def check_writable(folder, error, what):
    """Create folder if needed and check that a file can be written there; raise error (an
    exception class) with one sentence saying that `what` cannot be written, otherwise."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise error(f"{folder}: cannot write {what} there ({e.strerror or e.__class__.__name__})")


@contextlib.contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on folder (flock on the folder itself: no lock file) while a run
    writes there. A run that finds it held says so in one line and waits; the lock goes with
    the process, however it ends. Where there is no fcntl (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{folder}: another train.py or quantize.py run is writing there; waiting for it to finish "
                  f"(Ctrl-C stops)", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def through_descriptor(path):
    """Whether path leads through links to an open file descriptor (/dev/stdout, /dev/fd/1)."""
    for _ in range(40):
        if path.startswith(("/proc/", "/dev/fd/")):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return False


def writes_through(path):
    """Whether a report to path is written straight into it (a descriptor, device or pipe)
    rather than to a temporary file renamed onto the regular file that path names."""
    real = os.path.realpath(path)
    return through_descriptor(path) or (os.path.exists(real) and not stat.S_ISREG(os.stat(real).st_mode))


def check_report_path(path, written, error):
    """Raise error (an exception class) with one sentence unless a --json report can go to
    path: not a folder, none of the files the run itself writes (`written`), and, for a
    regular file, in a folder that exists and can be written."""
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise error(f"{path}: is a folder; --json needs the path of a file")
    if real in {os.path.realpath(p) for p in written}:
        raise error(f"{path}: is a file this run writes itself; choose another --json path")
    if writes_through(path):
        return
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise error(f"{path}: the folder {folder} does not exist, so the JSON report cannot be written")
    check_writable(folder, error, "the JSON report")


def write_json(path, data):
    """Write JSON via a temporary file renamed onto the regular file path names (through a
    link, the link stays), so a failure leaves no half-written report; into a descriptor,
    device or pipe (/dev/stdout) directly, after what was printed."""
    text = json.dumps(data, indent=2) + "\n"
    if writes_through(path):
        sys.stdout.flush()
        with open(path, "a") as f:
            f.write(text)
        return
    write_text(path, text)


def write_text(path, text):
    """Write text (UTF-8) via a temporary file renamed onto the file the path names (through
    a link, the link stays): a failure leaves no half-written file."""
    real = os.path.realpath(path)
    temp = temp_path(os.path.dirname(real), os.path.basename(real))
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, real)
    except BaseException:
        os.remove(temp)
        raise


def finish(results, failed, json_path):
    """Write the --json report if asked, name the failed categories; the exit code."""
    if json_path:
        try:
            write_json(json_path, results)
        except OSError as e:
            print(f"error: {json_path}: cannot write the JSON report ({e.strerror})", file=sys.stderr)
            return 1
    if failed:
        print(f"Failed: {', '.join(failed)} (see the errors above)", file=sys.stderr)
        return 1
    return 0


def quiet_while_loading():
    """Until the caller restores them: Ctrl-C or SIGTERM while the libraries load (torch,
    onnxruntime: a second or so) end in one line and exit 130, not in a traceback."""
    def interrupted(signum, frame):
        print("\nInterrupted while the libraries were loading; nothing written.", file=sys.stderr)
        raise SystemExit(130)
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)


@contextlib.contextmanager
def signals_held():
    """Ctrl-C and SIGTERM wait until the block is done, then arrive as they would have (the
    handlers before the block are called). Python handlers run in the main thread whatever
    thread the signal reached, so a handler that only notes the signal holds them all; outside
    the main thread, where handlers cannot be set, nothing is held."""
    caught = []
    try:
        before = {s: signal.signal(s, lambda number, frame: caught.append(number))
                  for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if caught:
            handler = before[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def terminate(signum, frame):
    """SIGTERM handler: raise KeyboardInterrupt, so that a SIGTERM cleans up like Ctrl-C
    (temporary files removed, one sentence said)."""
    raise KeyboardInterrupt


def file_sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


QUANTIZATION = "dynamic INT8 (onnxruntime.quantization.quantize_dynamic)"   # quantize.py's mark on its files

"""Writing files so that a failure leaves nothing half-written, for train.py, quantize.py and
extract.py: temporary files renamed into place, the leftovers of killed runs, writable
folders, the --json report and the exit code. Standard library only.
"""
import json
import os
import re
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
    """Remove temporary files that a killed run of ours left in folder: .tmp-<pid>-... whose
    process is gone, and the .<category>.<random>.pt/.onnx names of earlier versions."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        ours = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", name)
        left_by_dead_run = ours and not pid_alive(int(ours.group(1)))
        legacy = re.fullmatch(r"\.[^.]+\.[A-Za-z0-9_]{8}\.(pt|onnx)", name)
        if not (left_by_dead_run or legacy):
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


def write_json(path, data):
    """Write JSON via a temporary file, so a failure leaves no half-written report."""
    temp = temp_path(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    try:
        with open(temp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(temp, path)
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


def terminate(signum, frame):
    """SIGTERM handler: raise KeyboardInterrupt, so that a SIGTERM cleans up like Ctrl-C
    (temporary files removed, one sentence said)."""
    raise KeyboardInterrupt

"""The one module that knows models/: every file name, writing a model's files (export with its
checks, the atomic swap) and reading them back (records, load_model, the models quantize.py
finds). Nobody else spells a file name of models/.

A model of a kind is three files that tell they belong together: <name>.pt (state dict),
<name>.onnx (probabilities) and the training record <name>.json, where name is the category
plus the kind's suffix. The record holds the .pt's SHA-1 (`weights_sha1`) and the whole
configuration; the ONNX metadata the record's SHA-1. quantize.py adds <name>_int8.onnx, and
train.py one <category>_report.html per category. torch and onnx are imported where used,
so that extract.py can take the reserved names from here without them.
"""
import errno
import hashlib
import json
import math
import os
import shutil
import time
import warnings

import numpy as np

from MediaPipe_Dataset import outputs
from MediaPipe_Dataset.faults import SUFFIX as FAULT_SUFFIX
from MediaPipe_Dataset.samples import DataError

INT8 = "_int8"
# Suffixes a category may not end in, since its files would collide with another model's:
# quantize.py's, and the kinds' (registry.suffixes(); a test keeps the two in step).
RESERVED_SUFFIXES = (INT8, "_motion", FAULT_SUFFIX)
MODEL_FILES = (".pt", ".onnx", ".json")
CV_REPORT = "cv_report.html"


def model_paths(models_dir, name):
    """{".pt", ".onnx", ".json": path} of the model called name (category + kind suffix)."""
    return {ext: os.path.join(models_dir, f"{name}{ext}") for ext in MODEL_FILES}


def int8_path(models_dir, name):
    return os.path.join(models_dir, f"{name}{INT8}.onnx")


def report_path(models_dir, category):
    return os.path.join(models_dir, f"{category}_report.html")


def cv_report_path(models_dir):
    return os.path.join(models_dir, CV_REPORT)


def run_outputs(models_dir, categories, kinds, cv):
    """Every file a train.py run may write in models_dir (--json must be none of them)."""
    if cv:
        return [cv_report_path(models_dir)]
    found = []
    for category in categories:
        for kind in kinds:
            for name in (kind.paths_name(category), kind.paths_name(category) + FAULT_SUFFIX):   # and its fault model's
                found += [*model_paths(models_dir, name).values(), int8_path(models_dir, name)]
        found.append(report_path(models_dir, category))
    return found


def report_collision(category):
    """Whether a category's report would be --cv's report (a category named `cv`)."""
    return report_path("", category) == cv_report_path("")


def reserved_suffix(category, suffixes=RESERVED_SUFFIXES):
    """The reserved suffix a category name ends in, or None."""
    return next((s for s in suffixes if category.endswith(s)), None)


# ----------------------------------------------------------------------------- export
def export_onnx(model, path, metadata, input_shape, opset=17):
    """torch's ONNX exporter: input `input` [N, *input_shape] float32 -> `probabilities` [N, 2].

    Uses the TorchScript-based exporter (dynamo=False): for this small static graph it
    takes ~0.05 s, while the dynamo exporter (importing onnxscript, rebuilding its op
    registry on every call) made `python train.py` nearly twice as slow. The result is
    checked either way: onnx.checker, then ONNX Runtime against PyTorch.
    """
    import onnx
    import torch
    from MediaPipe_Dataset.model import WithSoftmax
    wrapped = WithSoftmax(model).eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # the exporter's deprecation notice
        torch.onnx.export(wrapped, (torch.zeros(2, *input_shape),), path, input_names=["input"],
                          output_names=["probabilities"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})
    proto = onnx.load(path)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def onnx_nodes(path):
    """Operator nodes in an ONNX file, without the Constant and Identity nodes the exporter
    adds (ONNX Runtime folds them away when it loads the model)."""
    import onnx
    return sum(n.op_type not in ("Constant", "Identity") for n in onnx.load(path).graph.node)


def onnx_probabilities(session, x):
    """An ONNX Runtime session's probabilities for inputs x, in passes of
    training.INFERENCE_ROWS inputs: ONNX Runtime holds the activations of a whole pass, 5.5 GB
    for the million parity inputs of a million frames at once (measured with memray)."""
    from MediaPipe_Dataset.training import INFERENCE_ROWS
    parts = [session.run(["probabilities"], {"input": np.ascontiguousarray(x[i:i + INFERENCE_ROWS], dtype=np.float32)})[0]
             for i in range(0, len(x), INFERENCE_ROWS)]
    return np.concatenate(parts) if parts else session.run(["probabilities"], {"input": x.astype(np.float32)})[0]


def onnx_parity(model, path, x):
    """Largest absolute difference between ONNX Runtime and PyTorch probabilities on x;
    inf when either gives a value that is not a finite probability."""
    import onnxruntime as ort
    from MediaPipe_Dataset.training import probabilities
    onnx_out = onnx_probabilities(ort.InferenceSession(path, providers=["CPUExecutionProvider"]), x)
    torch_out = probabilities(model.cpu(), x)
    if not (np.isfinite(onnx_out).all() and np.isfinite(torch_out).all()):
        return math.inf
    return float(np.abs(onnx_out - torch_out).max())


class Swap:
    """The files of one training run of a category (every kind's model, the report), written
    to temporary files in models/ and renamed into place together by commit(): training
    records last, Ctrl-C and SIGTERM held while the renames run, so that an interrupt leaves
    either all the earlier files or all the new ones. Only a SIGKILL (or power loss) in those
    milliseconds can leave some new files beside old ones; the records tell (each names its
    .pt's SHA-1, each ONNX its record's, all of one run the same `run`), and load_model and
    quantize.py refuse a model whose files disagree, saying so. discard() removes what was
    not committed."""

    def __init__(self, folder):
        self.folder, self.pending, self.committed = folder, [], False
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"

    def temp(self, target):
        """A new temporary file that commit() renames onto target."""
        path = outputs.temp_path(os.path.dirname(target) or ".", os.path.basename(target))
        self.pending.append((path, target))
        return path

    def commit(self):
        """Rename every file into place, records last; a rename that fails (the disk, a folder
        in the way) raises DataError naming what was and was not replaced."""
        done = []
        with outputs.signals_held():
            for temp, target in sorted(self.pending, key=lambda pair: pair[1].endswith(".json")):
                try:
                    os.replace(temp, target)
                except OSError as e:
                    kept = [t for _, t in self.pending if t not in done]
                    raise DataError(f"{target}: cannot be put in place ({e.strerror or e.__class__.__name__}); "
                                    f"replaced: {', '.join(map(os.path.basename, done)) or 'nothing'}; kept as "
                                    f"they were: {', '.join(map(os.path.basename, kept))}")
                done.append(target)
            self.pending, self.committed = [], True

    def discard(self):
        for temp, _ in self.pending:
            if os.path.exists(temp):
                os.remove(temp)
        self.pending = []


def write_failure(e, path):
    """One sentence for an OSError or RuntimeError (torch.save's) met writing path: the reason,
    and whether the disk is full."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
    full = getattr(e, "errno", None) == errno.ENOSPC
    if not full:
        try:
            full = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 1 << 20
        except OSError:
            pass
    return "the disk is full" if full else reason


def stage_model(model, name, swap, metadata, record, check_x, input_shape):
    """Write <name>.pt, <name>.onnx and <name>.json as temporary files of swap (renamed in place
    by swap.commit()), once the ONNX model has passed the checker and matches PyTorch within
    1e-5 on check_x (the kind's parity_inputs). The record gets the .pt's SHA-1 and the swap's
    run. Returns what will be written, as a dict; failures are DataErrors, and earlier models
    stay."""
    import torch
    targets = model_paths(swap.folder, name)
    try:
        temps = {ext: swap.temp(target) for ext, target in targets.items()}
        torch.save(model.state_dict(), temps[".pt"])
        record_text = json.dumps({**record, "run": swap.run, "weights_sha1": outputs.file_sha1(temps[".pt"]),
                                  "weights_bytes": os.path.getsize(temps[".pt"])}, indent=1) + "\n"
        with open(temps[".json"], "w") as f:
            f.write(record_text)
        record_sha1 = hashlib.sha1(record_text.encode()).hexdigest()
        export_onnx(model, temps[".onnx"], {**metadata, "training_record": os.path.basename(targets[".json"]),
                                            "training_record_sha1": record_sha1}, input_shape)
        diff = onnx_parity(model, temps[".onnx"], check_x)
        if not diff <= 1e-5:       # also catches NaN and inf
            raise DataError(f"{targets['.onnx']}: ONNX Runtime and PyTorch disagree by {diff:.2e} "
                            f"(more than 1e-5, or outputs not finite); models not written")
        nodes = onnx_nodes(temps[".onnx"])
    except (OSError, RuntimeError) as e:       # torch.save reports a full disk as RuntimeError
        raise DataError(f"{swap.folder}: cannot write the {name} models ({write_failure(e, targets['.pt'])}); "
                        f"earlier models kept")
    return {"name": name, "files": [targets[".pt"], targets[".onnx"]], "record": targets[".json"], "parity": diff,
            "nodes": nodes, "record_sha1": record_sha1, "removed_int8": None}


def write_model(model, name, models_dir, metadata, record, check_x, input_shape):
    """stage_model and commit at once: one model's three files; what was written."""
    swap = Swap(models_dir)
    try:
        written = stage_model(model, name, swap, metadata, record, check_x, input_shape)
        swap.commit()
    finally:
        swap.discard()
    written["removed_int8"] = remove_stale_int8(models_dir, name, written["record_sha1"])
    return written


def remove_stale_int8(models_dir, name, record_sha1):
    """Remove <name>_int8.onnx when quantize.py made it from another model than the one whose
    training record has record_sha1 (a retrained category); its path, or None. A file of that
    name that quantize.py did not make is left alone."""
    path = int8_path(models_dir, name)
    meta = onnx_metadata(path) if os.path.isfile(path) else None
    if not meta or meta.get("quantization") != outputs.QUANTIZATION or meta.get("training_record_sha1") == record_sha1:
        return None
    os.remove(path)
    return path


# ----------------------------------------------------------------------------- reading
def onnx_metadata(path):
    """{key: value} of an ONNX file's metadata, or None when it is not ONNX at all."""
    import onnx
    try:
        return {p.key: p.value for p in onnx.load(path).metadata_props}
    except Exception:          # onnx raises several unrelated types for corrupt files
        return None


def read_record(path, of=None):
    """The training record at path (of the model file `of`), or raise DataError naming what is wrong."""
    try:
        with open(path) as f:
            record = json.load(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read the training record{' of ' + of if of else ''} ({e.strerror})")
    except ValueError:
        raise DataError(f"{path}: not a training record (not valid JSON)")
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
        raise DataError(f"{path}: not a training record with a model configuration (made by an older train.py?)")
    return record


def find_models(models_dir, faults=False):
    """{name: (ONNX path, kind, record)} of every model in models_dir, found by its training
    record (<name>.json naming a registered kind, with <name>.onnx beside it), in name order;
    the fault models (faults.py) only when asked."""
    from MediaPipe_Dataset import registry
    found = {}
    for entry in sorted(os.listdir(models_dir)) if os.path.isdir(models_dir) else []:
        name, ext = os.path.splitext(entry)
        paths = model_paths(models_dir, name)
        if ext != ".json" or name.startswith(".") or not os.path.isfile(paths[".onnx"]):
            continue
        try:
            record = read_record(paths[".json"])
        except DataError:
            continue
        kind = registry.of_record(record)
        if kind is not None and (faults or kind.base is None):
            found[name] = (paths[".onnx"], kind, record)
    return found


def unrecorded_models(models_dir):
    """The ONNX models train.py wrote in models_dir whose training record is missing or not a
    record (deleted, damaged): find_models cannot take them."""
    found = []
    for entry in sorted(os.listdir(models_dir)) if os.path.isdir(models_dir) else []:
        name, ext = os.path.splitext(entry)
        paths = model_paths(models_dir, name)
        if ext != ".onnx" or name.startswith(".") or name.endswith(INT8):
            continue
        try:
            read_record(paths[".json"])
        except DataError as e:
            meta = onnx_metadata(paths[".onnx"]) or {}
            if "training_record" in meta:
                found.append((paths[".onnx"], str(e)))
    return found


def mixed_runs(models):
    """Sentences naming the categories whose models (find_models's) come from different
    training runs (their records' `run` differ), e.g. a frame model retrained with --no-motion
    beside an earlier motion model."""
    runs = {}
    for name, (_, _, record) in models.items():
        runs.setdefault(record.get("category", name), {})[name] = record.get("run")
    found = []
    for names in runs.values():
        if len(set(names.values())) > 1:
            each = ", ".join(f"{n}: {r or 'before runs were recorded'}" for n, r in names.items())
            found.append(f"{', '.join(names)} come from different training runs ({each})")
    return found


def load_model(path):
    """models/<category>.pt (or the .pt of any kind, such as <category>_motion.pt) -> the model
    it holds, in eval mode, rebuilt with the configuration in its training record (the .json
    beside it), so that the caller need not know the width or depth it was trained with. A .pt
    that is not the one its record was written with (another run's) is refused. Raises DataError."""
    import torch
    from MediaPipe_Dataset import registry
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not a model file (give the path of a <category>.pt)")
    if os.path.splitext(path)[1].lower() != ".pt":
        raise DataError(f"{path}: load_model takes the PyTorch file, {os.path.splitext(path)[0]}.pt (an .onnx "
                        f"file runs with ONNX Runtime)")
    record_path = os.path.splitext(path)[0] + ".json"
    record = read_record(record_path, path)
    kind = registry.of_record(record)
    if kind is None or not isinstance(record["model"].get("config"), dict):
        raise DataError(f"{record_path}: not a training record with a model configuration (made by an "
                        f"older train.py?); load {path} with PoseClassifier() and load_state_dict instead")
    try:
        size, digest = os.path.getsize(path), outputs.file_sha1(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read the model file ({e.strerror or e.__class__.__name__})")
    if size == 0:
        raise DataError(f"{path}: is empty (0 bytes), not a model; retrain, or copy the file again")
    expected = record.get("weights_bytes")
    try:
        state, damage = torch.load(path, map_location="cpu"), None
    except Exception as e:     # torch.load raises many types for a damaged file (EOFError, UnpicklingError, ...)
        state, damage = None, e.__class__.__name__
    if record.get("weights_sha1") not in (None, digest):
        if state is None and isinstance(expected, int) and size < expected:
            raise DataError(f"{path}: is cut short ({size:,} of the {expected:,} bytes its record {record_path} "
                            f"names); copy the file again, or retrain")
        raise DataError(f"{path}: is not the model its training record {record_path} describes (their SHA-1s "
                        f"differ): the two come from different training runs (a run killed while it replaced "
                        f"the files, or files copied from two runs); retrain, or use the files of one run")
    if state is None:
        raise DataError(f"{path}: is damaged: torch.load cannot read it ({damage}); retrain, or copy the file again")
    try:
        model = kind.model_class(**record["model"]["config"])
        model.load_state_dict(state)
    except Exception as e:     # a dict of other keys or shapes, or no dict at all
        raise DataError(f"{path}: does not hold the weights of the {kind.model_class.__name__} its record "
                        f"{record_path} describes ({(str(e).splitlines() or [e.__class__.__name__])[0][:100]})")
    return model.eval()

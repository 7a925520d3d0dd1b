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
import hashlib
import json
import math
import os
import warnings

import numpy as np

from MediaPipe_Dataset import outputs
from MediaPipe_Dataset.samples import DataError

INT8 = "_int8"
# Suffixes a category may not end in, since its files would collide with another model's:
# quantize.py's, and the kinds' (registry.suffixes(); a test keeps the two in step).
RESERVED_SUFFIXES = (INT8, "_motion")
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
            name = kind.paths_name(category)
            found += [*model_paths(models_dir, name).values(), int8_path(models_dir, name)]
        found.append(report_path(models_dir, category))
    return found


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


def onnx_parity(model, path, x):
    """Largest absolute difference between ONNX Runtime and PyTorch probabilities on x;
    inf when either gives a value that is not a finite probability."""
    import onnxruntime as ort
    import torch
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_out = session.run(["probabilities"], {"input": x.astype(np.float32)})[0]
    with torch.no_grad():
        torch_out = torch.softmax(model.cpu()(torch.from_numpy(x)), dim=-1).numpy()
    if not (np.isfinite(onnx_out).all() and np.isfinite(torch_out).all()):
        return math.inf
    return float(np.abs(onnx_out - torch_out).max())


def write_model(model, name, models_dir, metadata, record, check_x, input_shape):
    """Write <name>.pt, <name>.onnx and <name>.json via temporary files, renamed in place only
    once the ONNX model has passed the checker and matches PyTorch within 1e-5 on check_x (the
    kind's parity_inputs). Then an INT8 model quantized from an earlier model of that name is
    removed. Returns what was written, as a dict; failures are DataErrors, and earlier models
    stay."""
    import torch
    targets, temps = model_paths(models_dir, name), {}
    try:
        for ext, target in targets.items():
            temps[ext] = outputs.temp_path(models_dir, os.path.basename(target))
        torch.save(model.state_dict(), temps[".pt"])
        record_text = json.dumps({**record, "weights_sha1": outputs.file_sha1(temps[".pt"])}, indent=1) + "\n"
        with open(temps[".json"], "w") as f:
            f.write(record_text)
        record_sha1 = hashlib.sha1(record_text.encode()).hexdigest()
        export_onnx(model, temps[".onnx"], {**metadata, "training_record": os.path.basename(targets[".json"]),
                                            "training_record_sha1": record_sha1}, input_shape)
        diff = onnx_parity(model, temps[".onnx"], check_x)
        if not diff <= 1e-5:       # also catches NaN and inf
            raise DataError(f"{targets['.onnx']}: ONNX Runtime and PyTorch disagree by {diff:.2e} "
                            f"(more than 1e-5, or outputs not finite); models not written")
        for ext, target in targets.items():
            os.replace(temps.pop(ext), target)
        stale = remove_stale_int8(models_dir, name, record_sha1)
    except (OSError, RuntimeError) as e:       # torch.save reports a full disk as RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        raise DataError(f"{models_dir}: cannot write the {name} models ({reason}); earlier models kept")
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.remove(temp)
    return {"files": [targets[".pt"], targets[".onnx"]], "record": targets[".json"], "parity": diff,
            "nodes": onnx_nodes(targets[".onnx"]), "removed_int8": stale}


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


def find_models(models_dir):
    """{name: (ONNX path, kind, record)} of every model in models_dir, found by its training
    record (<name>.json naming a registered kind, with <name>.onnx beside it), in name order."""
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
        if kind is not None:
            found[name] = (paths[".onnx"], kind, record)
    return found


def load_model(path):
    """models/<category>.pt (or the .pt of any kind, such as <category>_motion.pt) -> the model
    it holds, in eval mode, rebuilt with the configuration in its training record (the .json
    beside it), so that the caller need not know the width or depth it was trained with. A .pt
    that is not the one its record was written with (another run's) is refused. Raises DataError."""
    import torch
    from MediaPipe_Dataset import registry
    record_path = os.path.splitext(path)[0] + ".json"
    record = read_record(record_path, path)
    kind = registry.of_record(record)
    if kind is None or not isinstance(record["model"].get("config"), dict):
        raise DataError(f"{record_path}: not a training record with a model configuration (made by an "
                        f"older train.py?); load {path} with PoseClassifier() and load_state_dict instead")
    if record.get("weights_sha1") not in (None, outputs.file_sha1(path)):
        raise DataError(f"{path}: is not the model its training record {record_path} describes (SHA-1 "
                        f"differs: written by another run?); retrain, or use the files of one run")
    try:
        model = kind.model_class(**record["model"]["config"])
        model.load_state_dict(torch.load(path, map_location="cpu"))
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(f"{path}: cannot be loaded as the {kind.model_class.__name__} its record describes "
                        f"({str(e).splitlines()[0][:120]})")
    return model.eval()

"""The registered model kinds, in one place (as Ultralytics' task_map): the frame model first
(its figures are a category's main ones and its vote the baseline verdict), then the motion
model. Everything that trains, cross-validates, exports, reports or quantizes loops over
KINDS; a new kind is one entry here (README "Adding a model kind")."""
from MediaPipe_Dataset import faults
from MediaPipe_Dataset.kinds import FrameKind
from MediaPipe_Dataset.motion import MotionKind

KINDS = [FrameKind(), MotionKind()]


def by_name(name):
    """The registered kind called name; KeyError otherwise."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def of_record(record):
    """The kind a training record was written by: its `kind`, or for records of older versions
    its model class (the first kind's without either); None when no registered kind matches. A kind that reads its settings back
    from the record (from_record) comes with them."""
    name, cls = record.get("kind"), (record.get("model") or {}).get("class")
    if isinstance(name, str) and name.endswith(faults.SUFFIX) and isinstance(record.get("class_names"), list):
        base = of_record({**record, "kind": name[:-len(faults.SUFFIX)]})
        return faults.fault_kind(base, record["class_names"]) if base is not None else None
    for kind in KINDS:           # a record with neither is of the first versions: a frame model
        if kind.name == name or (name is None and (kind.model_class.__name__ == cls or cls is None and kind is KINDS[0])):
            return kind.from_record(record) if hasattr(kind, "from_record") else kind
    return None


def suffixes():
    """Every suffix a kind's files add to a category name (besides quantize.py's _int8)."""
    return [kind.suffix for kind in KINDS if kind.suffix] + [faults.SUFFIX]

"""How the code is laid out (CONVENTIONS: one sample contract, short functions, public names
between files), checked so that it stays that way."""
import ast
import glob
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np

from conftest import ROOT
from MediaPipe_Dataset import samples

SOURCES = [os.path.join(ROOT, name) for name in ("train.py", "quantize.py")] + \
    sorted(glob.glob(os.path.join(ROOT, "MediaPipe_Dataset", "*.py")))


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "MediaPipe_Dataset", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_py_stays_short_no_module_passes_500_lines_and_no_function_60():
    with open(os.path.join(ROOT, "train.py")) as f:
        assert len(f.readlines()) < 300
    for path in SOURCES:
        with open(path) as f:
            assert len(f.readlines()) <= 500, path
    long = []
    for path in SOURCES + glob.glob(os.path.join(ROOT, "tests", "*.py")):
        with open(path) as f:
            tree = ast.parse(f.read())
        long += [f"{os.path.basename(path)}:{node.lineno} {node.name}" for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert long == []


def test_no_other_file_uses_a_private_name_of_train():
    paths = SOURCES + glob.glob(os.path.join(ROOT, "tests", "*.py")) + [os.path.join(ROOT, "README.md")]
    uses = []
    for path in paths:
        if os.path.basename(path) in ("train.py", "test_structure.py"):
            continue
        with open(path) as f:
            uses += [f"{os.path.basename(path)}: {m}" for m in re.findall(r"\btrain\._\w+", f.read())]
    assert uses == []


def imported_modules(*argv):
    """Top-level modules a Python command imports (python -X importtime)."""
    run = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return {line.split("|")[-1].strip().split(".")[0] for line in run.stderr.splitlines() if "|" in line}


def test_extraction_and_the_sample_contract_load_no_torch():
    extract = imported_modules(os.path.join("MediaPipe_Dataset", "extract.py"), "--help")
    contract = imported_modules("-c", "import MediaPipe_Dataset.samples, MediaPipe_Dataset.outputs")
    assert "numpy" in extract and "MediaPipe_Dataset" in contract     # the check sees imports at all
    assert not {"torch", "sklearn"} & (extract | contract)


def test_the_contract_mirror_pairs_swap_left_and_right():
    for i, name in enumerate(samples.KEYPOINT_NAMES):
        twin = name.replace("left", "@").replace("right", "left").replace("@", "right")
        assert samples.KEYPOINT_NAMES[samples.MIRROR[i]] == twin
    assert [samples.MIRROR[j] for j in samples.MIRROR] == list(range(samples.NUM_POINTS))


def test_synthesize_uses_the_contract_points_and_mirror_pairs():
    synthesize = load_script("synthesize")
    assert synthesize.POINTS == samples.KEYPOINT_NAMES
    assert (synthesize.NOSE, synthesize.LSH, synthesize.RHIP, synthesize.LANK) == tuple(
        samples.KEYPOINT_NAMES.index(n) for n in ("nose", "left_shoulder", "right_hip", "left_ankle"))
    # its mirrored camera swaps each joint with the contract's twin
    points = np.arange(28, dtype=float).reshape(14, 2)
    camera = {"yaw": 0.0, "roll": 0.0, "height": 1.0, "x": 0.0, "y": 0.0}
    plain = synthesize.camera(points, dict(camera, mirror=False))
    mirrored = synthesize.camera(points, dict(camera, mirror=True))
    np.testing.assert_allclose(mirrored, plain[samples.MIRROR] * [-1, 1])


def test_extract_and_synthesize_write_the_contract_folders_and_labels():
    extract = load_script("extract")
    assert {name: samples.label_index(name) for name in extract.LABELS} == extract.LABELS
    assert samples.class_dir("d", "squat", 1) == os.path.join("d", "squat", "correct squat")
    assert samples.class_dir("d", "squat", 0) == os.path.join("d", "squat", "incorrect squat")


def test_the_readme_repository_table_names_every_file_of_the_project():
    with open(os.path.join(ROOT, "README.md")) as f:
        table = f.read().split("\n## Repository\n")[1]
    named = set(re.findall(r"`([^`]+)`", table))
    files = ["train.py", "quantize.py", "README.md", "requirements.txt", ".gitignore", ".ci/run"] + \
        [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "MediaPipe_Dataset", "*.py"))]
    assert [f for f in files if f not in named] == []


def test_the_library_and_quantize_py_import_nothing_from_train():
    found = []
    for path in SOURCES:
        if os.path.basename(path) == "train.py":
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            found += [f"{os.path.basename(path)}:{node.lineno}" for n in names if n and n.split(".")[0] == "train"]
    assert found == []


def test_train_py_declares_what_notebooks_import():
    import train
    assert {"PoseClassifier", "KeypointNormalizer", "MotionClassifier", "load_model"} <= set(train.__all__)
    assert all(hasattr(train, name) for name in train.__all__)

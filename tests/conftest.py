"""Shared helpers: small, separable pose datasets built in a temporary directory."""
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from MediaPipe_Dataset import samples  # noqa: E402

# A standing person in MediaPipe's normalized image coordinates (14-point layout).
STANDING = np.array([
    [0.50, 0.20], [0.50, 0.28], [0.44, 0.28], [0.42, 0.38], [0.41, 0.47],
    [0.56, 0.28], [0.58, 0.38], [0.59, 0.47], [0.46, 0.50], [0.45, 0.65],
    [0.45, 0.80], [0.54, 0.50], [0.55, 0.65], [0.55, 0.80],
])


def make_pose(rng, correct):
    """Correct: both hands raised above the head. Incorrect: hands down by the hips."""
    p = STANDING.copy()
    if correct:
        p[[3, 6], 1] = 0.18
        p[[4, 7], 1] = 0.08
    p += rng.normal(0, 0.006, p.shape)
    scale, shift = rng.uniform(0.7, 1.1), rng.uniform(-0.1, 0.1, 2)
    return ((p - 0.5) * scale + 0.5 + shift).reshape(-1)


def write_sample(path, keypoints, label, category, clip=None, **extra):
    data = {"keypoints": [None if np.isnan(v) else round(float(v), 6) for v in keypoints],
            "label": label, "category": category,
            "timestamp": 0.0, **extra}
    if clip is not None:
        data["clip"] = clip
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def build_dataset(root, categories=("stance",), clips_per_class=8, frames=3, seed=0, with_clips=True, missing=()):
    """MediaPipe_Dataset-like tree under root; the points in `missing` are written as null; returns root."""
    rng = np.random.default_rng(seed)
    for category in categories:
        for label, name in ((1, "correct"), (0, "incorrect")):
            for c in range(clips_per_class):
                base = make_pose(rng, label == 1)
                for k in range(frames):
                    keypoints = base + rng.normal(0, 0.002, base.shape)
                    keypoints[[2 * i + c for i in missing for c in (0, 1)]] = np.nan
                    clip = f"{category}-{name}-{c}" if with_clips else None
                    path = os.path.join(samples.class_dir(root, category, label), f"{name}_{c:02d}_{k}.json")
                    write_sample(path, keypoints, label, category, clip)
    return str(root)


def build_people(root, people=6, clips=2, frames=3, seed=0, category="stance"):
    """Recordings of several people, each with their own proportions (size, shoulder width,
    arm length) and place in the frame, `clips` recordings of each class per person, and
    `subject` set; returns root."""
    rng = np.random.default_rng(seed)
    for person in range(people):
        size, width, arms = rng.uniform(0.7, 1.1), rng.uniform(0.8, 1.2), rng.uniform(0.85, 1.15)
        for label, name in ((1, "correct"), (0, "incorrect")):
            for c in range(clips):
                base = make_pose(rng, label == 1).reshape(14, 2)
                base[:, 0] = 0.5 + (base[:, 0] - 0.5) * width
                base[[3, 4, 6, 7]] = base[[2, 2, 5, 5]] + (base[[3, 4, 6, 7]] - base[[2, 2, 5, 5]]) * arms
                base = ((base - 0.5) * size + 0.5).reshape(-1)
                for k in range(frames):
                    path = os.path.join(samples.class_dir(root, category, label), f"p{person}_{name}_{c}_{k}.json")
                    write_sample(path, base + rng.normal(0, 0.002, base.shape), label, category,
                                 clip=f"p{person}-{name}-{c}", subject=f"person-{person}")
    return str(root)


@pytest.fixture
def dataset(tmp_path):
    return build_dataset(tmp_path / "data")


def assert_readme_defaults_match(script, args):
    """The README's flag table for `script` states the defaults that parse_args really has."""
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split(f"\n## {script}\n")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `--")]
    assert rows, f"no flag table under '## {script}' in README.md"
    values = vars(args)
    for cells in rows:
        flag, stated = cells[0].split("`")[1].split()[0], cells[1].strip("` ")
        value = values[flag.lstrip("-").replace("-", "_")]
        if stated in ("on", "off"):
            assert bool(value) == (stated == "on"), flag
        elif stated in ("none", "all found", "the record's"):
            assert value is None, flag
        elif stated == "auto":                      # --device: resolved by parse_args; --batch-size: None
            assert value in ("cpu", "cuda", None, "auto"), flag
        elif stated[0].isdigit():
            assert float(stated) == value, flag
        elif isinstance(value, str) and os.sep in value:
            assert os.path.basename(value) == stated, flag
        else:
            assert value == stated, flag
    return len(rows)


def run_main(module, *argv):
    """(exit code, stdout, stderr) of a script's main(argv) (train, quantize, extract, ...)."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_train(*argv):
    import train
    return run_main(train, *argv)


def run_quantize(*argv):
    """quantize.py with few timed runs: the tests check behaviour, not speed."""
    import quantize
    return run_main(quantize, *argv, "--runs", "20", "--batch-size", "16")


def readme_snippet(title):
    """The first ```python block after the README heading `title`."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index(title)
    block = text[text.index("```python\n", start) + len("```python\n"):]
    return block[:block.index("```")]

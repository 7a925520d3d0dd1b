"""The kind abstraction (MediaPipe_Dataset/kinds.py, registry.py): a new kind registered in one
place gets training, --cv, files, the record, the report and quantize.py; and the drift fixes
of the redesign (every kind takes --batch-size, one model per fold, a fitted model's own window)."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import quantize
import train
from conftest import build_dataset, run_main
from MediaPipe_Dataset import crossval, kinds, motion, registry, store, training
from MediaPipe_Dataset.config import TrainingConfig, WindowConfig
from MediaPipe_Dataset.movements import write_movements
from MediaPipe_Dataset.samples import Dataset


class Majority(nn.Module):
    """Logits of the training set's class shares, whatever the frame."""

    def __init__(self, share=0.5):
        super().__init__()
        self.config = {"share": share}
        self.logits = nn.Parameter(torch.log(torch.tensor([1 - share, share])), requires_grad=False)

    def forward(self, x):
        return torch.zeros_like(x[:, :2]) + self.logits


class MajorityKind(kinds.FrameKind):
    """A toy third kind: the majority class of the training frames."""
    name, title, suffix, model_class = "majority", "majority model", "_majority", Majority
    verdict, vote_words, frame_figures = "majority", "the majority vote", True
    help = "also write <category>_majority, the majority class (default: on)"

    def fit(self, train_data, val, settings, log=None):
        model = Majority(float(np.clip(train_data.y.mean(), 0.01, 0.99)))
        return model.eval(), [{"epoch": 1, "train_loss": 0.0, "train_acc": float(train_data.y.mean())}], 1, 1

    def robustness(self, predict, units, seed):
        return None

    def cv_models(self, settings):
        return {"Majority": kinds.NetClassifier(self, settings)}


@pytest.fixture
def with_majority(monkeypatch):
    monkeypatch.setattr(registry, "KINDS", [*registry.KINDS, MajorityKind()])


def test_a_third_kind_registered_in_one_place_trains_writes_reports_and_quantizes(tmp_path, with_majority):
    data, models = build_dataset(tmp_path / "data"), tmp_path / "models"
    code, out, err = run_main(train, "--data-dir", data, "--models-dir", models, "--epochs", "2",
                              "--json", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert result["majority"]["n_val_clips"] >= 2 and "Majority model (stance_majority, frames)" in out
    record = json.loads((models / "stance_majority.json").read_text())
    assert record["kind"] == "majority" and record["model"]["class"] == "Majority"
    assert isinstance(store.load_model(str(models / "stance_majority.pt")), Majority)
    report = (models / "stance_report.html").read_text()
    assert "<h2>Training: majority model</h2>" in report
    code, out, err = run_main(quantize, "--models-dir", models, "--runs", "5", "--batch-size", "8")
    assert code == 0, err
    assert (models / "stance_majority_int8.onnx").exists() and "COMPARISON REPORT: STANCE_MAJORITY MODELS" in out
    code, out, err = run_main(train, "--data-dir", data, "--cv", "2", "--epochs", "1", "--json", tmp_path / "cv.json")
    assert code == 0, err
    cv = json.loads((tmp_path / "cv.json").read_text())["stance"]
    assert 0 <= cv["Majority"]["mean"] <= 1 and "Majority" in out
    code, out, err = run_main(train, "--data-dir", data, "--models-dir", tmp_path / "m2", "--epochs", "1",
                              "--no-majority")
    assert code == 0 and "No majority model for stance: --no-majority." in out


def test_the_built_in_kinds_suffixes_are_reserved_for_extract_py():
    assert set(registry.suffixes()) <= set(store.RESERVED_SUFFIXES)
    assert [k.name for k in registry.KINDS[:2]] == ["frame", "motion"]


@pytest.fixture(scope="module")
def curls(tmp_path_factory):
    return write_movements(str(tmp_path_factory.mktemp("curls") / "data"), recordings=4, seconds=2.0)


def test_batch_size_applies_to_the_motion_model_and_the_record_says_so(tmp_path, curls):
    code, out, err = run_main(train, "--data-dir", curls, "--models-dir", tmp_path, "--epochs", "1",
                              "--batch-size", "64", "--no-report")
    assert code == 0, err
    record = json.loads((tmp_path / "curl_motion.json").read_text())
    assert record["batch_size"] == 64 and record["config"]["training"]["batch_size"] == 64
    assert "Motion model (curl_motion, windows): trained in" in out and "batches of 64" in out


def test_every_fold_fits_its_own_model(curls, monkeypatch):
    ds, fitted = Dataset(curls, "curl"), []
    original = kinds.NetClassifier.fit

    def fit(self, *args):
        fitted.append(self)
        return original(self, *args)
    monkeypatch.setattr(kinds.NetClassifier, "fit", fit)
    folds, grouping = crossval.evaluation.cv_folds(ds, 2, 0)
    result = crossval.CvResult(ds, grouping, folds)
    crossval.cross_validate_kind(registry.by_name("motion"), ds, result, TrainingConfig(epochs=1))
    assert len(fitted) == 2 and fitted[0] is not fitted[1]


def test_a_fitted_motion_model_cuts_its_windows_from_its_own_config(curls):
    ds = Dataset(curls, "curl")
    short = motion.MotionKind(window=WindowConfig(frames=8, fps=5.0))
    model = short.fit(short.data(ds, np.arange(len(ds.y))), None, TrainingConfig(epochs=1))[0]
    default = motion.MotionKind()                       # 16 frames: another window than the model's
    units, probs = default.judge(model, default.data(ds, np.arange(len(ds.y))), TrainingConfig())
    assert units.x.shape[1] == 8 and probs.shape == (len(units), 2)


def test_one_training_loop_for_every_kind_keeps_the_seed(curls):
    ds = Dataset(curls, "curl")
    frame = registry.by_name("frame")
    a = frame.fit(frame.data(ds, np.arange(len(ds.y))), None, TrainingConfig(epochs=2, seed=3))[0]
    b = frame.fit(frame.data(ds, np.arange(len(ds.y))), None, TrainingConfig(epochs=2, seed=3))[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert training.make_batches(5, 2, torch.Generator().manual_seed(0))[-1].numel() == 3   # no batch of one

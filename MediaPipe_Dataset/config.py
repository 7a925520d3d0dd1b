"""Configuration as data: one dataclass per part, with its defaults (as nanoGPT's GPTConfig).

train.py builds them from its flags once; the training record holds them whole
(`config` in models/<name>.json), and the loader and quantize.py read them back. A fitted
model uses its own configuration, never a module default. Standard library only.
"""
import dataclasses
import math


@dataclasses.dataclass
class TrainingConfig:
    """How every kind of model is trained (train.py's flags of the same names)."""
    epochs: int = 30
    lr: float = 5e-3
    schedule: str = "cosine"           # or "constant"
    batch_size: int = None             # None: auto (auto_batch below)
    val_split: float = 0.2
    group_by: str = "auto"
    # Label smoothing (chosen by cross-validation on Pose Trainer's real recordings, README "New
    # people"): a frame of a bad repetition often looks like a good one, and hard 0/1 targets
    # push the net to memorize such frames.
    label_smoothing: float = 0.1
    augment: bool = True
    drop_joints: float = 0.25
    min_visibility: float = 0.5
    seed: int = 0
    device: str = "cpu"
    # --batch-size auto (chosen by cross-validation, README "Training on large datasets"): the
    # batch is min_auto_batch up to min_auto_batch x max_steps_per_epoch samples and grows with
    # the data beyond, so that an epoch stays max_steps_per_epoch batches, up to max_auto_batch.
    # Every epoch still sees every sample: fewer samples per epoch was cheaper but less accurate
    # on 100,000 frames.
    min_auto_batch: int = 32
    max_steps_per_epoch: int = 250
    max_auto_batch: int = 512

    def batch_for(self, n):
        """The batch size for n training inputs: batch_size when set, else auto's."""
        return self.batch_size or min(self.max_auto_batch,
                                      max(self.min_auto_batch, math.ceil(n / self.max_steps_per_epoch)))


@dataclasses.dataclass
class FrameNetConfig:
    """PoseClassifier's shape (its constructor's arguments)."""
    width: int = 128
    expansion: int = 2
    blocks: int = 1
    head: int = 128
    dropout: float = 0.2


@dataclasses.dataclass
class MotionNetConfig:
    """MotionClassifier's shape, besides its window (WindowConfig's frames and fps)."""
    width: int = 64
    expansion: int = 2
    blocks: int = 2
    kernel: int = 5
    dropout: float = 0.2


@dataclasses.dataclass
class WindowConfig:
    """The windows the motion model judges, and how recordings give them. Chosen by
    cross-validation on Pose Trainer's recordings and ../shared/datasets (README "Movements"):
    16 instants at 10 per second, a 1.6 s window, and 16 training windows."""
    frames: int = 16
    fps: float = 10.0
    gap_tolerance_s: float = 0.25      # an instant with no frame this close is a gap (all NaN)
    min_frames: int = 8                # a recording with fewer instants is too short to learn from
    min_recordings: int = 3            # per class, long enough, for a category to get a motion model
    train_windows: int = 16            # training windows per recording per epoch, per window length it spans
    speed: tuple = (0.8, 1.25)         # speed change of a training window: its instants 0.8 to 1.25 x apart
    frame_drop_share: float = 0.2      # per-frame joint dropout at this share of --drop-joints, beside per window
    # At most this many training windows per epoch, shared among the recordings by the windows
    # each would get (README "Recording files"): it bounds the motion model's cost on a million
    # frames. No real set we have comes near it (Pose Trainer's largest epoch is 1,077 windows).
    max_epoch_windows: int = 16384

    @property
    def stride(self):
        """Instants between the starts of the windows a verdict averages: a quarter window."""
        return max(1, self.frames // 4)


def as_dict(config):
    """A configuration as plain JSON values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls, values):
    """cls rebuilt from as_dict's form; keys it does not know (a newer version's) are left out."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items() if k in fields})

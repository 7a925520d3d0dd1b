"""The one training loop every model kind uses (torch, numpy): shuffled batches, Adam, the
cosine schedule, label smoothing, augmentation, the kept epoch. A kind says what an epoch's
training inputs are (fixed frames, or windows drawn afresh) and how to augment them; the
loop, the batch size and the settings are the same for all (TrainingConfig).
"""
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from MediaPipe_Dataset.samples import progress


def make_batches(n, batch_size, generator):
    """Shuffled index batches covering 0..n-1 once; a last batch of one sample joins the one
    before it, since batch norm cannot train on a single sample."""
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


INFERENCE_ROWS = 4096     # inputs per forward pass when judging: the activations of a million at once take GBs


def logits_of(model, x):
    """model(x) for a tensor x, in passes of INFERENCE_ROWS inputs, without gradients."""
    with torch.no_grad():
        return torch.cat([model(part) for part in torch.split(x, INFERENCE_ROWS)]) if len(x) else model(x)


def evaluate(model, x, y):
    """(loss, accuracy, predictions) of model on tensors x, y."""
    model.eval()
    logits = logits_of(model, x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item(), logits.argmax(1)


def train_epoch(model, optimizer, scheduler, xt, yt, batch_size, gen, training, augment, bar):
    """One pass over the epoch's training tensors in shuffled batches; (mean loss, accuracy).
    augment(batch, generator, drop_joints) -> batch, or None for none."""
    model.train()
    total_loss = correct = 0
    for idx in bar(make_batches(len(xt), batch_size, gen)):
        xb, yb = xt[idx], yt[idx]
        if augment is not None and training.augment:
            xb = augment(xb.cpu(), gen, training.drop_joints).to(xt.device)
        optimizer.zero_grad()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=training.label_smoothing)
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / len(xt), correct / len(xt)


def kept_epoch(history):
    """The epoch a normal run keeps: the highest validation accuracy averaged with the epochs
    on either side, so that a one-epoch spike between two collapses is not kept (measured on
    the bundled execution data: 97.96% at epoch 10 between 67.35% and 81.63%). Ties, common
    on small validation sets, go to its own accuracy, then to the accuracy on the same frames
    with 2 random points removed (an early epoch can match a later one on whole frames and
    fall apart when points go missing: plank, 99.3% either way, 91% against 98% with 2
    points removed), then to the lowest validation loss, then to the earliest."""
    return 1 + max(range(len(history)), key=lambda i: epoch_key(history, i))


def epoch_key(history, i):
    """What kept_epoch ranks epoch index i by; final once epoch i + 1 is in history."""
    acc = [h["val_acc"] for h in history[max(0, i - 1):i + 2]]
    h = history[i]
    return round(float(np.mean(acc)), 9), h["val_acc"], h["val_acc_2_removed"], -h["val_loss"], -i


class KeptStates:
    """The weights of the epochs kept_epoch may still choose, and no others: the best epoch
    whose rank is final, and the last epoch (its rank waits for the next one). Two copies of
    the weights, however many epochs (keeping every epoch's held 1.6 GB at --epochs 3000)."""

    def __init__(self):
        self.states, self.best = {}, None

    def add(self, history, model):
        last = len(history) - 1
        self.states[last] = copy.deepcopy(model.state_dict())
        final = last - 1            # its neighbours are all known now
        if final < 0:
            return
        if self.best is None or epoch_key(history, final) > epoch_key(history, self.best):
            self.states.pop(self.best, None)
            self.best = final
        else:
            self.states.pop(final)

    def state(self, epoch):
        return self.states[epoch - 1]


def fit(build, epoch_inputs, training, augment=None, validation=None, log=None, title="Model"):
    """Train build() (called after seeding, so that the same seed gives the same weights).

    epoch_inputs(rng) -> (x, y) tensors: one epoch's training inputs, drawn with the numpy
    generator rng (the same every epoch for fixed inputs). validation: None, or
    (x, y, x with 2 points removed) tensors on which every epoch is measured and the kept
    epoch chosen (kept_epoch); without, the last epoch is kept. log(text): the per-epoch
    lines, and the progress bars; None for quiet. Returns (model in eval mode, history,
    kept epoch, batch size).
    """
    torch.manual_seed(training.seed)
    gen, rng = torch.Generator().manual_seed(training.seed), np.random.default_rng(training.seed)
    device = torch.device(training.device)
    model = build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.lr)
    xt, yt = epoch_inputs(rng)
    batch_size = training.batch_for(len(yt))
    steps = training.epochs * math.ceil(len(yt) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if training.schedule == "cosine" else None
    history, kept = [], KeptStates()
    for epoch in progress(range(1, training.epochs + 1), desc=title, unit="epoch", leave=False, disable_if=log is None):
        if epoch > 1:
            xt, yt = epoch_inputs(rng)
        bar = lambda batches: progress(batches, desc=f"Epoch {epoch}/{training.epochs}", leave=False, unit="batch",
                                       disable_if=log is None)
        train_loss, train_acc = train_epoch(model, optimizer, scheduler, xt.to(device), yt.to(device), batch_size,
                                            gen, training, augment, bar)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        history.append(record)
        if validation is None:
            continue
        xv, yv, xv_removed = (t.to(device) for t in validation)
        record["val_loss"], record["val_acc"], _ = evaluate(model, xv, yv)
        record["val_acc_2_removed"] = evaluate(model, xv_removed, yv)[1]
        if log:
            log(f"Epoch [{epoch}/{training.epochs}]:\n"
                f"  Train Loss: {train_loss:.4f}, Train Acc: {100 * train_acc:.2f}%\n"
                f"  Val Acc: {100 * record['val_acc']:.2f}% (with 2 points removed: "
                f"{100 * record['val_acc_2_removed']:.2f}%)")
        kept.add(history, model)
    best = training.epochs
    if validation is not None:
        best = kept_epoch(history)
        model.load_state_dict(kept.state(best))
    return model.eval(), history, best, batch_size


def probabilities(model, x, device="cpu"):
    """(N, 2) class probabilities of a model in eval mode for numpy inputs x ((N, 28) frames
    or (N, T, 28) windows)."""
    logits = logits_of(model, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
    return F.softmax(logits, dim=1).cpu().numpy()


def finite_model(model):
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())

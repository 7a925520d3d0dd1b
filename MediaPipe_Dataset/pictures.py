"""Pictures: the HTML report of a category (models/<category>_report.html) and of --cv
(models/cv_report.html), one self-contained file each that opens in any browser offline:
matplotlib (Agg) figures inline as PNG, no scripts, no fonts or files from the network.
numpy and matplotlib only; the figures come from what train.py measured."""
import base64
import functools
import html
import io
import os
import textwrap
import warnings

import numpy as np

from MediaPipe_Dataset import outputs, reports
from MediaPipe_Dataset.samples import CLASS_NAMES, KEYPOINT_NAMES, NUM_POINTS

# The bones drawn between the 14 points (names in samples.KEYPOINT_NAMES).
BONES = [("nose", "neck"), ("neck", "right_shoulder"), ("neck", "left_shoulder"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
         ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_hip"), ("left_shoulder", "left_hip"), ("right_hip", "left_hip"),
         ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
         ("left_hip", "left_knee"), ("left_knee", "left_ankle")]
MAX_STRIPS = 40          # validation recordings drawn as strips, wrong ones first
MAX_POSES = 8            # poses drawn per gallery


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plain_text(draw):
    """draw's figures with every text as it is written: no math between `$` signs (a clip named
    `$5 squat$` is not a formula), and no warning for a glyph the font lacks (an emoji in a
    name is drawn as a box; the HTML around the figures has it)."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib
        with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing", category=UserWarning)
            return draw(*args, **kwargs)
    return drawn


def png(fig, tight=True):
    """A matplotlib figure as an <img> with the PNG inline (base64), the figure closed; tight:
    cropped to what is drawn (one more drawing pass), for figures without set margins."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight" if tight else None,
                pil_kwargs={"compress_level": 3})       # zlib's default, 6, took a quarter of the report's time
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def curves(history, kept):
    """Loss and accuracies per epoch, the kept epoch marked."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(10, 3.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.96, wspace=0.22)
    loss.plot(epochs, [h["train_loss"] for h in history], label="training loss")
    if "val_loss" in history[0]:
        loss.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    for key, label in (("train_acc", "training"), ("val_acc", "validation"), ("val_acc_2_removed",
                                                                             "validation, 2 points removed")):
        if key in history[0]:
            acc.plot(epochs, [100 * h[key] for h in history], label=label)
    for ax in (loss, acc):
        ax.axvline(kept, color="grey", linestyle="--", label=f"kept epoch {kept}")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, loc="center right")     # a fixed place: "best" searched 0.2 s
    acc.set_ylabel("accuracy %")
    return png(fig, tight=False)


def confusions(matrices, names=CLASS_NAMES):
    """{title: confusion matrix (rows true, columns predicted) over names} side by side, as HTML
    tables shaded by count (as figures they took a fifth of the report's time)."""
    def cell(v, top):
        shade = int(255 - 175 * v / max(top, 1))
        colour = "#fff" if shade < 150 else "#000"
        return f'<td style="background:rgb({shade},{shade + 20 if shade < 235 else 255},255);color:{colour};' \
               f'text-align:center;min-width:2.5em">{v}</td>'
    tables = []
    for title, m in matrices.items():
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        rows = "".join(f"<tr><th>{html.escape(n)}</th>" + "".join(cell(int(v), m.max()) for v in row) + "</tr>"
                       for n, row in zip(names, m))
        tables.append(f'<div style="display:inline-block;vertical-align:top;margin:0 2em 1em 0">'
                      f'<b>{html.escape(title)}</b><table><tr><th>true \\ predicted</th>{head}</tr>{rows}</table></div>')
    return "<div>" + "".join(tables) + "</div>"


def strips(recordings):
    """One strip per recording of P(correct) over time: dicts with name, label, verdict and
    series, [(what, t (seconds, or input order), p)], one per model. Wrong verdicts first, at
    most MAX_STRIPS. The strips are stacked in one plot (one axes each drew ten times slower)."""
    plt = pyplot()
    chosen = sorted(recordings, key=lambda r: (r["verdict"] == r["label"], r["name"]))[:MAX_STRIPS]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(chosen) + 0.8))
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.3 / (0.6 * len(chosen) + 0.8),
                        bottom=0.45 / (0.6 * len(chosen) + 0.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, r in enumerate(chosen):
        base = -1.6 * row
        for i, (what, t, p) in enumerate(r["series"]):
            ax.plot(t, base + np.asarray(p), ".-" if i == 0 else "s-", markersize=2 + i, linewidth=0.8,
                    color=colors[i % len(colors)], label=what if row == 0 else None)
        ax.axhline(base + 0.5, color="grey", linewidth=0.5)
        ax.axhspan(base - 0.02, base + 1.02, color="0.96", zorder=0)
        wrong = "  WRONG" if r["verdict"] != r["label"] else ""
        fault = f"; fault: {r['fault'].split(': ', 1)[1]}" if r.get("fault") else ""
        ax.text(0.005, base + 1.08, f"{r['name']}: {CLASS_NAMES[r['label']]}, judged {CLASS_NAMES[r['verdict']]}"
                f"{wrong}{fault}", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom",
                color="red" if wrong else "black")
    ax.set_yticks([])
    ax.set_ylim(-1.6 * (len(chosen) - 1) - 0.1, 1.45)
    ax.tick_params(labelsize=6)
    if chosen:
        ax.legend(fontsize=6, loc="upper right")
    ax.set_xlabel("time (s); each strip P(correct) from 0 (bottom) to 1 (top), grey line at 0.5", fontsize=7)
    return png(fig, tight=False)


def draw_pose(ax, keypoints, title):
    """The 14 points and the bones between them; missing points (NaN) and their bones left out."""
    from matplotlib.collections import LineCollection
    p = np.asarray(keypoints, dtype=float).reshape(NUM_POINTS, 2)
    index = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
    bones = [(p[index[a]], p[index[b]]) for a, b in BONES]
    ax.add_collection(LineCollection([bone for bone in bones if np.isfinite(bone).all()], colors="tab:blue",
                                     linewidths=1.5))
    present = np.isfinite(p).all(1)
    ax.scatter(p[present, 0], p[present, 1], s=8, color="tab:red", zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()                    # image coordinates: y grows downwards
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6)


def poses(items):
    """A gallery of (keypoints, caption) drawn as skeletons, at most MAX_POSES."""
    plt = pyplot()
    items = items[:MAX_POSES]
    fig, axes = plt.subplots(1, max(len(items), 1), figsize=(2.2 * max(len(items), 1), 2.8), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.78, wspace=0.08)
    for ax, (keypoints, caption) in zip(axes[0], items):
        draw_pose(ax, keypoints, caption)
    return png(fig, tight=False)


def table(header, rows):
    cells = lambda tag, values: "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values)
    return (f"<table><tr>{cells('th', header)}</tr>" + "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
            + "</table>")


def page(title, sections):
    """A whole HTML page: (heading, body html) sections; nothing loaded from elsewhere."""
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}")
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n")


def write(path, text):
    """Write the page via a temporary file renamed into place (outputs.write_text); the path."""
    outputs.write_text(path, text)
    return path


# ----------------------------------------------------------------------------- a normal run's report
def series(v, name):
    """(t, P(correct)) of one recording's inputs of a Validation: in time order, times from the
    recording's first (input order without times)."""
    rows = np.flatnonzero(v.units.groups == name)
    times = v.units.times[rows]
    if not np.isfinite(times).all():
        return np.arange(len(rows)), v.probabilities[rows, 1]
    order = np.argsort(times, kind="stable")
    return times[order] - times.min(), v.probabilities[rows[order], 1]


def recording_strips(result):
    """The strips of the first kind's validation recordings: each kind's P(correct) over time
    where it judged the recording, the label and the first kind's verdict."""
    validations = list(result.validations.values())
    base = validations[0]
    found = []
    from MediaPipe_Dataset.faults import recording_verdicts
    named = {}
    for v in reversed(list(result.fault_validations.values())):      # the frame fault model's, where both judged
        named.update(recording_verdicts(v))
    for name, label, verdict in zip(base.clip_names, base.clip_true, base.clip_pred):
        lines = [(f"{v.kind.title} ({v.kind.unit})", *series(v, name)) for v in validations if name in v.clip_names]
        found.append({"name": str(name), "label": int(label), "verdict": int(verdict), "series": lines,
                      "fault": named.get(str(name))})
    return found


def wrong_inputs(v, caption):
    """(pose, caption) of the validation inputs a model is most confidently wrong about;
    caption(i, confidence, predicted) names input i."""
    pred, confidence = v.probabilities.argmax(1), v.probabilities.max(1)
    wrong = np.flatnonzero(pred != v.units.y)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MAX_POSES]
    return [(v.units.poses[i], f"{caption(i)}\n{CLASS_NAMES[v.units.y[i]]}, judged {CLASS_NAMES[pred[i]]} "
             f"({confidence[i]:.2f})") for i in wrong]


def input_caption(ds, v):
    """caption(i) for wrong_inputs: a frame's file, or a window's recording and time."""
    if v.kind.unit == "frames":
        return lambda i: caption_name(ds, v.units.keys[i])
    return lambda i: f"{str(v.units.groups[i])[-28:]} at {v.units.times[i]:.1f} s"


def caption_name(ds, i):
    """Sample i's file relative to the data folder, wrapped to fit under a pose."""
    return "\n".join(textwrap.wrap(os.path.join(ds.category, ds.files[i]), 30))


def suspect_section(ds, suspects, own):
    """The suspect labels: a sentence, the first ones drawn (one per recording), the list."""
    if not len(suspects):
        return "<p>No training sample's label is contradicted by its nearest neighbours in the other recordings.</p>"
    recordings = list(dict.fromkeys(ds.groups[suspects]))
    first = [suspects[np.flatnonzero(ds.groups[suspects] == g)[0]] for g in recordings[:MAX_POSES]]
    gallery = [(ds.X[i], f"{caption_name(ds, i)}\nlabelled {CLASS_NAMES[ds.y[i]]}") for i in first]
    rows = [(ds.files[i], CLASS_NAMES[ds.y[i]], f"{p:.2f}", ds.groups[i]) for i, p in zip(suspects[:200], own[:200])]
    return (f"<p><b>Check these labels.</b> {len(suspects)} training samples of {len(recordings)} recording(s) "
            f"look like the other class to their nearest neighbours in the other recordings (out of fold). A "
            f"mislabeled video or a sample in the wrong folder looks like this; so does a recording that is "
            f"simply unlike the others. Look at them, and move or remove the wrong ones before training "
            f"again.</p>\n{poses(gallery)}\n"
            + table(["file", "label", "P(own label), out of fold", "recording"], rows)
            + (f"<p>(first 200 of {len(suspects)}; --json has them all)</p>" if len(suspects) > 200 else ""))


@plain_text
def category_page(result, own):
    """The whole report of a normal run's category (pipeline.CategoryResult): each kind's
    training curves and confusion matrices, the validation recordings over time, each kind's
    inputs most confidently misjudged, the suspect labels (own: their out-of-fold
    probability of their own label)."""
    from sklearn.metrics import confusion_matrix
    ds, validations = result.ds, result.validations
    sections = [(f"Training: {v.kind.title}", f"<p>Kept epoch {v.best} of {len(v.history)}; batches of "
                 f"{v.batch_size}.</p>" + curves(v.history, v.best)) for v in validations.values()]
    matrices = {}
    for v in validations.values():
        matrices[f"{v.kind.title}, per {v.kind.unit[:-1]}"] = confusion_matrix(v.units.y, v.probabilities.argmax(1),
                                                                              labels=[0, 1])
        matrices[f"{v.kind.title}, per recording"] = confusion_matrix(v.clip_true, v.clip_pred, labels=[0, 1])
    sections += [("Confusion matrices (validation)", confusions(matrices))]
    for v in result.fault_validations.values():
        fault = {f"{v.kind.title}, per {v.kind.unit[:-1]}": confusion_matrix(v.units.y, v.probabilities.argmax(1),
                                                                            labels=range(len(v.kind.classes)))}
        per_input, per_clip = v.fault_accuracy
        sections.append((f"Which fault: the {v.kind.title} (validation)",
                         f"<p>Among the incorrect validation {v.kind.unit} that name a fault, {100 * per_input:.1f}% "
                         f"(recordings: {100 * per_clip:.1f}%) get one of their faults; rows are each input's first "
                         f"fault.</p>" + confusions(fault, v.kind.classes)))
    sections += [("Validation recordings over time", "<p>P(correct) of each input of each model ("
                  + ", ".join(f"{v.kind.title}: each of its {v.kind.unit}" for v in validations.values())
                  + "); wrong verdicts first.</p>" + strips(recording_strips(result)))]
    for v in validations.values():
        wrong = wrong_inputs(v, input_caption(ds, v))
        sections.append((f"The {v.kind.title}'s most confidently misjudged {v.kind.unit}",
                         poses(wrong) if wrong else f"<p>None: every validation input is judged right.</p>"))
    sections.append(("Suspect labels", suspect_section(ds, result.suspects, own) if result.indistinct is None else
                     f"<p>None listed: {html.escape(reports.indistinct_words(result.indistinct))}.</p>"))
    return page(f"{ds.category}: training report", sections)


# ----------------------------------------------------------------------------- --cv's report
@plain_text
def cv_page(results, removed_points):
    """--cv's report from its results ({category: crossval.CvResult}): per category, accuracy per
    model with the spread over folds (per frame) and per recording, and accuracy against points
    removed."""
    plt = pyplot()
    sections = []
    for category, result in results.items():
        models = result.to_json()
        frame = {n: m for n, m in models.items() if m.get("mean") is not None}
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.4))
        names = list(frame)
        a.barh(names, [100 * frame[n]["mean"] for n in names], xerr=[100 * frame[n]["std"] for n in names])
        a.set_title("per frame % (mean +- std over folds)", fontsize=9)
        clips = {n: m for n, m in models.items() if m.get("clip_mean") is not None}
        b.barh(list(clips), [100 * m["clip_mean"] for m in clips.values()], color="tab:green")
        b.set_title("per recording %", fontsize=9)
        for n in (n for n in names if frame[n]["points_removed"]):
            c.plot([0, *removed_points], [100 * frame[n]["mean"]] + [100 * frame[n]["points_removed"][str(k)]
                                                                      for k in removed_points], "o-", label=n)
        c.set_xlabel("points removed from each test frame")
        c.set_title("per frame % with points removed", fontsize=9)
        c.legend(fontsize=6)
        for ax in (a, b):
            ax.tick_params(labelsize=7)
        sections.append((category, png(fig)))
        if result.faults:
            rows = [(n, "-" if f["mean"] is None else f"{100 * f['mean']:.2f}", f"{100 * f['clip_mean']:.2f}",
                     f"{f['macro_f1']:.3f}", f["n_clips"]) if not f["error"] else (n, "could not be fitted", "", "", "")
                    for n, f in result.faults.items()]
            sections.append((f"{category}: which fault", "<p>Among the incorrect samples that name a fault, on the same "
                             "folds; a verdict is right when it names one of its input's faults.</p>" + table(
                                 ["model", "per frame %", "per recording %", "macro F1", "recordings"], rows)))
    return page("Cross-validation report", sections)

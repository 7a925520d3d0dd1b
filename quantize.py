"""Quantize every model in models/ (each kind: <category>.onnx, <category>_motion.onnx) to
dynamic INT8 and report what changed, measured.

    python quantize.py
    python quantize.py --categories stance --per-channel --json report.json

Writes models/<name>_int8.onnx (via a temporary file; a failure leaves none behind) and
prints, per model, file sizes, accuracy of FP32 and INT8 on the validation samples that
train.py held out (listed in its training record) and on all samples, and single-input
latency and batch throughput of both, measured in this run with the same session options.
Models are found by their training records (MediaPipe_Dataset/store.py); the measuring is
MediaPipe_Dataset/quantization.py's.
"""
import argparse
import os
import signal
import sys

from MediaPipe_Dataset import outputs  # standard library only: loads at once

if __name__ == "__main__":
    outputs.quiet_while_loading()

import onnxruntime as ort

from MediaPipe_Dataset import store
from MediaPipe_Dataset.quantization import (DEFAULT_DATA_DIR, WARMUP_RUNS, ModelError, check_model, compare, goals,
                                            is_our_int8, quantize, record_sha1)

MAX_BATCH = 65536            # --batch-size bound: far past where throughput stops growing


def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"


def ratio_words(fp32, int8, what, higher_is_better):
    """'INT8 is 1.30x slower than FP32 per single sample on this machine', from two measured figures."""
    r = int8 / fp32 if higher_is_better else fp32 / int8      # > 1: INT8 is better
    if f"{r:.2f}" == "1.00":
        return f"INT8 is as fast as FP32 {what} on this machine (ratio 1.00)"
    factor = r if r > 1 else 1 / r
    return f"INT8 is {factor:.2f}x {'faster' if r > 1 else 'slower'} than FP32 {what} on this machine"


def print_report(name, kind, f, args, others):
    fp, q = f["fp32"], f["int8"]
    print(f"\nCOMPARISON REPORT: {name.upper()} MODELS")
    print("=" * 60)
    print("File Size Comparison:")
    print(f"  Original: {fp['size_bytes'] / 1e6:.2f} MB ({fp['size_bytes']:,} bytes)")
    print(f"  Quantized: {q['size_bytes'] / 1e6:.2f} MB ({q['size_bytes']:,} bytes)")
    print(f"  Size Reduction: {100 * (1 - q['size_bytes'] / fp['size_bytes']):.1f}%")
    print_accuracy(kind, f)
    print_speed(name, kind, f, args)
    print("\nReference figures: the project's goals for INT8 against FP32, measured on its own 2-core "
          "machines. Other machines and loads give other speeds; a goal not reached here says nothing about "
          "your model's accuracy:")
    for target, met, figure in goals(kind, f, others):
        print(f"  {'reached    ' if met else 'not reached'}  {target}: {figure}")


def print_accuracy(kind, f):
    fp, q = f["fp32"], f["int8"]
    print("\nAccuracy Comparison:")
    if f["note"]:
        print(f"  Note: {f['note']}")
    unit = kind.unit
    if f["n_all"] is not None:
        val = f"validation ({f['n_val']} held-out {unit})" if f["n_val"] else "validation"
        print(f"  {'':<10}{val:>34}{'all (' + str(f['n_all']) + ' ' + unit + ')':>22}")
        print(f"  {'Original':<10}{pct(fp['accuracy_val']):>34}{pct(fp['accuracy_all']):>22}")
        print(f"  {'Quantized':<10}{pct(q['accuracy_val']):>34}{pct(q['accuracy_all']):>22}")
        print(f"  Agreement: {100 * f['agreement']:.2f}% of {unit} get the same class; "
              f"largest probability difference {f['max_probability_diff']:.4f}")
        print(f"  {unit.capitalize()} with missing points: {f['n_missing']} of {f['n_all']} (included in the figures above)")
        if f["n_val_clips"] is not None:
            print(f"  Per recording (validation, {f['n_val_clips']} clips; verdict = highest mean probability "
                  f"over its {unit}): Original {pct(fp['clip_accuracy_val'])}, Quantized {pct(q['clip_accuracy_val'])}; "
                  f"{f['clips_changed']} recording(s) get a different verdict")
    m = f["missing_check"]
    print(f"  Missing points: on {m['n']} inputs (the validation {unit}, the same with 1 to 4 points removed, and "
          f"{kind.parity_words}), both models give finite probabilities; agreement {100 * m['agreement']:.2f}%, "
          f"largest difference {m['max_probability_diff']:.4f}")


def print_speed(name, kind, f, args):
    fp, q = f["fp32"], f["int8"]
    print(f"\nSpeed Comparison (ONNX Runtime {ort.__version__}, CPU, 1 intra-op thread, "
          f"{WARMUP_RUNS} warm-up runs, {args.runs} timed runs alternating between the models):")
    print(f"  {'':<10}{'latency p50':>14}{'latency p95':>14}{'batch ' + str(args.batch_size) + ' throughput':>28}")
    for label, m in (("Original", fp), ("Quantized", q)):
        print(f"  {label:<10}{m['latency_p50_us']:>11.1f} us{m['latency_p95_us']:>11.1f} us"
              f"{m['throughput_per_s']:>20,.0f} {kind.unit}/s")
    floor = f["call_floor_p50_us"]
    print(f"  {'Call floor':<10}{floor:>11.1f} us   (a one-op model with the same input, timed in the same loop: "
          f"FP32 takes {fp['latency_p50_us'] / floor:.1f}x and INT8 {q['latency_p50_us'] / floor:.1f}x its time)")
    print("  " + ratio_words(fp["latency_p50_us"], q["latency_p50_us"], "per single input (p50)", False) + ".")
    print("  " + ratio_words(fp["throughput_per_s"], q["throughput_per_s"],
                             f"in batches of {args.batch_size}", True) + ".")
    single = "INT8" if q["latency_p50_us"] < fp["latency_p50_us"] else "FP32"
    batch = "INT8" if q["throughput_per_s"] > fp["throughput_per_s"] else "FP32"
    names = {"FP32": f"{name}.onnx", "INT8": os.path.basename(store.int8_path("", name))}
    q_nodes = f.get("int8_nodes") or {}
    if q_nodes:
        print(f"  In INT8: {q_nodes['int8']} matrix products; {q_nodes['fp32']} stay FP32 (the keypoint layout's, "
              f"kept exact)" + (f"; {kind.int8_note}" if kind.int8_note else "") + ".")
    print(f"  Deploy, by this run's figures: {names[single]} for one {kind.unit[:-1]} at a time, {names[batch]} for "
          f"batches; the INT8 file is {fp['size_bytes'] / q['size_bytes']:.1f}x smaller.")
    if f.get("advised_verdict") and kind.base is None:       # a fault model names the fault, not the verdict
        trusted = "this model's verdict" if f["advised_verdict"] == kind.verdict else "another kind's verdict"
        print(f"  Which verdict to trust (train.py's advice, from its validation recordings): {trusted} "
              f"({f['advised_verdict']}); {f['advice']}.")


def print_summary(results):
    print("\nSUMMARY")
    print("=" * 60)
    width = max(12, *(len(c) + 2 for c in results))
    print(f"{'category':<{width}}{'model':<7}{'size MB':>9}{'val acc':>9}{'all acc':>9}{'p50 us':>9}{'inputs/s':>12}")
    for category, f in results.items():
        for key in ("fp32", "int8"):
            m = f[key]
            print(f"{category:<{width}}{key.upper():<7}{m['size_bytes'] / 1e6:>9.3f}{pct(m['accuracy_val']):>9}"
                  f"{pct(m['accuracy_all']):>9}{m['latency_p50_us']:>9.1f}{m['throughput_per_s']:>12,.0f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Quantize models/<category>.onnx to dynamic INT8 and compare "
                                            "size, accuracy and speed, measured. Relative paths are from the "
                                            "working directory.")
    p.add_argument("--models-dir", default="models",
                   help="folder of the models from train.py (default: models)")
    p.add_argument("--data-dir", default=None,
                   help="dataset for the accuracy figures (default: the folder each model was trained on, "
                        f"from its training record; {DEFAULT_DATA_DIR} without a record)")
    p.add_argument("--categories", nargs="+", metavar="NAME", help="only these categories (default: all found)")
    p.add_argument("--per-channel", action="store_true",
                   help="one INT8 scale per output channel instead of per tensor (default: per tensor)")
    p.add_argument("--runs", type=int, default=1000, help="timed single-sample runs per model (default: 1000)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help=f"batch size for the throughput figure, at most {MAX_BATCH} (default: 1024)")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file (default: none)")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 10 ** 6 or not 1 <= args.batch_size <= MAX_BATCH:
        p.error(f"--runs must be between 1 and 1000000 and --batch-size between 1 and {MAX_BATCH} "
                f"(a batch of {MAX_BATCH} already takes ~{MAX_BATCH * 28 * 4 / 1e6:.0f} MB of input)")
    return args


def chosen_models(args):
    """{name: (FP32 path, kind, record)} to quantize; raises ModelError for none, or for a
    category asked for that has no model, and when --json names a file this run reads or
    writes. --categories NAME takes every kind's model of the category (NAME, NAME_motion)."""
    models = store.find_models(args.models_dir, faults=True)
    if args.categories:
        asked = list(dict.fromkeys(args.categories))
        of = lambda c: [n for n, (_, kind, record) in models.items() if n == c or record.get("category") == c]
        unknown = [c for c in asked if not of(c)]
        if unknown:
            raise ModelError(f"{args.models_dir}: no model for {', '.join(unknown)} (found: "
                             f"{', '.join(models) or 'none'}); run `python train.py` for it first")
        models = {n: models[n] for c in asked for n in of(c)}
    if not models:
        raise ModelError(f"no models found in {args.models_dir}; run `python train.py` first")
    if args.json:
        touched = [p for n in models for p in (*store.model_paths(args.models_dir, n).values(),
                                               store.int8_path(args.models_dir, n))]
        outputs.check_report_path(args.json, touched, ModelError)
    return models


def main(argv=None):
    args = parse_args(argv)
    print("=== MediaPipe Pose Model Quantization ===\n")
    try:
        models = chosen_models(args)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path, _, _ in models.values():
        print(f"✓ Found {os.path.relpath(path)}")
    for path, why in store.unrecorded_models(args.models_dir):
        print(f"Skipped {os.path.relpath(path)}: {why}; retrain it with train.py to quantize it", file=sys.stderr)
    for sentence in store.mixed_runs(models):
        print(f"Note: {sentence}; each is quantized and measured on its own", file=sys.stderr)
    results, failed = {}, []
    try:
        with outputs.folder_lock(args.models_dir):      # train.py cannot replace a model meanwhile
            outputs.report_stale_temps(args.models_dir)
            for name, model in models.items():
                quantize_one(name, *model, args, results, failed)
    except KeyboardInterrupt:
        print(f"\nInterrupted: INT8 models written for {', '.join(results) or 'none'}; the rest not written "
              f"(earlier files kept).", file=sys.stderr)
        return 130
    if results:
        print_summary(results)
    return outputs.finish(results, failed, args.json)


def quantize_one(name, path, kind, record, args, results, failed):
    """Quantize, measure and report one model; a ModelError names it and adds it to failed."""
    target = store.int8_path(args.models_dir, name)
    try:
        check_model(path, kind, record)
        if os.path.exists(target) and not is_our_int8(target):
            raise ModelError(f"{target}: exists and is not an INT8 model from quantize.py; not overwritten "
                             f"(rename it, or the category it belongs to)")
        print(f"\nQuantizing {os.path.relpath(path)}...")
        source = outputs.file_sha1(path)
        try:
            quantize(path, target, args.per_channel)
        except Exception as e:     # onnxruntime.quantization raises many types
            raise ModelError(f"{path}: quantization failed ({e.__class__.__name__}: {e})")
        print(f"Quantized model saved: {os.path.relpath(target)}")
        try:
            results[name] = compare(name, kind, record, path, target, args.data_dir, args.runs, args.batch_size)
            if outputs.file_sha1(path) != source or record_sha1(path) != record_sha1(target):
                raise ModelError(f"{path}: changed while it was quantized (another train.py run?); "
                                 f"{target} removed, run quantize.py again")
        except ModelError:
            results.pop(name, None)
            os.remove(target)           # a model that failed its checks is not left behind
            raise
        print_report(name, kind, results[name], args, results)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        failed.append(name)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, outputs.terminate)
    sys.exit(main())

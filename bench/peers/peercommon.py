"""Shared helpers for the peer benchmarks (no framework imports here).

Every peer script times R windows of N training steps each, after W warm-up steps,
on one fixed random CIFAR-shaped batch (32x32x3 float32 in [0,1), labels in 0..9),
and reports images/s per window = N * batch / wall seconds of that window.
The headline number is the median over the R windows.
"""

import argparse
import json
import os
import platform
import statistics
import time

MODELS = ("tf-tutorial", "keras-cnn", "lenet5", "alexnet", "vgg11", "resnet20", "resnet56")
# Trainable parameters (batch-norm running mean/variance not included), as ddptrain counts.
EXPECTED_PARAMS = {
    "tf-tutorial": 122_570,
    "keras-cnn": 1_250_858,
    "lenet5": 62_006,
    "alexnet": 2_014_410,
    "vgg11": 9_228_362,
    "resnet20": 272_474,
    "resnet56": 855_770,
}
# Environment variables that cap the peers' instruction set (run_peers.sh AVX2=1).
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
NUM_CLASSES = 10
IMAGE_HW = 32
IMAGE_C = 3


def base_parser(description, ddp=False):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=MODELS, required=True)
    if ddp:
        p.add_argument("--global-batch", type=int, default=64,
                       help="global batch, split evenly over the processes (default 64)")
        p.add_argument("--nproc", type=int, default=2,
                       help="processes when not launched by torchrun (default 2)")
        p.add_argument("--threads", type=int, default=1,
                       help="torch threads per process (default 1)")
    else:
        p.add_argument("--batch", type=int, default=64)
        p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=100, help="training steps per timed window")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps")
    p.add_argument("--repeats", type=int, default=5, help="number of timed windows")
    p.add_argument("--max-window-seconds", type=float, default=0,
                   help="end a window early once it has run this long (0 = never); the "
                        "window's images/s then uses the steps actually done. Keeps a run "
                        "bounded when the shared machine is in a slow phase.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print one JSON result line")
    return p


def timed_window(step, steps, max_seconds=0.0, finish=lambda last: last, stop_all=None,
                 check_every=10):
    """Run up to `steps` calls of step(); return (steps_done, seconds, finish(last)).

    finish(last) runs inside the timed region (to wait for asynchronous work).
    stop_all(flag) -> bool, if given, makes every process agree on stopping early
    (called every `check_every` steps, so all ranks run the same number of steps).
    """
    t0 = time.perf_counter()
    last = None
    done = 0
    while done < steps:
        last = step()
        done += 1
        if max_seconds > 0 and done < steps:
            if stop_all is None:
                if time.perf_counter() - t0 > max_seconds:
                    break
            elif done % check_every == 0:
                if stop_all(time.perf_counter() - t0 > max_seconds):
                    break
    out = finish(last)
    return done, time.perf_counter() - t0, out


def check_params(model_name, n):
    exp = EXPECTED_PARAMS[model_name]
    status = "OK" if n == exp else f"MISMATCH (expected {exp:,})"
    print(f"params: {n:,} {status}", flush=True)
    if n != exp:
        raise SystemExit(f"parameter count {n} != expected {exp} for {model_name}")


def report(peer, version, model, batch, threads, samples, params, as_json, extra=None):
    med = statistics.median(samples)
    shown = ", ".join(f"{s:.1f}" for s in samples)
    print(f"[{peer}] model={model} batch={batch} threads={threads} "
          f"median {med:.1f} images/s  (windows: {shown})", flush=True)
    if as_json:
        rec = {
            "peer": peer,
            "version": version,
            "model": model,
            "batch": batch,
            "threads": threads,
            "images_per_sec_median": round(med, 2),
            "samples": [round(s, 2) for s in samples],
            "params": params,
        }
        if extra:
            rec.update(extra)
        isa = {k: os.environ[k] for k in ISA_ENV if k in os.environ}
        if isa:
            rec["isa_env"] = isa
        rec["host"] = platform.node()
        rec["python"] = platform.python_version()
        print("JSON " + json.dumps(rec), flush=True)
    return med


# --- the training recipes (torch_recipe.py, tf_recipe.py) ---------------------------------

DEFAULT_CIFAR10_DIR = os.environ.get("CIFAR10_DIR", "/work/shared/cifar10-sample")
CIFAR10_RECORD = 1 + IMAGE_C * IMAGE_HW * IMAGE_HW


def read_cifar10_batches(paths):
    """CIFAR-10 binary records (1 label byte + R, G, B planes of 32x32) -> uint8 (N, 3, 32, 32),
    int64 labels."""
    import numpy as np
    raw = b"".join(open(p, "rb").read() for p in paths)
    if len(raw) % CIFAR10_RECORD:
        raise SystemExit(f"{paths}: {len(raw)} bytes is not a multiple of {CIFAR10_RECORD}-byte records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise SystemExit(f"{paths}: label {labels.max()} >= {NUM_CLASSES}; not CIFAR-10 binary data")
    return rec[:, 1:].reshape(-1, IMAGE_C, IMAGE_HW, IMAGE_HW), labels


def load_cifar10(data_dir):
    """(train_x, train_y, test_x, test_y, mean, std): NCHW float32 pixels/255 normalised by the
    per-channel mean and population std of the TRAINING set (exact integer sums, as ddptrain)."""
    import numpy as np
    train = [os.path.join(data_dir, f"data_batch_{i}.bin") for i in range(1, 6)]
    test = [os.path.join(data_dir, "test_batch.bin")]
    missing = [p for p in train + test if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"missing CIFAR-10 files: {', '.join(missing)}")
    xtr, ytr = read_cifar10_batches(train)
    xte, yte = read_cifar10_batches(test)
    n = xtr.shape[0] * IMAGE_HW * IMAGE_HW
    s = xtr.sum(axis=(0, 2, 3), dtype=np.uint64).astype(np.float64)
    q = np.einsum("nchw,nchw->c", xtr, xtr, dtype=np.uint64).astype(np.float64)
    mean = s / n / 255.0
    std = np.sqrt(np.maximum(q / n / 255.0**2 - mean**2, 0.0))
    std[std == 0] = 1.0
    m = mean.astype(np.float32).reshape(1, IMAGE_C, 1, 1)
    d = std.astype(np.float32).reshape(1, IMAGE_C, 1, 1)

    def normalise(x):
        return (x.astype(np.float32) / np.float32(255) - m) / d

    return normalise(xtr), ytr, normalise(xte), yte, mean, std


def lr_factor(step, steps_per_epoch, epochs, warmup_epochs):
    """ddptrain's LearningRateSchedule(warmupEpochs:, decay: .cosine).factor(step:...): linear
    warmup from 1/warmup_steps to 1, then half a cosine to 0 at the last step."""
    import math
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    total = max(epochs * steps_per_epoch - warmup, 1)
    t = min(step - warmup, total) / total
    return 0.5 * (1 + math.cos(math.pi * t))


def recipe_parser(description):
    """The options torch_recipe.py and tf_recipe.py share (defaults: the CIFAR ResNet recipe)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="resnet20")
    p.add_argument("--data", default=DEFAULT_CIFAR10_DIR,
                   help=f"CIFAR-10 binary dir (default $CIFAR10_DIR or {DEFAULT_CIFAR10_DIR})")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="L2 on conv/dense weights only (not biases, not BN scale/shift)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0,
                   help="smoke test: end each epoch after this many steps (0 = full epochs; "
                        "the schedule still spans full epochs)")
    return p


def epoch_line(rec, epochs):
    return (f"epoch {rec['epoch']:3d}/{epochs}  train loss {rec['train_loss']:.4f} "
            f"acc {100 * rec['train_acc']:5.2f}%  test loss {rec['test_loss']:.4f} "
            f"acc {100 * rec['test_acc']:5.2f}%  {rec['seconds']:6.1f}s "
            f"({rec['images'] / rec['seconds']:.0f} images/s; eval {rec['eval_seconds']:.1f}s)  "
            f"lr {rec['lr']:.5f}")


def recipe_result(peer, version, args, n_params, n_train, n_test, steps_per_epoch, history,
                  total_seconds, extra=None):
    train_s = [h["seconds"] for h in history]
    eval_s = [h["eval_seconds"] for h in history]
    rec = {
        "peer": peer, "version": version, "model": args.model, "params": n_params,
        "epochs": args.epochs, "batch": args.batch, "threads": args.threads,
        "train_images": n_train, "test_images": n_test, "steps_per_epoch": steps_per_epoch,
        "max_steps": args.max_steps or None,
        "total_wall_seconds": round(total_seconds, 2),
        "seconds_per_epoch": round(sum(train_s) / len(train_s), 3) if train_s else None,
        "eval_seconds_per_epoch": round(sum(eval_s) / len(eval_s), 3) if eval_s else None,
        "images_per_sec": round(sum(h["images"] for h in history) / sum(train_s), 2)
        if train_s else None,
        "final_test_acc": round(history[-1]["test_acc"], 4) if history else None,
        "seed": args.seed,
    }
    if extra:
        rec.update(extra)
    rec.update({"host": platform.node(), "python": platform.python_version(),
                "load": round(os.getloadavg()[0], 2)})
    return "JSON " + json.dumps(rec)


def warn_openblas_env():
    bad = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if bad:
        print(f"note: {', '.join(bad)} set in environment; peers are normally run with "
              f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`", flush=True)

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


def warn_openblas_env():
    bad = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if bad:
        print(f"note: {', '.join(bad)} set in environment; peers are normally run with "
              f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`", flush=True)

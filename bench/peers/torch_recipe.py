#!/usr/bin/env python3
"""The CIFAR ResNet training recipe in plain PyTorch, to compare with `ddptrain train`
(time per epoch and accuracy per epoch) on the same data and the same network.

Data: CIFAR-10 binary format (data_batch_1..5.bin, test_batch.bin; each record = 1 label
byte + 3072 pixel bytes, the R, G, B planes of 32x32, row-major). Inputs are pixels/255
normalised by the per-channel mean and population std of the TRAINING set.
Augmentation (training only): pad 4 on each side with zeros after normalisation (= the
channel mean, as ddptrain pads), random 32x32 crop, horizontal flip with p = 0.5.
Model: torch_models.py (--model, default resnet20; any of the ddptrain zoo), PyTorch's
default init (which ddptrain also uses).
Optimiser: SGD, Nesterov momentum 0.9, weight decay 5e-4 on conv/dense weights only (not
on biases nor batch-norm scale/shift), batch 64, the last incomplete batch dropped.
Schedule (per step, as ddptrain's LearningRateSchedule): linear warmup over 5 epochs from
lr/warmup_steps to lr = 0.1, then half a cosine to zero at the last step.
Loss: cross-entropy with label smoothing 0.1 (the test loss too, as ddptrain reports it).

One line per epoch: train loss and accuracy (on the augmented batches, during training),
test loss and accuracy, epoch seconds (training only, as ddptrain's epoch time; evaluation
is timed separately). At the end one JSON line with total wall time and seconds per epoch.

    cd bench/peers
    nice -n 19 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python torch_recipe.py --epochs 1
"""

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn as nn

import peercommon as pc
import torch_models

DEFAULT_DATA = os.environ.get("CIFAR10_DIR", "/work/shared/cifar10-sample")
RECORD = 1 + 3 * 32 * 32


def read_batches(paths):
    raw = b"".join(open(p, "rb").read() for p in paths)
    if len(raw) % RECORD:
        raise SystemExit(f"{paths}: size {len(raw)} is not a multiple of {RECORD}-byte records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise SystemExit(f"{paths}: label {labels.max()} > 9; not CIFAR-10 binary data")
    images = rec[:, 1:].reshape(-1, 3, 32, 32)          # R, G, B planes: NCHW already
    return images, labels


def load_cifar10(data_dir):
    train_paths = [os.path.join(data_dir, f"data_batch_{i}.bin") for i in range(1, 6)]
    test_paths = [os.path.join(data_dir, "test_batch.bin")]
    missing = [p for p in train_paths + test_paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"missing CIFAR-10 files: {', '.join(missing)}")
    xtr, ytr = read_batches(train_paths)
    xte, yte = read_batches(test_paths)
    # Statistics of pixels/255 over the training set, exact (integer sums), population std.
    n = xtr.shape[0] * 32 * 32
    s = xtr.sum(axis=(0, 2, 3), dtype=np.uint64).astype(np.float64)
    q = np.einsum("nchw,nchw->c", xtr, xtr, dtype=np.uint64).astype(np.float64)
    mean = s / n / 255.0
    std = np.sqrt(np.maximum(q / n / 255.0**2 - mean**2, 0.0))
    std[std == 0] = 1.0

    def normalise(x):
        x = torch.from_numpy(x.astype(np.float32) / 255.0)
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        d = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x - m) / d

    return (normalise(xtr), torch.from_numpy(ytr), normalise(xte), torch.from_numpy(yte),
            mean, std)


def augment_batch(padded, idx, gen, out):
    """Pad-4 random crop + horizontal flip of padded[idx] (N, 3, 40, 40) into out (N, 3, 32, 32)."""
    n = idx.numel()
    offs = torch.randint(0, 9, (n, 2), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist()
    for i, (j, (dy, dx), f) in enumerate(zip(idx.tolist(), offs, flips)):
        crop = padded[j, :, dy:dy + 32, dx:dx + 32]
        out[i].copy_(crop.flip(2) if f else crop)
    return out


def lr_factor(step, steps_per_epoch, epochs, warmup_epochs):
    """ddptrain's LearningRateSchedule(warmupEpochs:, decay: .cosine).factor(step:...)."""
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    total = max(epochs * steps_per_epoch - warmup, 1)
    t = min(step - warmup, total) / total
    return 0.5 * (1 + math.cos(math.pi * t))


def evaluate(model, x, y, loss_fn, batch):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            loss_sum += loss_fn(out, y[i:i + batch]).item() * out.shape[0]
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return loss_sum / x.shape[0], correct / x.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=pc.MODELS, default="resnet20")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"CIFAR-10 binary dir (default {DEFAULT_DATA})")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0,
                   help="smoke test: end each epoch after this many steps (0 = full epochs; "
                        "the schedule still spans full epochs)")
    args = p.parse_args()
    pc.warn_openblas_env()
    t_start = time.perf_counter()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    xtr, ytr, xte, yte, mean, std = load_cifar10(args.data)
    padded = nn.functional.pad(xtr, (4, 4, 4, 4)) if not args.no_augment else None
    steps_per_epoch = xtr.shape[0] // args.batch
    if steps_per_epoch == 0:
        raise SystemExit(f"{xtr.shape[0]} training images < batch {args.batch}")

    model = torch_models.build(args.model)
    model.train()
    n_params = torch_models.count_params(model)
    pc.check_params(args.model, n_params)
    decay = [q for q in model.parameters() if q.ndim > 1]        # conv and dense weights
    no_decay = [q for q in model.parameters() if q.ndim <= 1]    # biases, BN scale/shift
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    print(f"torch {torch.__version__}  threads={torch.get_num_threads()}  "
          f"ATen ISA={torch.backends.cpu.get_cpu_capability()}  "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}  model={args.model}  "
          f"params={n_params:,} ({sum(q.numel() for q in decay):,} decayed)", flush=True)
    print(f"data {args.data}: train {xtr.shape[0]}, test {xte.shape[0]}; mean "
          f"{np.round(mean, 4).tolist()} std {np.round(std, 4).tolist()}; batch {args.batch}, "
          f"{steps_per_epoch} steps/epoch (last {xtr.shape[0] % args.batch} images dropped)", flush=True)
    print(f"recipe: SGD nesterov {args.momentum} lr {args.lr}, warmup {args.warmup_epochs} "
          f"epochs then cosine (per step), weight decay {args.weight_decay} (weights only), "
          f"label smoothing {args.label_smoothing}, "
          f"{'no augmentation' if args.no_augment else 'pad-4 crop + flip'}, {args.epochs} epochs",
          flush=True)

    xb = torch.empty(args.batch, 3, 32, 32)
    step = 0
    train_secs, eval_secs, history = [], [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for s in range(min(steps_per_epoch, args.max_steps or steps_per_epoch)):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            if args.no_augment:
                x = xtr[idx]
            else:
                x = augment_batch(padded, idx, gen, xb)
            y = ytr[idx]
            lr = args.lr * lr_factor(step, steps_per_epoch, args.epochs, args.warmup_epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * y.numel()
            correct += (out.argmax(1) == y).sum().item()
            seen += y.numel()
        t1 = time.perf_counter()
        test_loss, test_acc = evaluate(model, xte, yte, loss_fn, args.eval_batch)
        t2 = time.perf_counter()
        train_secs.append(t1 - t0)
        eval_secs.append(t2 - t1)
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": t1 - t0,
               "eval_seconds": t2 - t1, "lr": lr, "images": seen}
        history.append(rec)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {rec['train_loss']:.4f} "
              f"acc {100 * rec['train_acc']:5.2f}%  test loss {test_loss:.4f} "
              f"acc {100 * test_acc:5.2f}%  {t1 - t0:6.1f}s ({seen / (t1 - t0):.0f} images/s; "
              f"eval {t2 - t1:.1f}s)  lr {lr:.5f}", flush=True)

    total = time.perf_counter() - t_start
    result = {
        "peer": "pytorch-recipe", "version": torch.__version__, "model": args.model,
        "params": n_params, "epochs": args.epochs, "batch": args.batch, "threads": args.threads,
        "train_images": int(xtr.shape[0]), "test_images": int(xte.shape[0]),
        "steps_per_epoch": steps_per_epoch, "max_steps": args.max_steps or None,
        "images_per_sec": round(sum(h["images"] for h in history) / sum(train_secs), 2)
        if train_secs else None,
        "total_wall_seconds": round(total, 2),
        "seconds_per_epoch": round(sum(train_secs) / len(train_secs), 3) if train_secs else None,
        "eval_seconds_per_epoch": round(sum(eval_secs) / len(eval_secs), 3) if eval_secs else None,
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "seed": args.seed, "host": platform.node(), "python": platform.python_version(),
        "load": os.getloadavg()[0],
    }
    print("JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

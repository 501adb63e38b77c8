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

import os
import time

import numpy as np
import torch
import torch.nn as nn

import peercommon as pc
import torch_models


def augment_batch(padded, idx, gen, out):
    """Pad-4 random crop + horizontal flip of padded[idx] (N, 3, 40, 40) into out (N, 3, 32, 32)."""
    n = idx.numel()
    offs = torch.randint(0, 9, (n, 2), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist()
    for i, (j, (dy, dx), f) in enumerate(zip(idx.tolist(), offs, flips)):
        crop = padded[j, :, dy:dy + 32, dx:dx + 32]
        out[i].copy_(crop.flip(2) if f else crop)
    return out


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
    args = pc.recipe_parser(__doc__).parse_args()
    pc.warn_openblas_env()
    t_start = time.perf_counter()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    xtr, ytr, xte, yte, mean, std = pc.load_cifar10(args.data)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in (xtr, ytr, xte, yte))
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
    history = []
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
            lr = args.lr * pc.lr_factor(step, steps_per_epoch, args.epochs, args.warmup_epochs)
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
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": t1 - t0,
               "eval_seconds": t2 - t1, "lr": lr, "images": seen}
        history.append(rec)
        print(pc.epoch_line(rec, args.epochs), flush=True)

    total = time.perf_counter() - t_start
    print(pc.recipe_result("pytorch-recipe", torch.__version__, args, n_params, int(xtr.shape[0]),
                           int(xte.shape[0]), steps_per_epoch, history, total,
                           extra={"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}),
          flush=True)


if __name__ == "__main__":
    main()

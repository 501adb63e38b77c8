#!/usr/bin/env python3
"""The CIFAR ResNet training recipe in TensorFlow/Keras: torch_recipe.py's recipe, step for
step, on the same CIFAR-10 binary files (see torch_recipe.py for the recipe itself).

Model: keras_models.py (NHWC, PyTorch-style init, BN momentum 0.9 / epsilon 1e-5).
The train step is one @tf.function (no XLA): forward, label-smoothed softmax cross-entropy,
backward, and the SGD update written out as PyTorch (and ddptrain) do it, so the
trajectory rule is the same: d = g + wd*w (weights only); buf = mu*buf + d;
w -= lr*(d + mu*buf). (Keras' own SGD folds lr into the momentum buffer and applies weight
decay decoupled, which differs once lr changes every step.)
Augmentation: pad-4 crop + flip in NumPy (padding = 0 after normalisation).
Threads: intra-op --threads, inter-op 1. oneDNN is the caller's choice:
TF_ENABLE_ONEDNN_OPTS=0|1 (unset = TF's default: OFF on this AVX2-only Zen3 CPU).

    cd bench/peers
    nice -n 19 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE TF_ENABLE_ONEDNN_OPTS=1 \\
        .venv/bin/python tf_recipe.py --epochs 1
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_models  # noqa: E402
import peercommon as pc  # noqa: E402


def main():
    args = pc.recipe_parser(__doc__).parse_args()
    pc.warn_openblas_env()
    t_start = time.perf_counter()

    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    xtr, ytr, xte, yte, mean, std = pc.load_cifar10(args.data)
    xtr = np.ascontiguousarray(xtr.transpose(0, 2, 3, 1))       # NCHW -> NHWC
    xte = np.ascontiguousarray(xte.transpose(0, 2, 3, 1))
    ytr, yte = ytr.astype(np.int32), yte.astype(np.int32)
    padded = None if args.no_augment else np.pad(xtr, ((0, 0), (4, 4), (4, 4), (0, 0)))
    steps_per_epoch = xtr.shape[0] // args.batch
    if steps_per_epoch == 0:
        raise SystemExit(f"{xtr.shape[0]} training images < batch {args.batch}")

    model = keras_models.build_model(args.model, keras)
    n_params = keras_models.trainable_params(model)
    pc.check_params(args.model, n_params)
    variables = model.trainable_variables
    decays = [args.weight_decay if len(v.shape) > 1 else 0.0 for v in variables]
    buffers = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    mu = float(args.momentum)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                   label_smoothing=args.label_smoothing)

    @tf.function
    def train_step(x, y, lr):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(tf.one_hot(y, pc.NUM_CLASSES), logits)
        grads = tape.gradient(loss, variables)
        for v, g, b, wd in zip(variables, grads, buffers, decays):
            d = g + wd * v if wd else g
            if mu:
                b.assign(mu * b + d)
                d = d + mu * b
            v.assign_sub(lr * d)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y),
                                        tf.int32))
        return loss, correct

    @tf.function
    def eval_step(x, y):
        logits = model(x, training=False)
        loss = loss_fn(tf.one_hot(y, pc.NUM_CLASSES), logits) * tf.cast(tf.shape(y)[0], tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y),
                                        tf.int32))
        return loss, correct

    onednn_env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    onednn_on = bool(_pywrap_util_port.IsMklEnabled())
    print(f"tensorflow {tf.__version__} keras {keras.__version__}  intra_op={args.threads} "
          f"inter_op=1  TF_ENABLE_ONEDNN_OPTS={onednn_env or 'unset'} -> oneDNN "
          f"{'ON' if onednn_on else 'OFF'}  model={args.model}  params={n_params:,} "
          f"({sum(int(np.prod(v.shape)) for v, wd in zip(variables, decays) if wd):,} decayed)",
          flush=True)
    print(f"data {args.data}: train {xtr.shape[0]}, test {xte.shape[0]}; mean "
          f"{np.round(mean, 4).tolist()} std {np.round(std, 4).tolist()}; batch {args.batch}, "
          f"{steps_per_epoch} steps/epoch (last {xtr.shape[0] % args.batch} images dropped)", flush=True)
    print(f"recipe: SGD nesterov {args.momentum} lr {args.lr}, warmup {args.warmup_epochs} "
          f"epochs then cosine (per step), weight decay {args.weight_decay} (weights only), "
          f"label smoothing {args.label_smoothing}, "
          f"{'no augmentation' if args.no_augment else 'pad-4 crop + flip'}, {args.epochs} epochs",
          flush=True)

    ar = np.arange(32)
    step = 0
    history = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(xtr.shape[0])
        loss_sum, correct, seen = 0.0, 0, 0
        for s in range(min(steps_per_epoch, args.max_steps or steps_per_epoch)):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            if padded is None:
                x = xtr[idx]
            else:
                n = idx.size
                dy, dx = rng.integers(0, 9, size=(2, n))
                flip = rng.random(n) < 0.5
                rows = dy[:, None] + ar                                   # (n, 32)
                cols = dx[:, None] + np.where(flip[:, None], 31 - ar, ar)  # crop, then mirror
                x = padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
            y = ytr[idx]
            lr = args.lr * pc.lr_factor(step, steps_per_epoch, args.epochs, args.warmup_epochs)
            loss, ok = train_step(tf.constant(x), tf.constant(y), tf.constant(lr, tf.float32))
            step += 1
            loss_sum += float(loss) * y.size
            correct += int(ok)
            seen += y.size
        t1 = time.perf_counter()
        test_loss, test_correct = 0.0, 0
        for i in range(0, xte.shape[0], args.eval_batch):
            l, c = eval_step(tf.constant(xte[i:i + args.eval_batch]),
                             tf.constant(yte[i:i + args.eval_batch]))
            test_loss += float(l)
            test_correct += int(c)
        t2 = time.perf_counter()
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": test_loss / xte.shape[0], "test_acc": test_correct / xte.shape[0],
               "seconds": t1 - t0, "eval_seconds": t2 - t1, "lr": lr, "images": seen}
        history.append(rec)
        print(pc.epoch_line(rec, args.epochs), flush=True)

    total = time.perf_counter() - t_start
    peer = "tensorflow-onednn-recipe" if onednn_on else "tensorflow-eigen-recipe"
    print(pc.recipe_result(peer, tf.__version__, args, n_params, int(xtr.shape[0]),
                           int(xte.shape[0]), steps_per_epoch, history, total,
                           extra={"onednn": onednn_on, "TF_ENABLE_ONEDNN_OPTS": onednn_env,
                                  "keras": keras.__version__}),
          flush=True)


if __name__ == "__main__":
    main()

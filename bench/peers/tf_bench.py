#!/usr/bin/env python3
"""TensorFlow/Keras CPU training throughput with a tf.function-compiled train step.

Full step: forward, SparseCategoricalCrossentropy(from_logits=True), backward,
SGD(lr 0.01, momentum 0.9). Channels-last (NHWC), the TF default on CPU. No XLA.
Random CIFAR-shaped data (N, 32, 32, 3), random labels, one fixed batch reused.
Models: keras_models.py (the ddptrain zoo, same names as torch_models.py).
oneDNN is decided by the caller: TF_ENABLE_ONEDNN_OPTS=0|1 (unset = TF's own default,
which on x86 Linux is "on" only for CPUs with AVX-512 VNNI/BF16-class features).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras_models  # noqa: E402
import peercommon as pc  # noqa: E402


def main():
    args = pc.base_parser(__doc__).parse_args()
    pc.warn_openblas_env()

    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    # Threading must be configured before TF runs any op.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras

    onednn_env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    onednn_on = bool(_pywrap_util_port.IsMklEnabled())
    onednn_desc = (f"TF_ENABLE_ONEDNN_OPTS={onednn_env}" if onednn_env is not None
                   else "TF_ENABLE_ONEDNN_OPTS unset (TF default)")
    print(f"tensorflow {tf.__version__} keras {keras.__version__}  "
          f"intra_op={args.threads} inter_op=1  {onednn_desc} -> oneDNN "
          f"{'ON' if onednn_on else 'OFF'}  model={args.model} batch={args.batch}", flush=True)

    keras.utils.set_random_seed(args.seed)
    model = keras_models.build_model(args.model, keras)
    # Trainable parameters, as PyTorch and ddptrain count them (count_params() would add
    # the batch-norm moving statistics).
    n_params = keras_models.trainable_params(model)
    pc.check_params(args.model, n_params)

    rng = np.random.default_rng(args.seed)
    x = tf.constant(rng.random((args.batch, pc.IMAGE_HW, pc.IMAGE_HW, pc.IMAGE_C),
                               dtype=np.float32))
    y = tf.constant(rng.integers(0, pc.NUM_CLASSES, size=(args.batch,), dtype=np.int32))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = loss_fn(yb, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    t0 = time.perf_counter()
    train_step(x, y).numpy()  # trace + compile
    print(f"  trace/compile + first step: {time.perf_counter() - t0:.2f}s", flush=True)
    for _ in range(args.warmup):
        loss = train_step(x, y)
    loss.numpy()

    samples = []
    for r in range(args.repeats):
        n, dt, loss_val = pc.timed_window(lambda: train_step(x, y), args.steps,
                                          args.max_window_seconds,
                                          finish=lambda loss: float(loss.numpy()))
        ips = n * args.batch / dt
        samples.append(ips)
        print(f"  window {r + 1}/{args.repeats}: {n} steps in {dt:.2f}s "
              f"= {ips:.1f} images/s (loss {loss_val:.3f})", flush=True)

    peer = "tensorflow-onednn" if onednn_on else "tensorflow-eigen"
    pc.report(peer, tf.__version__, args.model, args.batch, args.threads, samples,
              n_params, args.json,
              extra={"mode": "tf.function", "onednn": onednn_on,
                     "TF_ENABLE_ONEDNN_OPTS": onednn_env, "keras": keras.__version__})


if __name__ == "__main__":
    main()

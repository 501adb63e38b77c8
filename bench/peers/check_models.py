#!/usr/bin/env python3
"""Quick check of the model zoo in both frameworks: prints every model's trainable-parameter
count from PyTorch and from Keras against the expected (ddptrain) count, then copies each
PyTorch model's weights (and BN running statistics) into the Keras model and compares the
two outputs in inference mode on the same random input, so layer order, padding, strides,
shortcuts and the flatten order all agree, not just the counts. A few seconds per model.

    cd bench/peers; env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python check_models.py [MODEL...]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import keras_models  # noqa: E402
import peercommon as pc  # noqa: E402
import torch_models  # noqa: E402


def copy_weights(tmodel, kmodel):
    """PyTorch (NCHW) -> Keras (NHWC): modules with weights, in definition order."""
    tmods = [m for m in tmodel.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    kmods = sorted((l for l in kmodel.layers if l.weights), key=lambda l: l.name)
    assert len(tmods) == len(kmods), (len(tmods), len(kmods))
    channels = None
    for t, k in zip(tmods, kmods):
        kind = type(k).__name__
        if isinstance(t, nn.Conv2d):
            assert kind == "Conv2D", kind
            w = [t.weight.detach().numpy().transpose(2, 3, 1, 0)]
            if t.bias is not None:
                w.append(t.bias.detach().numpy())
            channels = t.out_channels
        elif isinstance(t, nn.BatchNorm2d):
            assert kind == "BatchNormalization", kind
            w = [t.weight.detach().numpy(), t.bias.detach().numpy(),
                 t.running_mean.numpy(), t.running_var.numpy()]
        else:
            assert kind == "Dense", kind
            wt = t.weight.detach().numpy()                 # (out, in)
            if channels is not None and t.in_features != channels:
                # first dense after a spatial Flatten: (C, H, W) order -> (H, W, C)
                hw = int(round((t.in_features // channels) ** 0.5))
                wt = wt.reshape(t.out_features, channels, hw, hw).transpose(0, 2, 3, 1)
                wt = wt.reshape(t.out_features, -1)
            channels = None
            w = [wt.T, t.bias.detach().numpy()]
        k.set_weights(w)


def main():
    names = sys.argv[1:] or list(pc.MODELS)
    import tensorflow as tf
    keras = tf.keras
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}")
    print(f"{'model':12s} {'expected':>10s} {'PyTorch':>10s} {'Keras':>10s} {'BN stats':>9s}  max |out diff|")
    bad = 0
    for name in names:
        tm = torch_models.build(name)
        with torch.no_grad():   # non-trivial BN statistics, so eval mode checks them too
            for m in tm.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
        tm.eval()
        km = keras_models.build_model(name, keras)
        nt, nk = torch_models.count_params(tm), keras_models.trainable_params(km)
        buffers = int(km.count_params()) - nk
        copy_weights(tm, km)
        x = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
        with torch.no_grad():
            yt = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        yk = np.asarray(km(x, training=False))
        diff = float(np.max(np.abs(yt - yk)))
        scale = float(np.max(np.abs(yt)))
        exp = pc.EXPECTED_PARAMS[name]
        ok = nt == exp and nk == exp and diff <= 1e-4 * max(1.0, scale)
        bad += not ok
        print(f"{name:12s} {exp:>10,} {nt:>10,} {nk:>10,} {buffers:>9,}  {diff:.2e} "
              f"(|out| {scale:.2f})  {'OK' if ok else 'MISMATCH'}", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

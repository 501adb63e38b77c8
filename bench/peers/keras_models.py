"""The ddptrain model zoo in Keras (channels-last, NHWC), layer for layer as ddptrain and
torch_models.py define them; the same names and the same trainable-parameter counts.

- Initialisation follows PyTorch's default (which is ddptrain's): conv/dense weights and
  biases uniform in +-1/sqrt(fan_in) (weights: VarianceScaling(1/3, fan_in, uniform)).
- BatchNormalization(momentum=0.9, epsilon=1e-5) == PyTorch BatchNorm2d(eps=1e-5,
  momentum=0.1). Keras' count_params() also counts the BN moving mean/variance
  (non-trainable); trainable_params() below does not, like PyTorch and ddptrain.
- A 3x3 stride-2 convolution with padding 1 is ZeroPadding2D(1) + Conv2D(valid): Keras'
  padding="same" with stride 2 on an even size pads (0, 1), not (1, 1), which would sample
  other pixels than PyTorch/ddptrain. Stride-1 "same" is the symmetric pad 1.
- Flatten is over (H, W, C) here and (C, H, W) in PyTorch: same sizes, another order.
"""

import math

import numpy as np

MODELS = ("tf-tutorial", "keras-cnn", "lenet5", "alexnet", "vgg11", "resnet20", "resnet56")


def build_model(name, keras, hw=32, channels=3, classes=10):
    L = keras.layers
    made = [0]

    def seq(kind):
        # Layers with weights are named in creation order (= PyTorch's module order), so
        # check_models.py can pair them; model.layers is in graph order, which differs
        # for the ResNet shortcut.
        made[0] += 1
        return f"w{made[0]:03d}_{kind}"

    def bias_init(fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return keras.initializers.RandomUniform(-b, b)

    def w_init():
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")

    def conv(x, filters, k, stride=1, pad=0, bias=True, relu=False):
        if pad and stride == 1 and k == 2 * pad + 1:
            padding = "same"                      # symmetric pad (k-1)/2
        else:
            if pad:
                x = L.ZeroPadding2D(pad)(x)
            padding = "valid"
        fan_in = k * k * int(x.shape[-1])
        return L.Conv2D(filters, k, strides=stride, padding=padding, use_bias=bias,
                        activation="relu" if relu else None, kernel_initializer=w_init(),
                        bias_initializer=bias_init(fan_in), name=seq("conv"))(x)

    def dense(x, units, relu=False):
        fan_in = int(x.shape[-1])
        return L.Dense(units, activation="relu" if relu else None, kernel_initializer=w_init(),
                       bias_initializer=bias_init(fan_in), name=seq("dense"))(x)

    def bn(x):
        return L.BatchNormalization(momentum=0.9, epsilon=1e-5, name=seq("bn"))(x)

    def conv_bn(x, filters, stride=1):
        return bn(conv(x, filters, 3, stride=stride, pad=1, bias=False))

    def pool(x):
        return L.MaxPooling2D(2)(x)

    inp = keras.Input(shape=(hw, hw, channels))
    x = inp
    if name == "tf-tutorial":                   # model S: 122,570 parameters
        x = pool(conv(x, 32, 3, relu=True))
        x = pool(conv(x, 64, 3, relu=True))
        x = conv(x, 64, 3, relu=True)
        x = L.Flatten()(x)                      # 4*4*64 = 1024
        x = dense(x, 64, relu=True)
        x = dense(x, classes)
    elif name == "keras-cnn":                   # model M: 1,250,858 parameters
        x = conv(x, 32, 3, pad=1, relu=True)
        x = conv(x, 32, 3, relu=True)
        x = L.Dropout(0.25)(pool(x))
        x = conv(x, 64, 3, pad=1, relu=True)
        x = conv(x, 64, 3, relu=True)
        x = L.Dropout(0.25)(pool(x))
        x = L.Flatten()(x)                      # 6*6*64 = 2304
        x = L.Dropout(0.5)(dense(x, 512, relu=True))
        x = dense(x, classes)
    elif name == "lenet5":                      # 62,006 parameters
        x = pool(conv(x, 6, 5, relu=True))      # 32 -> 28 -> 14
        x = pool(conv(x, 16, 5, relu=True))     # 14 -> 10 -> 5
        x = L.Flatten()(x)                      # 5*5*16 = 400
        x = dense(x, 120, relu=True)
        x = dense(x, 84, relu=True)
        x = dense(x, classes)
    elif name == "alexnet":                     # 2,014,410 parameters
        x = pool(conv(x, 48, 3, pad=1, relu=True))
        x = pool(conv(x, 128, 3, pad=1, relu=True))
        x = conv(x, 192, 3, pad=1, relu=True)
        x = conv(x, 192, 3, pad=1, relu=True)
        x = pool(conv(x, 128, 3, pad=1, relu=True))
        x = L.Flatten()(x)                      # 4*4*128 = 2048
        x = dense(L.Dropout(0.5)(x), 512, relu=True)
        x = dense(L.Dropout(0.5)(x), 256, relu=True)
        x = dense(x, classes)
    elif name == "vgg11":                       # 9,228,362 parameters
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
            x = pool(x) if v == "M" else L.ReLU()(conv_bn(x, v))
        x = L.Flatten()(x)                      # 1*1*512
        x = dense(x, classes)
    elif name in ("resnet20", "resnet56"):      # 272,474 / 855,770 parameters
        n = (int(name[len("resnet"):]) - 2) // 6
        x = L.ReLU()(conv_bn(x, 16))
        for filters, first_stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                stride = first_stride if i == 0 else 1
                y = L.ReLU()(conv_bn(x, filters, stride))
                y = conv_bn(y, filters)
                if stride != 1 or int(x.shape[-1]) != filters:     # option B projection
                    x = bn(conv(x, filters, 1, stride=stride, bias=False))
                x = L.ReLU()(L.Add()([y, x]))
        x = L.GlobalAveragePooling2D()(x)
        x = dense(x, classes)
    else:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return keras.Model(inp, x, name=name)


def trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


if __name__ == "__main__":
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    for name in MODELS:
        m = build_model(name, tf.keras)
        out = m(np.zeros((2, 32, 32, 3), np.float32), training=False)
        print(f"{name:12s} {trainable_params(m):>10,} params  "
              f"(+{int(m.count_params()) - trainable_params(m):,} BN moving stats)  "
              f"out {tuple(out.shape)}")

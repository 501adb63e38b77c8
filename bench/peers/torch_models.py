"""The ddptrain model zoo in PyTorch (channels-first, NCHW), layer for layer as ddptrain
defines them (../../shared/PRODUCT.md and `ddptrain models --show NAME`).

Parameter counts are trainable parameters only (`model.parameters()`); batch-norm running
mean/variance are buffers, counted by neither framework's check nor by ddptrain.
Init is PyTorch's default, which is also ddptrain's (uniform in +-1/sqrt(fan_in)).
BatchNorm: eps 1e-5, momentum 0.1 (PyTorch defaults).
"""

import torch.nn as nn


def tf_tutorial():
    # Model S: 122,570 parameters.
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),      # 32 -> 30 -> 15
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),     # 15 -> 13 -> 6
        nn.Conv2d(64, 64, 3), nn.ReLU(),                      # 6 -> 4
        nn.Flatten(),                                         # 64*4*4 = 1024
        nn.Linear(1024, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def keras_cnn():
    # Model M: 1,250,858 parameters.
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),            # 32 (same)
        nn.Conv2d(32, 32, 3), nn.ReLU(),                      # 30 (valid)
        nn.MaxPool2d(2), nn.Dropout(0.25),                    # 15
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),           # 15 (same)
        nn.Conv2d(64, 64, 3), nn.ReLU(),                      # 13 (valid)
        nn.MaxPool2d(2), nn.Dropout(0.25),                    # 6
        nn.Flatten(),                                         # 64*6*6 = 2304
        nn.Linear(2304, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


def lenet5():
    # LeNet-5 with ReLU and max pooling: 62,006 parameters.
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),       # 32 -> 28 -> 14
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),      # 14 -> 10 -> 5
        nn.Flatten(),                                         # 16*5*5 = 400
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def alexnet():
    # AlexNet for 32x32, half the original widths: 2,014,410 parameters.
    return nn.Sequential(
        nn.Conv2d(3, 48, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 32 -> 16
        nn.Conv2d(48, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16 -> 8
        nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 -> 4
        nn.Flatten(),                                                    # 128*4*4 = 2048
        nn.Dropout(0.5), nn.Linear(2048, 512), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 10),
    )


def conv_bn(cin, cout, stride=1):
    """3x3 conv, padding 1, no bias, then batch norm (ddptrain's convBN)."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]


def vgg11():
    # VGG-11 with batch norm, narrowed for CIFAR: 9,228,362 parameters.
    layers, cin = [], 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += conv_bn(cin, v) + [nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10))    # 512*1*1


class BasicBlock(nn.Module):
    """He et al. 2016 basic block; a block that changes resolution projects its shortcut with
    a strided 1x1 conv + BN ("option B"), as ddptrain's LayerSpec.basicBlock does."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, stride), nn.ReLU(), *conv_bn(cout, cout))
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(depth):
    # ResNet-6n+2 for CIFAR: resnet20 272,474 parameters, resnet56 855,770.
    assert (depth - 2) % 6 == 0, "a CIFAR ResNet has depth 6n+2"
    n = (depth - 2) // 6
    layers, cin = conv_bn(3, 16) + [nn.ReLU()], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


BUILDERS = {
    "tf-tutorial": tf_tutorial,
    "keras-cnn": keras_cnn,
    "lenet5": lenet5,
    "alexnet": alexnet,
    "vgg11": vgg11,
    "resnet20": lambda: cifar_resnet(20),
    "resnet56": lambda: cifar_resnet(56),
}


def build(name):
    return BUILDERS[name]()


def count_params(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    import torch
    for name in BUILDERS:
        m = build(name)
        out = m(torch.zeros(2, 3, 32, 32))
        buffers = sum(b.numel() for n, b in m.named_buffers() if not n.endswith("num_batches_tracked"))
        print(f"{name:12s} {count_params(m):>10,} params  (+{buffers:,} BN running stats)  out {tuple(out.shape)}")

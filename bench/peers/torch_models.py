"""The two ddptrain reference models in PyTorch (channels-first, NCHW)."""

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


def build(name):
    return {"tf-tutorial": tf_tutorial, "keras-cnn": keras_cnn}[name]()


def count_params(model):
    return sum(p.numel() for p in model.parameters())

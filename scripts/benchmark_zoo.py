"""The models of ``scripts/benchmark.py``, each written for modularcnn and for PyTorch, and their data.

Every entry of :data:`ZOO` is one architecture: ``ours(seed)`` builds and compiles the modularcnn
``Net``; ``theirs()`` builds the same layers as a PyTorch ``nn.Sequential`` (weights Glorot-uniform,
biases zero, as modularcnn's defaults); ``data`` names where its inputs come from (:func:`load_data`).
Both frameworks compute the same thing: the same layer sizes, paddings, strides and activations; the
classifier's softmax (or sigmoid) is fused into the loss on both sides (PyTorch trains on logits with
``CrossEntropyLoss`` / ``BCEWithLogitsLoss``).

PyTorch is imported only inside ``theirs`` and :func:`torch_layout`: this module loads without it.
"""

import dataclasses
import os
import sys

#: Images of synthetic data sets (and the sequence/noise inputs) are drawn from this seed.
DATA_SEED = 1234
TEST_SAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class Spec:
    """One zoo architecture: its two builders, its data and its loss (``"sparse"``/``"binary"``)."""

    name: str
    description: str
    data: str
    ours: object
    theirs: object
    loss: str = "sparse"


# -- data --------------------------------------------------------------------------------------------

#: Input shape (channels-last, per sample) of each kind of data.
DATA_SHAPES = {"mnist": (28, 28, 1), "mnist_flat": (784,), "cifar": (32, 32, 3),
               "sequence": (128, 8), "noise": (100,)}


def load_data(kind, train_samples, test_samples=TEST_SAMPLES):
    """``((x_train, y_train), (x_test, y_test))`` channels-last float32 for the data ``kind``.

    ``mnist``/``mnist_flat``: real MNIST (``$MODULARCNN_DATA/mnist``). ``cifar``: real CIFAR-10 when
    ``$MODULARCNN_DATA/cifar10`` holds it, else normal noise of its shape with random labels (the
    timings do not depend on the values). ``sequence``: 128 steps of 8 features, 10 classes.
    ``noise``: the DCGAN's 100-value latent vectors, labels 0/1 (real/fake) of shape ``(N, 1)``.
    Labels of the classifiers are int64 class indices. The test set is the first ``test_samples``.
    """
    import numpy as np

    if kind in ("mnist", "mnist_flat"):
        from modularcnn.datasets import mnist

        (x_train, y_train), (x_test, y_test) = mnist.load_data()
        scale = np.float32(1 / 255)
        x_train, x_test = x_train[:train_samples] * scale, x_test[:test_samples] * scale
        shape = DATA_SHAPES[kind]
        return ((x_train.reshape(-1, *shape), y_train[:train_samples].astype(np.int64)),
                (x_test.reshape(-1, *shape), y_test[:test_samples].astype(np.int64)))
    if kind == "cifar":
        real = _real_cifar(train_samples, test_samples)
        if real is not None:
            return real
    rng = np.random.default_rng(DATA_SEED)
    shape = DATA_SHAPES[kind]

    def draw(count):
        x = rng.standard_normal((count, *shape), dtype=np.float32)
        if kind == "noise":
            return x, rng.integers(0, 2, (count, 1)).astype(np.float32)
        return x, rng.integers(0, 10, count).astype(np.int64)

    return draw(train_samples), draw(test_samples)


def _real_cifar(train_samples, test_samples):
    """Real CIFAR-10 scaled to [0, 1] when it is on disk (never downloaded here), else None."""
    import numpy as np

    from modularcnn.datasets import cifar10
    from modularcnn.datasets.errors import DatasetError

    if not os.environ.get("MODULARCNN_DATA"):
        return None
    previous = os.environ.get("MODULARCNN_OFFLINE")
    os.environ["MODULARCNN_OFFLINE"] = "1"
    try:
        (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    except DatasetError:
        return None
    finally:
        if previous is None:
            del os.environ["MODULARCNN_OFFLINE"]
        else:
            os.environ["MODULARCNN_OFFLINE"] = previous
    scale = np.float32(1 / 255)
    return ((x_train[:train_samples] * scale, y_train[:train_samples].astype(np.int64)),
            (x_test[:test_samples] * scale, y_test[:test_samples].astype(np.int64)))


def torch_layout(x):
    """A channels-last batch as PyTorch takes it: ``(N, C, H, W)`` images, ``(N, C, L)`` sequences,
    vectors unchanged; a tensor sharing nothing with ``x``."""
    import numpy as np
    import torch

    if x.ndim > 2:
        x = np.moveaxis(x, -1, 1)
    return torch.from_numpy(np.ascontiguousarray(x))


# -- modularcnn --------------------------------------------------------------------------------------

def _net(data, layers, seed, loss="sparse_categorical_crossentropy", name=None):
    from modularcnn import Net

    net = Net(input_shape=DATA_SHAPES[data], seed=seed, **({"name": name} if name else {}))
    for layer in layers:
        net.add(layer)
    net.compile(optimizer="adam", loss=loss)
    return net


def _ours_lenet(seed, separate=False, activation="relu", pool="max"):
    from modularcnn.layers import Activation, AveragePooling, Conv2D, Dense, Flatten, MaxPooling2D

    pooling = MaxPooling2D if pool == "max" else AveragePooling

    def conv(filters, **kwargs):
        if separate:  # the seed library's spelling: the activation as its own layer
            return [Conv2D(filters, 5, **kwargs), Activation(activation)]
        return [Conv2D(filters, 5, activation=activation, **kwargs)]

    layers = [*conv(6, padding=2), pooling(2), *conv(16), pooling(2), Flatten(),
              Dense(120, activation=activation), Dense(84, activation=activation),
              Dense(10, activation="softmax")]
    return _net("mnist", layers, seed)


def _ours_cnn32(seed, separate=False):
    from modularcnn.layers import Activation, Conv2D, Dense, Flatten, MaxPooling2D

    def conv(filters):
        if separate:
            return [Conv2D(filters, 3, padding="same"), Activation("relu")]
        return [Conv2D(filters, 3, padding="same", activation="relu")]

    layers = [*conv(32), MaxPooling2D(2), *conv(64), MaxPooling2D(2), Flatten(),
              Dense(128, activation="relu"), Dense(10, activation="softmax")]
    return _net("mnist", layers, seed)


def _ours_best(seed):
    from modularcnn import models

    net = models.best(seed=seed)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def _ours_resnet(seed):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from resnet_mnist import build_resnet

    net = build_resnet(seed)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def _ours_cifar(seed):
    from modularcnn.layers import Conv2D, Dense, Flatten, MaxPooling2D

    def leaky(filters):
        return Conv2D(filters, 3, padding="same", activation="leakyrelu", alpha=0.1)

    layers = [leaky(32), MaxPooling2D(2), leaky(64), MaxPooling2D(2), leaky(128), MaxPooling2D(2),
              Flatten(), Dense(128, activation="leakyrelu", alpha=0.1), Dense(10, activation="softmax")]
    return _net("cifar", layers, seed)


def _ours_strided(seed):
    from modularcnn.layers import Conv2D, Dense, Flatten

    layers = [Conv2D(32, 5, strides=2, activation="relu"), Conv2D(64, 4, strides=2, activation="relu"),
              Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax")]
    return _net("mnist", layers, seed)


def _ours_mlp(seed):
    from modularcnn.layers import Dense

    layers = [Dense(512, activation="relu"), Dense(256, activation="relu"),
              Dense(10, activation="softmax")]
    return _net("mnist_flat", layers, seed)


def _ours_dcgan(seed):
    from modularcnn.layers import Conv2D, Conv2DTranspose, Dense, Flatten, Reshape

    generator = [Dense(7 * 7 * 64, activation="relu"), Reshape((7, 7, 64)),
                 Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu"),
                 Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")]
    discriminator = [Conv2D(32, 4, strides=2, padding="same", activation="leakyrelu", alpha=0.2),
                     Conv2D(64, 4, strides=2, padding="same", activation="leakyrelu", alpha=0.2),
                     Flatten(), Dense(1, activation="sigmoid")]
    return _net("noise", generator + discriminator, seed, loss="binary_crossentropy")


def _ours_conv1d(seed):
    from modularcnn.layers import Conv1D, Dense, GlobalAveragePooling1D, MaxPooling1D

    layers = [Conv1D(32, 5, activation="relu"), MaxPooling1D(2), Conv1D(64, 5, activation="relu"),
              MaxPooling1D(2), GlobalAveragePooling1D(), Dense(10, activation="softmax")]
    return _net("sequence", layers, seed)


# -- PyTorch -----------------------------------------------------------------------------------------

def _glorot(model):
    """modularcnn's default initial weights: Glorot-uniform kernels, zero biases."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _theirs_lenet(activation="relu", pool="max"):
    from torch import nn

    act = nn.ReLU if activation == "relu" else nn.Tanh
    pooling = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return _glorot(nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), act(), pooling(2),
        nn.Conv2d(6, 16, 5), act(), pooling(2), nn.Flatten(),
        nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10)))


def _theirs_cnn32():
    from torch import nn

    return _glorot(nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)))


def _theirs_best():
    from torch import nn

    def bn2(c):  # Keras momentum 0.9 is PyTorch's 0.1; modularcnn's epsilon 1e-3
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

    return _glorot(nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), bn2(32), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), bn2(64), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.BatchNorm1d(128, eps=1e-3, momentum=0.1),
        nn.Dropout(0.4), nn.Linear(128, 10)))


def _theirs_resnet():
    import torch
    from torch import nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

    class Residual(nn.Module):
        """conv-BN-ReLU-conv-BN plus the identity or a 1x1 projection, as ``scripts/resnet_mnist.py``."""

        def __init__(self, channels, filters):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(channels, filters, 3, padding=1), bn(filters),
                                       nn.ReLU(), nn.Conv2d(filters, filters, 3, padding=1),
                                       bn(filters))
            self.shortcut = (nn.Identity() if channels == filters
                             else nn.Conv2d(channels, filters, 1))

        def forward(self, x):
            return torch.add(self.shortcut(x), self.block(x))

    return _glorot(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), bn(16), nn.ReLU(),
        Residual(16, 16), nn.ReLU(), nn.MaxPool2d(2),
        Residual(16, 32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(7 * 7 * 32, 10)))


def _theirs_cifar():
    from torch import nn

    def block(channels, filters):
        return [nn.Conv2d(channels, filters, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2)]

    return _glorot(nn.Sequential(
        *block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
        nn.Linear(4 * 4 * 128, 128), nn.LeakyReLU(0.1), nn.Linear(128, 10)))


def _theirs_strided():
    from torch import nn

    return _glorot(nn.Sequential(
        nn.Conv2d(1, 32, 5, stride=2), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 5 * 64, 128), nn.ReLU(), nn.Linear(128, 10)))


def _theirs_mlp():
    from torch import nn

    return _glorot(nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                 nn.Linear(256, 10)))


def _theirs_dcgan():
    from torch import nn

    # Keras's "same" for a 4x4 kernel at stride 2 pads one cell on each side, as padding=1 does here.
    return _glorot(nn.Sequential(
        nn.Linear(100, 7 * 7 * 64), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1), nn.Tanh(),
        nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 1)))


def _theirs_conv1d():
    from torch import nn

    return _glorot(nn.Sequential(
        nn.Conv1d(8, 32, 5), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(32, 64, 5), nn.ReLU(),
        nn.MaxPool1d(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 10)))


ZOO = {spec.name: spec for spec in (
    Spec("lenet", "LeNet-5, activation inside the layers", "mnist",
         _ours_lenet, _theirs_lenet),
    Spec("lenet_seed", "LeNet-5, Convolutional then Activation('relu') then MaxPooling", "mnist",
         lambda seed: _ours_lenet(seed, separate=True), _theirs_lenet),
    Spec("cnn32", "Keras MNIST example CNN, activation inside", "mnist",
         _ours_cnn32, _theirs_cnn32),
    Spec("cnn32_seed", "Keras MNIST example CNN, Activation('relu') as its own layer", "mnist",
         lambda seed: _ours_cnn32(seed, separate=True), _theirs_cnn32),
    Spec("best", "the 'best' preset: conv-ReLU-BN-pool twice, dense-BN-dropout", "mnist",
         _ours_best, _theirs_best),
    Spec("resnet", "the small ResNet of scripts/resnet_mnist.py", "mnist",
         _ours_resnet, _theirs_resnet),
    Spec("cifar", "32x32x3, three 3x3 conv + 2x2 pool blocks, leaky ReLU", "cifar",
         _ours_cifar, _theirs_cifar),
    Spec("strided", "5x5 and 4x4 convolutions at stride 2, no pooling", "mnist",
         _ours_strided, _theirs_strided),
    Spec("lenet_tanh_avg", "LeNet-5 with tanh and 2x2 average pooling", "mnist",
         lambda seed: _ours_lenet(seed, activation="tanh", pool="avg"),
         lambda: _theirs_lenet(activation="tanh", pool="avg")),
    Spec("mlp", "MLP 784-512-256-10", "mnist_flat", _ours_mlp, _theirs_mlp),
    Spec("dcgan", "DCGAN step: generator (Dense, 2x Conv2DTranspose) through discriminator", "noise",
         _ours_dcgan, _theirs_dcgan, loss="binary"),
    Spec("conv1d", "Conv1D net on 128-step sequences of 8 features", "sequence",
         _ours_conv1d, _theirs_conv1d),
)}

#: The default suite (the README's table) and the zoo.
SUITES = {"default": ("lenet", "cnn32"), "zoo": tuple(ZOO)}

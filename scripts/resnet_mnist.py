"""A small ResNet on MNIST: one epoch on 20,000 training images, then accuracy on the 10,000 test images.

Usage::

    python scripts/resnet_mnist.py [--data FOLDER] [--num-examples 20000] [--epochs 1] [--seed 0]

``--data`` is a folder holding the four MNIST files (plain or ``.gz``); without it the loader looks in
``$MODULARCNN_DATA/mnist`` and then ``~/.cache/modularcnn/mnist`` (downloading there if needed).

The network: a 3x3 stem convolution with batch normalisation, two residual blocks
(conv-BN-ReLU-conv-BN plus a shortcut, then ReLU and 2x2 max pooling; the second block widens 16 -> 32
channels through a 1x1 projection shortcut), and a softmax classifier.
"""

import argparse
import time

import numpy as np

from modularcnn import Net
from modularcnn.datasets import mnist
from modularcnn.layers import (
    Activation,
    BatchNormalization,
    Convolutional,
    Dense,
    Flatten,
    MaxPooling,
    Residual,
)
from modularcnn.optimizers import Adam


def residual_block(filters):
    """conv 3x3 - BN - ReLU - conv 3x3 - BN; the shortcut is chosen by :class:`Residual`."""
    return Residual([
        Convolutional(filters, 3, pad="same"),
        BatchNormalization(momentum=0.9),
        Activation("relu"),
        Convolutional(filters, 3, pad="same"),
        BatchNormalization(momentum=0.9),
    ])


def build_resnet(seed=0):
    """The small ResNet for (28, 28, 1) images and 10 classes."""
    net = Net(input_shape=(28, 28, 1), name="small_resnet", seed=seed)
    net.add(Convolutional(16, 3, pad="same"))
    net.add(BatchNormalization(momentum=0.9))
    net.add(Activation("relu"))
    net.add(residual_block(16))          # identity shortcut
    net.add(Activation("relu"))
    net.add(MaxPooling(2))
    net.add(residual_block(32))          # 16 -> 32 channels: 1x1 projection shortcut
    net.add(Activation("relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(10, activation="softmax"))
    return net


def load_mnist(path=None, num_examples=20_000):
    """``((x_train, y_train), (x_test, y_test))`` in [0, 1], the first ``num_examples`` for training."""
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=path)
    scale = np.float32(1 / 255)
    return (x_train[:num_examples] * scale, y_train[:num_examples]), (x_test * scale, y_test)


def train_and_evaluate(data, epochs=1, seed=0, verbose=1):
    """Train a fresh ResNet on ``data`` (see :func:`load_mnist`); returns ``(net, accuracy, seconds)``."""
    (x_train, y_train), (x_test, y_test) = data
    net = build_resnet(seed)
    net.compile(optimizer=Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy")
    start = time.perf_counter()
    net.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=verbose)
    seconds = time.perf_counter() - start
    accuracy = net.evaluate(x_test, y_test, return_dict=True)["accuracy"]
    return net, accuracy, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding the MNIST files")
    parser.add_argument("--num-examples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_mnist(args.data, args.num_examples)
    net, accuracy, seconds = train_and_evaluate(data, epochs=args.epochs, seed=args.seed)
    net.summary()
    print(f"trained {args.epochs} epoch(s) on {len(data[0][0]):,} images in {seconds:.1f} s; "
          f"test accuracy {accuracy:.4f} on {len(data[1][0]):,} images")


if __name__ == "__main__":
    main()

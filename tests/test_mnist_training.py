"""Accuracy on the real MNIST files (found through the loader's search order / $MODULARCNN_DATA)."""

import numpy as np
import pytest

from modularcnn import Net, models
from modularcnn.datasets import mnist
from modularcnn.layers import Convolutional, Dense, Flatten


@pytest.fixture(scope="module")
def mnist_data(mnist_dir):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=mnist_dir)
    scale = np.float32(1 / 255)
    return (x_train * scale, y_train), (x_test * scale, y_test)


def lenet5(seed=0):
    return models.lenet5(seed=seed)


def test_small_cnn_on_5000_images_reaches_90_percent(mnist_data):
    (x_train, y_train), (x_test, y_test) = mnist_data
    net = Net(input_shape=(28, 28, 1), seed=1)
    net.add(Convolutional(16, 3, stride=2, pad="same", activation="relu"))
    net.add(Flatten())
    net.add(Dense(10, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    net.fit(x_train[:5000], y_train[:5000], epochs=3, batch_size=32, verbose=0)
    accuracy = net.evaluate(x_test, y_test, return_dict=True)["accuracy"]
    print(f"small CNN, 5,000 images, 3 epochs: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.90


@pytest.mark.slow
def test_lenet5_one_epoch_reaches_97_percent(mnist_data):
    (x_train, y_train), (x_test, y_test) = mnist_data
    net = lenet5()
    net.compile(optimizer="adam", loss="cross_entropy")
    history = net.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    accuracy = net.evaluate(x_test, y_test, return_dict=True)["accuracy"]
    print(f"LeNet-5, one epoch: train loss {history.history['loss'][0]:.4f}, test accuracy {accuracy:.4f}")
    assert accuracy >= 0.97

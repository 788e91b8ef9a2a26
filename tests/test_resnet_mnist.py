"""The small ResNet of ``scripts/resnet_mnist.py`` on real MNIST: one epoch on 20,000 images, >= 95 %."""

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_script():
    path = REPO_ROOT / "scripts" / "resnet_mnist.py"
    spec = importlib.util.spec_from_file_location("resnet_mnist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet_architecture():
    script = load_script()
    net = script.build_resnet(seed=0)
    types = [type(layer).__name__ for layer in net.layers]
    assert types == ["Convolutional", "BatchNormalization", "Activation", "Residual", "Activation",
                     "MaxPooling", "Residual", "Activation", "MaxPooling", "Flatten", "Dense"]
    first, second = net.layers[3], net.layers[6]
    assert first.shortcut_layers == [] and first.output_shape == (28, 28, 16)
    projection = second.shortcut_layers[0]
    assert projection.filter_size == (1, 1) and projection.params["kernel"].shape == (1, 1, 16, 32)
    assert net.output_shape == (10,)


@pytest.mark.slow
def test_resnet_one_epoch_on_20000_images_reaches_95_percent(mnist_dir):
    script = load_script()
    data = script.load_mnist(mnist_dir, num_examples=20_000)
    _, accuracy, seconds = script.train_and_evaluate(data, epochs=1, seed=0, verbose=0)
    print(f"small ResNet, 20,000 images, one epoch: test accuracy {accuracy:.4f} in {seconds:.0f} s")
    assert accuracy >= 0.95

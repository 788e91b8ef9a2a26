"""The graph-model examples of ``scripts/``: a U-Net (skip connections by ``Concatenate``) that
segments MNIST digits from clutter, and an Inception-style classifier (four parallel branches per
block), each built with the functional API and trained on real MNIST."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unet_architecture_has_two_concatenating_skip_connections():
    unet = load_script("unet_mnist").build_unet(seed=0)
    concatenations = [layer for layer in unet.layers if type(layer).__name__ == "Concatenate"]
    assert [layer.output_shape for layer in concatenations] == [(14, 14, 48), (28, 28, 24)]
    assert unet.output_shape == (28, 28, 1)
    assert unet.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 28, 28, 1)


def test_unet_task_masks_and_iou():
    script = load_script("unet_mnist")
    digits = np.zeros((2, 28, 28, 1), np.float32)
    digits[:, 10:18, 12:15] = 1.0
    images = script.clutter(digits, np.random.default_rng(0))
    assert images.shape == digits.shape and np.all(images >= digits)
    assert np.count_nonzero(images == 1.0) > np.count_nonzero(digits == 1.0)   # bright bars added
    mask = digits > 0.5
    assert script.iou(mask, mask) == 1.0
    assert script.iou(np.zeros_like(mask), mask) == 0.0
    half = mask.copy()
    half[:, 10:14] = False
    assert script.iou(half, mask) == pytest.approx(0.5)


def test_inception_blocks_concatenate_four_branches():
    model = load_script("inception_mnist").build_inception(seed=0)
    joins = {layer.name: layer for layer in model.layers if type(layer).__name__ == "Concatenate"}
    assert sorted(joins) == ["block1_concat", "block2_concat"]
    assert joins["block1_concat"].output_shape == (14, 14, 40)   # 8 + 16 + 8 + 8 channels
    assert joins["block2_concat"].output_shape == (7, 7, 56)     # 16 + 24 + 8 + 8
    assert model.output_shape == (10,)


@pytest.mark.slow
def test_unet_learns_to_segment_digits_from_clutter(mnist_dir):
    """Two epochs on 2,000 cluttered digits: the U-Net's test IoU clearly beats the best threshold on
    the input (about 0.66, since the bars are as bright as the strokes)."""
    script = load_script("unet_mnist")
    data = script.make_task(mnist_dir, num_examples=2000, num_test=500, seed=0)
    _, score, baseline, seconds = script.train_and_evaluate(data, epochs=2, seed=0, verbose=0)
    print(f"U-Net, 2,000 images, two epochs: test IoU {score:.3f} (threshold {baseline:.3f}) "
          f"in {seconds:.0f} s")
    assert baseline < 0.7
    assert score >= 0.74 and score > baseline + 0.05


@pytest.mark.slow
def test_inception_one_epoch_on_5000_images_reaches_90_percent(mnist_dir):
    script = load_script("inception_mnist")
    data = script.load_mnist(mnist_dir, num_examples=5000)
    _, accuracy, seconds = script.train_and_evaluate(data, epochs=1, seed=0, verbose=0)
    print(f"Inception, 5,000 images, one epoch: test accuracy {accuracy:.4f} in {seconds:.0f} s")
    assert accuracy >= 0.90

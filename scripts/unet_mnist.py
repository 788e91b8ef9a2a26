"""A small U-Net that segments MNIST digits from a cluttered background; reports the test IoU.

Usage::

    python scripts/unet_mnist.py [--data FOLDER] [--num-examples 6000] [--epochs 3] [--seed 0]

The task: every image is an MNIST digit drawn over clutter (uniform noise and a few random bright
bars, as bright as the strokes), and the target is the digit's own mask (pixels of the clean digit
above 0.5). Thresholding the input cannot separate the strokes from the bars, so the network has to
learn what strokes look like; the script prints the threshold baseline beside the U-Net's score.

The network, built with the functional API (``Input``, layers called on tensors, ``Model``)::

    28x28x1 -> [conv 8, conv 8] -----------------------------> concat -> conv 8 -> conv 1x1 sigmoid
                  | pool                                          ^ up 2
                  v                                               |
               14x14 [conv 16, conv 16] ------------> concat -> conv 16
                          | pool                        ^ up 2
                          v                             |
                        7x7 [conv 32] ------------------+

The skip connections are ``Concatenate`` layers: the decoder sees the encoder's full-resolution
features beside the upsampled coarse ones, which is what lets a U-Net draw sharp masks.
"""

import argparse
import time

import numpy as np

from modularcnn import Input, Model
from modularcnn.datasets import mnist
from modularcnn.layers import Concatenate, Conv2D, MaxPooling2D, UpSampling2D
from modularcnn.optimizers import Adam
from modularcnn.utils import set_random_seed


def conv(filters, name=None):
    """A 3x3, same-padded ReLU convolution."""
    return Conv2D(filters, 3, padding="same", activation="relu", name=name)


def build_unet(seed=0, width=8):
    """The U-Net for ``(28, 28, 1)`` images: a ``(28, 28, 1)`` sigmoid mask (probability of "digit")."""
    set_random_seed(seed)
    image = Input((28, 28, 1), name="image")
    level1 = conv(width)(conv(width)(image))                                   # (28, 28, w)
    level2 = conv(2 * width)(conv(2 * width)(MaxPooling2D(2)(level1)))         # (14, 14, 2w)
    bottom = conv(4 * width)(MaxPooling2D(2)(level2))                          # (7, 7, 4w)
    up2 = Concatenate()([UpSampling2D(2)(bottom), level2])                     # (14, 14, 6w)
    up1 = Concatenate()([UpSampling2D(2)(conv(2 * width)(up2)), level1])       # (28, 28, 3w)
    mask = Conv2D(1, 1, activation="sigmoid", name="mask")(conv(width)(up1))   # (28, 28, 1)
    return Model(image, mask, name="unet")


def clutter(digits, rng, bars=4):
    """``digits`` (N, 28, 28, 1) in [0, 1] over uniform noise in [0, 0.45] and ``bars`` random
    2-pixel-wide bars of length 6 to 10 per image, as bright as the strokes."""
    images = np.maximum(digits, rng.uniform(0, 0.45, digits.shape).astype(np.float32))
    for image in images:
        for _ in range(bars):
            r, c = rng.integers(0, 26, 2)
            length = rng.integers(6, 11)
            if rng.random() < 0.5:
                image[r:r + length, c:c + 2, 0] = 1.0
            else:
                image[r:r + 2, c:c + length, 0] = 1.0
    return images


def make_task(path=None, num_examples=6000, num_test=1000, seed=0):
    """``((x_train, m_train), (x_test, m_test))``: cluttered images and the digits' masks (float32)."""
    (x_train, _), (x_test, _) = mnist.load_data(path=path)
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / 255)
    digits_train = x_train[:num_examples].reshape(-1, 28, 28, 1) * scale
    digits_test = x_test[:num_test].reshape(-1, 28, 28, 1) * scale
    return ((clutter(digits_train, rng), (digits_train > 0.5).astype(np.float32)),
            (clutter(digits_test, rng), (digits_test > 0.5).astype(np.float32)))


def iou(predicted, target):
    """Intersection over union of two boolean masks, pooled over every pixel of every image."""
    predicted, target = np.asarray(predicted, bool), np.asarray(target, bool)
    return float((predicted & target).sum() / max((predicted | target).sum(), 1))


def threshold_baseline(images, masks):
    """The best IoU a fixed threshold on the input reaches (thresholds 0.40 to 0.95)."""
    return max(iou(images > t, masks) for t in np.arange(0.40, 0.96, 0.05))


def train_and_evaluate(data, epochs=3, seed=0, verbose=1):
    """Train a fresh U-Net; returns ``(model, test IoU, baseline IoU, seconds)``."""
    (x_train, m_train), (x_test, m_test) = data
    model = build_unet(seed)
    model.compile(optimizer=Adam(learning_rate=5e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])               # a (N, 28, 28, 1) output: pixel accuracy
    start = time.perf_counter()
    model.fit(x_train, m_train, epochs=epochs, batch_size=16, verbose=verbose)
    seconds = time.perf_counter() - start
    score = iou(model.predict(x_test) > 0.5, m_test > 0.5)
    return model, score, threshold_baseline(x_test, m_test), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding the MNIST files")
    parser.add_argument("--num-examples", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = make_task(args.data, args.num_examples, seed=args.seed)
    model, score, baseline, seconds = train_and_evaluate(data, args.epochs, args.seed)
    model.summary()
    print(f"trained {args.epochs} epoch(s) on {len(data[0][0]):,} images in {seconds:.1f} s; "
          f"test IoU {score:.3f} on {len(data[1][0]):,} images "
          f"(best threshold on the input: {baseline:.3f})")


if __name__ == "__main__":
    main()

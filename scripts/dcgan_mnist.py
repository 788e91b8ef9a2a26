"""A small DCGAN on MNIST: a generator of transposed convolutions against a strided-convolution critic.

Usage::

    python scripts/dcgan_mnist.py [--epochs 2] [--num-examples 60000] [--seed 0] [--out samples.png]
                                  [--data FOLDER]

It saves an 8x8 grid of generated digits to ``--out`` (needs matplotlib). ``--data`` is a folder with the
MNIST files; without it the loader looks in ``$MODULARCNN_DATA/mnist`` and ``~/.cache/modularcnn/mnist``.

How the two networks train, each step (Radford et al.'s recipe: Adam 2e-4, beta_1 0.5, batch norm in the
generator, LeakyReLU 0.2 in the discriminator, images scaled to [-1, 1]):

1. the discriminator ``D`` takes one ``train_on_batch`` step on real images (target 1) and one on
   generated images (target 0);
2. the generator ``G`` is trained *through* ``D``: the loss is binary cross-entropy of ``D(G(z))`` against
   target 1 ("fool D"), computed from ``D``'s logit; ``D`` back-propagates it to its input without
   applying its own gradients, and ``G`` back-propagates the rest and takes the optimiser step.
"""

import argparse
import sys
import time

import numpy as np

from modularcnn import Net, activations, losses
from modularcnn.datasets import mnist
from modularcnn.layers import (
    Activation,
    BatchNormalization,
    Conv2DTranspose,
    Convolutional,
    Dense,
    Flatten,
    Reshape,
)
from modularcnn.optimizers import Adam

LATENT = 64


def build_generator(seed, latent=LATENT):
    """``z`` (N, latent) -> images (N, 28, 28, 1) in [-1, 1]; transposed convs upsample 7 -> 14 -> 28."""
    g = Net(input_shape=(latent,), name="generator", seed=seed)
    g.add(Dense(7 * 7 * 128, use_bias=False))
    g.add(Reshape((7, 7, 128)))
    g.add(BatchNormalization(momentum=0.9))
    g.add(Activation("relu"))
    g.add(Conv2DTranspose(64, 4, 2, "same", use_bias=False))
    g.add(BatchNormalization(momentum=0.9))
    g.add(Activation("relu"))
    g.add(Conv2DTranspose(1, 4, 2, "same", activation="tanh"))
    return g


def build_discriminator(seed):
    """Images (N, 28, 28, 1) -> probability of "real" (N, 1): two stride-2 convolutions, LeakyReLU 0.2."""
    d = Net(input_shape=(28, 28, 1), name="discriminator", seed=seed)
    d.add(Convolutional(64, 4, 2, "same", activation=activations.LeakyReLU(0.2)))
    d.add(Convolutional(128, 4, 2, "same", activation=activations.LeakyReLU(0.2)))
    d.add(Flatten())
    d.add(Dense(1, activation="sigmoid"))
    return d


def generator_step(g, d, z, bce):
    """One generator update through the (unchanged) discriminator; returns the generator's loss."""
    fake = g.forward(z, training=True)
    d.forward(fake, training=True)
    ones = np.ones((len(z), 1), dtype=fake.dtype)
    # The loss from D's logit (its sigmoid's input): stable even when D is sure the image is fake.
    value, dlogit = bce.value_and_gradient_from_logits(ones, d.layers[-1].preactivation)
    dfake = d.backward(dlogit, preactivation=True)
    g.backward(dfake, input_gradient=False)
    g.optimizer.apply(g.trainable_params(), g.trainable_grads())  # D's gradients are left unused
    return value


def train(x, epochs, seed, batch_size=64, log=print):
    """Train a generator on images ``x`` (N, 28, 28, 1) in [-1, 1]; returns the generator."""
    rng = np.random.default_rng(seed)
    g, d = build_generator(seed), build_discriminator(seed + 1)
    g.compile(optimizer=Adam(2e-4, beta_1=0.5), loss="mse", metrics=())  # only its optimizer is used
    d.compile(optimizer=Adam(2e-4, beta_1=0.5), loss="binary_crossentropy", metrics=())
    bce = losses.BinaryCrossentropy()
    ones = np.ones((batch_size, 1), dtype=np.float32)
    zeros = np.zeros((batch_size, 1), dtype=np.float32)
    steps = len(x) // batch_size
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        d_losses, g_losses = [], []
        for step in range(steps):
            real = x[order[step * batch_size:(step + 1) * batch_size]]
            z = rng.standard_normal((batch_size, LATENT)).astype(np.float32)
            fake = g.forward(z, training=True)
            d_loss = d.train_on_batch(real, ones)["loss"] + d.train_on_batch(fake, zeros)["loss"]
            z = rng.standard_normal((batch_size, LATENT)).astype(np.float32)
            g_losses.append(generator_step(g, d, z, bce))
            d_losses.append(d_loss / 2)
            if (step + 1) % 100 == 0:
                log(f"epoch {epoch + 1} step {step + 1}/{steps}: D loss {np.mean(d_losses[-100:]):.3f}, "
                    f"G loss {np.mean(g_losses[-100:]):.3f}")
        log(f"epoch {epoch + 1}/{epochs}: D loss {np.mean(d_losses):.3f}, "
            f"G loss {np.mean(g_losses):.3f}, {time.perf_counter() - start:.0f} s")
    return g


def save_grid(images, path, plt):
    """Save images (64, 28, 28, 1) in [-1, 1] as an 8x8 grid."""
    tiles = (images[..., 0] + 1) / 2
    grid = tiles.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
    plt.imsave(path, grid, cmap="gray", vmin=0, vmax=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--num-examples", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="samples.png", help="where to save the 8x8 grid of samples")
    parser.add_argument("--data", default=None, help="folder holding the MNIST files")
    args = parser.parse_args(argv)
    try:  # checked first, so that minutes of training are not lost for want of it
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("dcgan_mnist.py saves its samples with matplotlib, which is not installed: "
                 "pip install matplotlib")
    (x_train, _), _ = mnist.load_data(path=args.data)
    x = (x_train[:args.num_examples, :, :, None].astype(np.float32) - 127.5) / 127.5
    start = time.perf_counter()
    g = train(x, args.epochs, args.seed)
    seconds = time.perf_counter() - start
    z = np.random.default_rng(args.seed + 2).standard_normal((64, LATENT)).astype(np.float32)
    save_grid(g.predict(z), args.out, plt)
    print(f"trained {args.epochs} epoch(s) on {len(x):,} images in {seconds:.0f} s; "
          f"64 samples saved to {args.out}")


if __name__ == "__main__":
    main()

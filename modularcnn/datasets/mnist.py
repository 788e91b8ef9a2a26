"""The MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey, 10 classes."""

from ._download import expect_sha256_decompressed
from ._idx_dataset import load_idx_dataset

NAME = "mnist"

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

# SHA-256 of the DECOMPRESSED files: identical for every faithful copy, whichever mirror
# and gzip settings produced it.
SHA256_DECOMPRESSED = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def load_data(path=None):
    """Load MNIST, downloading it into ``~/.cache/modularcnn/mnist`` if it is nowhere else.

    With ``path`` (a folder holding the four standard files, plain or ``.gz``) that folder is
    read, or a DatasetError names it: nothing else is tried. Without it the search order is
    ``$MODULARCNN_DATA/mnist/``, then ``~/.cache/modularcnn/mnist/``, then a download into the
    cache. Set ``MODULARCNN_OFFLINE=1`` to never touch the network.

    Parameters
    ----------
    path : str, os.PathLike or None

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x_train``: uint8 ``(60000, 28, 28)``; ``y_train``: uint8 ``(60000,)`` in 0..9;
        ``x_test``: uint8 ``(10000, 28, 28)``; ``y_test``: uint8 ``(10000,)``.

    Raises
    ------
    DatasetError
        Files missing everywhere and not downloadable (the message lists every place
        searched), or a file is damaged.
    """
    checks = {name: expect_sha256_decompressed(digest)
              for name, digest in SHA256_DECOMPRESSED.items()}
    return load_idx_dataset("MNIST", NAME, path, MIRRORS, checks)

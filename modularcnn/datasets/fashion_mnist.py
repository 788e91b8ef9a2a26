"""Fashion-MNIST (Zalando): 60,000 + 10,000 greyscale 28x28 clothing images, 10 classes."""

from ._download import expect_md5
from ._idx_dataset import load_idx_dataset

NAME = "fashion_mnist"

MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# MD5 of the .gz files as served, from the table in the Fashion-MNIST README
# (github.com/zalandoresearch/fashion-mnist, "Get the Data"). No authoritative hashes of the
# decompressed files are published, so a download is verified byte-for-byte as served.
MD5_GZIP = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}


def load_data(path=None):
    """Load Fashion-MNIST, downloading it into ``~/.cache/modularcnn/fashion_mnist`` if needed.

    With ``path``, that folder alone (or a DatasetError naming it); without it
    ``$MODULARCNN_DATA/fashion_mnist/``, ``~/.cache/modularcnn/fashion_mnist/``, then a download;
    ``MODULARCNN_OFFLINE=1`` disables downloading.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)`` and uint8 labels in 0..9
        (names in :data:`CLASS_NAMES`).

    Raises
    ------
    DatasetError
        Files missing everywhere and not downloadable, or damaged.
    """
    checks = {name: expect_md5(digest) for name, digest in MD5_GZIP.items()}
    return load_idx_dataset("Fashion-MNIST", NAME, path, MIRRORS, checks)

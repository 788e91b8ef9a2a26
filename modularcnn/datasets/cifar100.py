"""CIFAR-100 from its binary distribution: 50,000 + 10,000 colour 32x32 images, 100 classes in 20 groups.

The folder ``cifar-100-binary`` holds ``train.bin`` and ``test.bin``. Each file is a run of 3074-byte
records: the coarse label byte (0..19), the fine label byte (0..99), then the image as 3 planes of
32x32 bytes (red, green, blue; rows top to bottom) — as CIFAR-10, with one more label byte. The
pickled Python version is never read (unpickling a downloaded file can run code).
"""

from pathlib import Path

import numpy as np

from . import cifar10
from ._download import download, expect_md5
from ._locate import cache_dir, explicit_path_error, not_found_message, search_dirs
from .errors import DatasetError

NAME = "cifar100"
FOLDER = "cifar-100-binary"
TRAIN_FILE = "train.bin"
TEST_FILE = "test.bin"

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
ARCHIVE = "cifar-100-binary.tar.gz"
# MD5 published on https://www.cs.toronto.edu/~kriz/cifar.html for the binary version.
ARCHIVE_MD5 = "03b5dce01913d631647c71ecec9e9cb8"

RECORD_BYTES = 2 + 3 * 32 * 32
LABEL_MODES = {"coarse": (0, 20), "fine": (1, 100)}  # label byte and number of classes

FINE_CLASS_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
COARSE_CLASS_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)


def load_data(label_mode="fine", path=None):
    """Load CIFAR-100, downloading and extracting it into the cache if it is nowhere else.

    Parameters
    ----------
    label_mode : "fine" or "coarse"
        The 100 classes, or the 20 super-classes they belong to.
    path : str or Path, optional
        The ``cifar-100-binary`` folder itself or a folder containing it, read alone (or a
        DatasetError naming it). Without it: ``$MODULARCNN_DATA/cifar100``,
        ``~/.cache/modularcnn/cifar100``, then a download; ``MODULARCNN_OFFLINE=1`` disables
        downloading.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x``: uint8 ``(N, 32, 32, 3)`` channels-last (N = 50000 / 10000); ``y``: uint8 ``(N,)``
        (names in :data:`FINE_CLASS_NAMES` or :data:`COARSE_CLASS_NAMES`).

    Raises
    ------
    ValueError
        ``label_mode`` is neither "fine" nor "coarse".
    DatasetError
        Not found and not downloadable (lists every place searched), a file whose size is not a
        whole number of 3074-byte records, or a label out of range.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"cifar100.load_data: label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    searched = []
    for folder, origin in search_dirs(NAME, path):
        found = find_files(folder)
        if found is not None:
            return _read(found, label_mode)
        searched.append(f"{folder} ({origin}): no complete {FOLDER} there or inside")
    if path is not None:
        raise explicit_path_error("CIFAR-100", path, f"{FOLDER}/ with {TRAIN_FILE}, {TEST_FILE}", searched)

    cache = cache_dir(NAME)
    try:
        archive = cache / ARCHIVE
        if not archive.is_file():
            download([URL], archive, expect_md5(ARCHIVE_MD5))
        cifar10.extract_archive(archive, cache, folder=FOLDER, find=find_files)
    except DatasetError as error:
        wanted = f"{FOLDER}/ with {TRAIN_FILE}, {TEST_FILE}"
        raise DatasetError(
            not_found_message("CIFAR-100", NAME, wanted, searched, [f"{ARCHIVE}: {error}"])
        ) from error
    return _read(find_files(cache), label_mode)


def find_files(folder):
    """The folder holding ``train.bin`` and ``test.bin``: ``folder`` or ``folder/cifar-100-binary``."""
    folder = Path(folder).expanduser()
    for candidate in (folder, folder / FOLDER):
        if all((candidate / f).is_file() for f in (TRAIN_FILE, TEST_FILE)):
            return candidate
    return None


def read_file(path, label_mode="fine"):
    """Read one CIFAR-100 binary file: ``(x uint8 (N, 32, 32, 3), y uint8 (N,))``."""
    column, classes = LABEL_MODES[label_mode]
    data = Path(path).read_bytes()
    if len(data) == 0 or len(data) % RECORD_BYTES != 0:
        raise DatasetError(
            f"{path}: size {len(data)} bytes is not a positive multiple of the {RECORD_BYTES}-byte "
            "record (coarse and fine label bytes + 3x32x32 pixels); file damaged?"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    for name, (col, count) in LABEL_MODES.items():
        if records[:, col].max() >= count:
            raise DatasetError(f"{path}: contains {name} label {records[:, col].max()}, "
                               f"expected labels 0..{count - 1}")
    y = records[:, column].copy()
    # Stored channel-major (N, 3, 32, 32); the library is channels-last.
    x = records[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _read(folder, label_mode):
    return read_file(folder / TRAIN_FILE, label_mode), read_file(folder / TEST_FILE, label_mode)

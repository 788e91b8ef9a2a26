"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="session")
def mnist_dir():
    """Folder holding the real MNIST files: ``$MODULARCNN_DATA/mnist``.

    ``MODULARCNN_DATA`` defaults to ``<repo>/../shared/data``. When the files are missing the
    test is skipped, unless ``MODULARCNN_REQUIRE_DATA=1`` (set in CI), which makes it fail.
    """
    root = Path(os.environ.get("MODULARCNN_DATA") or REPO_ROOT.parent / "shared" / "data")
    folder = root / "mnist"
    missing = [name for name in MNIST_FILES
               if not (folder / name).is_file() and not (folder / f"{name}.gz").is_file()]
    if missing:
        reason = (f"real MNIST not found in {folder} (missing {', '.join(missing)}); "
                  "set MODULARCNN_DATA to the folder that contains mnist/")
        if os.environ.get("MODULARCNN_REQUIRE_DATA") == "1":
            pytest.fail(reason + " -- MODULARCNN_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(reason)
    return folder

"""Where dataset files are looked for, and the message shown when they are nowhere."""

import os
from pathlib import Path

DATA_ENV = "MODULARCNN_DATA"


def cache_dir(name):
    """The download cache for dataset ``name``: ``~/.cache/modularcnn/<name>``."""
    return Path.home() / ".cache" / "modularcnn" / name


def search_dirs(name, path=None):
    """Folders to search for dataset ``name``, in priority order.

    1. ``path`` (the caller's explicit folder), when given;
    2. ``$MODULARCNN_DATA/<name>``, when the variable is set;
    3. the download cache ``~/.cache/modularcnn/<name>`` (always last).

    Returns
    -------
    list of (Path, str)
        Each folder with a short label saying where it came from (used in error messages).
    """
    dirs = []
    if path is not None:
        dirs.append((Path(path).expanduser(), "path= argument"))
    root = os.environ.get(DATA_ENV)
    if root:
        dirs.append((Path(root).expanduser() / name, f"${DATA_ENV}/{name}"))
    dirs.append((cache_dir(name), "download cache"))
    return dirs


def not_found_message(title, name, wanted, searched, download_problems):
    """Build the error text for a dataset that could not be found or downloaded.

    Parameters
    ----------
    title : str
        Human name of the dataset, e.g. "MNIST".
    name : str
        Folder name under ``$MODULARCNN_DATA`` and the cache, e.g. "mnist".
    wanted : str
        What was looked for, e.g. "train-images-idx3-ubyte[.gz], ...".
    searched : list of str
        One line per place looked at, saying what was missing there.
    download_problems : list of str
        Why downloading did not help (offline, each mirror's error, a checksum mismatch).
    """
    lines = [f"{title} not found. Looked for {wanted} in:"]
    lines += [f"  - {place}" for place in searched]
    if DATA_ENV not in os.environ or not os.environ[DATA_ENV]:
        lines.append(f"  (${DATA_ENV} is not set)")
    lines.append("Download did not help:")
    lines += [f"  - {problem}" for problem in download_problems]
    lines.append(
        f"To provide the files, either pass load_data(path=FOLDER) with the files in FOLDER, "
        f"or set {DATA_ENV}=ROOT with the files in ROOT/{name}/, "
        f"or put them in {cache_dir(name)}/."
    )
    return "\n".join(lines)

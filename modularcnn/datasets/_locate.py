"""Where dataset files are looked for, and the message shown when they are nowhere."""

import os
from pathlib import Path

from .errors import DatasetError

DATA_ENV = "MODULARCNN_DATA"


def cache_dir(name):
    """The download cache for dataset ``name``: ``~/.cache/modularcnn/<name>``."""
    return Path.home() / ".cache" / "modularcnn" / name


def search_dirs(name, path=None):
    """Folders to search for dataset ``name``, in priority order.

    With ``path`` (the caller's explicit folder), that folder alone: an explicit folder is used or
    refused (:func:`explicit_path_error`), never silently replaced by another copy. Without it:

    1. ``$MODULARCNN_DATA/<name>``, when the variable is set;
    2. the download cache ``~/.cache/modularcnn/<name>`` (always last; downloads go there).

    Returns
    -------
    list of (Path, str)
        Each folder with a short label saying where it came from (used in error messages).

    Raises
    ------
    DatasetError
        ``path`` is neither None nor a non-empty str or os.PathLike.
    """
    if path is not None:
        return [(explicit_folder(path), "path= argument")]
    dirs = []
    root = os.environ.get(DATA_ENV)
    if root:
        dirs.append((Path(root).expanduser() / name, f"${DATA_ENV}/{name}"))
    dirs.append((cache_dir(name), "download cache"))
    return dirs


def explicit_folder(path):
    """``path`` (str or os.PathLike, not empty) as an expanded Path; DatasetError naming it otherwise."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise DatasetError(f"load_data: path must be a folder (a non-empty str or os.PathLike), got "
                           f"{path!r}")
    return Path(path).expanduser()


def explicit_path_error(title, path, wanted, searched):
    """The DatasetError for an explicit ``path=`` that does not hold the dataset.

    ``searched`` is the loader's one line about that folder. ``$MODULARCNN_DATA``, the cache and
    downloads are not tried: data from elsewhere than the folder asked for would be a silent
    substitution (an old copy, another dataset's files).
    """
    return DatasetError(
        f"{title} not found in path={os.fspath(path)!r}. Looked for {wanted} in:\n"
        + "".join(f"  - {line}\n" for line in searched)
        + f"An explicit path is used or refused: ${DATA_ENV}, the cache and downloads are not "
        "tried. Put the files there, or call load_data() without path to search "
        f"${DATA_ENV}/<name>/ and {cache_dir('<name>').parent}/<name>/ and download.")


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

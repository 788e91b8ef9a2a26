"""``image_dataset_from_directory``: a folder of images as a :class:`~modularcnn.utils.Sequence`, as in Keras.

::

    flowers/
        daisy/   a.jpg b.png ...
        tulip/   c.jpg ...

``image_dataset_from_directory("flowers", image_size=(64, 64))`` lists the files (``.bmp``, ``.gif``,
``.jpeg``, ``.jpg``, ``.png``), takes the class names from the sub-folder names in alphabetical order,
and returns a Sequence whose batches are ``(images, labels)``: float32 ``(n, height, width,
channels)`` with values in [0, 255] (not rescaled, as in Keras) and labels as ``label_mode`` says.
Images are decoded when their batch is asked for, so the folder may be larger than memory.

Decoding needs Pillow, an optional extra: ``pip install modularcnn[images]``.
"""

import numbers
import os
from pathlib import Path

import numpy as np

from .sequence import Sequence

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                   "mitchellcubic")


def _pillow():
    try:
        from PIL import Image  # noqa: PLC0415 - an optional extra, needed only to decode images
    except ImportError:
        raise ImportError("image_dataset_from_directory needs Pillow to decode images: "
                          "pip install modularcnn[images]") from None
    return Image


def _resample(Image, interpolation):
    filters = Image.Resampling
    return {"bilinear": filters.BILINEAR, "nearest": filters.NEAREST, "bicubic": filters.BICUBIC,
            "area": filters.BOX, "lanczos3": filters.LANCZOS, "lanczos5": filters.LANCZOS,
            "gaussian": filters.BILINEAR, "mitchellcubic": filters.BICUBIC}[interpolation]


def _list_files(directory, class_names, follow_links):
    """``(paths, label ids)`` of every image under ``directory/<class name>/`` (any depth), sorted."""
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = []
        for root, _, files in os.walk(directory / name, followlinks=follow_links):
            found += [Path(root) / f for f in files if f.lower().endswith(EXTENSIONS)]
        found.sort()
        paths += found
        labels += [label] * len(found)
    return paths, np.array(labels, dtype=np.int64)


class ImageDirectorySequence(Sequence):
    """Batches of decoded images from a list of files; made by :func:`image_dataset_from_directory`.

    Attributes
    ----------
    file_paths : list of str
        The files in their current order.
    class_names : list of str or None
    labels : array (N,) of int, or None
    """

    def __init__(self, file_paths, labels, class_names, label_mode, image_size, color_mode,
                 batch_size, shuffle, seed, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                 **kwargs):
        super().__init__(**kwargs)
        self.file_paths = [str(p) for p in file_paths]
        self.labels = labels
        self.class_names = class_names
        self.label_mode = label_mode
        self.image_size = image_size
        self.color_mode = color_mode
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(self.file_paths))
        if shuffle:
            self.on_epoch_end()

    def __len__(self):
        return -(-len(self.file_paths) // self.batch_size)

    def on_epoch_end(self):
        """Reshuffle the files (seeded) when ``shuffle`` was asked for, as tf.data does every epoch."""
        if self.shuffle:
            self.order = self.rng.permutation(len(self.file_paths))

    def __getitem__(self, index):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(self):
            raise IndexError(f"batch index {index!r} out of range for {len(self)} batches")
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = np.stack([self.load_image(self.file_paths[k]) for k in rows])
        if self.labels is None or self.label_mode is None:
            return images
        return images, self._encode(self.labels[rows])

    def _encode(self, ids):
        if self.label_mode == "int":
            return ids
        if self.label_mode == "binary":
            return ids.astype(np.float32).reshape(-1, 1)
        classes = len(self.class_names) if self.class_names else int(self.labels.max()) + 1
        return np.eye(classes, dtype=np.float32)[ids]

    def load_image(self, path):
        """One image as float32 ``(height, width, channels)``, resized (and cropped or padded)."""
        Image = _pillow()
        height, width = self.image_size
        try:
            with Image.open(path) as image:
                image = image.convert(_PIL_MODES[self.color_mode])
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot decode image {path}: {error}") from None
        if self.crop_to_aspect_ratio:
            image = image.crop(_centre_box(image.size, width / height, shrink=True))
        elif self.pad_to_aspect_ratio:
            # A box larger than the image: Pillow fills the outside with zeros (black).
            image = image.crop(_centre_box(image.size, width / height, shrink=False))
        image = image.resize((width, height), _resample(Image, self.interpolation))
        array = np.asarray(image, dtype=np.float32)
        return array.reshape(height, width, _CHANNELS[self.color_mode])


def _centre_box(size, aspect, shrink):
    """The centred ``(left, top, right, bottom)`` box of width/height ``aspect`` inside (``shrink``)
    or around the image."""
    w, h = size
    if (w / h > aspect) == shrink:
        new_w, new_h = round(h * aspect), h
    else:
        new_w, new_h = w, round(w / aspect)
    left, top = (w - new_w) // 2, (h - new_h) // 2
    return left, top, left + new_w, top + new_h


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None,
                                 interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, verbose=True, **sequence_options):
    """A :class:`~modularcnn.utils.Sequence` of ``(images, labels)`` batches from a folder, as in Keras.

    Parameters
    ----------
    directory : str or Path
        With ``labels="inferred"``, one sub-folder per class; otherwise any folder of images.
    labels : "inferred", None, or a list of int
        Class ids from the sub-folder names; no labels (batches are images only); or one id per
        file, in the alphanumeric order of the file paths.
    label_mode : "int", "categorical", "binary" or None
        Labels as ids ``(n,)``, one-hot float32 ``(n, K)``, float32 ``(n, 1)`` (two classes), or none.
    class_names : list of str, optional
        The sub-folders to use, in this order (default: all, alphabetically).
    color_mode : "grayscale", "rgb" or "rgba"
        1, 3 or 4 channels.
    batch_size : int
    image_size : (height, width)
        Every image is resized to it.
    shuffle, seed
        Shuffle the files (seeded); reshuffled after every epoch. The validation split is taken after
        a seeded shuffle, so give the same ``seed`` for both subsets.
    validation_split : float in (0, 1), optional
    subset : "training", "validation" or "both"
        Which part of the split to return; "both" returns ``(training, validation)``.
    interpolation : str
        Resizing filter: "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5" (Pillow's
        Lanczos), "gaussian" (bilinear), "mitchellcubic" (bicubic).
    follow_links : bool
        Follow symbolic links to sub-folders.
    crop_to_aspect_ratio, pad_to_aspect_ratio : bool
        Crop (or pad with black) each image to ``image_size``'s aspect ratio, centred, before resizing.
    data_format : None or "channels_last"
        Channels-last only.
    verbose : bool
        Print how many files and classes were found.
    **sequence_options
        ``workers``, ``use_multiprocessing``, ``max_queue_size`` for the returned Sequence.

    Returns
    -------
    ImageDirectorySequence, or a pair of them for ``subset="both"``
        With ``class_names`` and ``file_paths``.
    """
    _pillow()  # fail now, naming the extra, not at the first batch
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"image_dataset_from_directory: {directory} is not a folder")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"image_dataset_from_directory: only data_format='channels_last' is "
                         f"supported, got {data_format!r}")
    if color_mode not in _CHANNELS:
        raise ValueError(f"color_mode must be one of {sorted(_CHANNELS)}, got {color_mode!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"label_mode must be 'int', 'categorical', 'binary' or None, got {label_mode!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (unbatched data is not supported), "
                         f"got {batch_size!r}")
    try:
        height, width = (int(d) for d in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("give crop_to_aspect_ratio or pad_to_aspect_ratio, not both")
    if (validation_split is None) != (subset is None):
        raise ValueError("validation_split and subset go together: give both or neither")
    if subset not in (None, "training", "validation", "both"):
        raise ValueError(f"subset must be 'training', 'validation' or 'both', got {subset!r}")
    if validation_split is not None:
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must lie in (0, 1), got {validation_split!r}")
        if shuffle and seed is None:
            raise ValueError("validation_split with shuffle needs a seed, so that the training and "
                             "validation subsets do not overlap")

    found = sorted(entry.name for entry in directory.iterdir()
                   if entry.is_dir() or (follow_links and entry.is_symlink()))
    if labels == "inferred":
        if class_names is None:
            class_names = found
        else:
            class_names = list(class_names)
            missing = [name for name in class_names if name not in found]
            if missing:
                raise ValueError(f"class_names {missing} are not sub-folders of {directory} "
                                 f"(found {found})")
        paths, ids = _list_files(directory, class_names, follow_links)
    else:
        if class_names is not None:
            raise ValueError("class_names is only for labels='inferred'")
        paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if labels is None:
            ids = None
        else:
            ids = np.asarray(labels)
            if ids.shape != (len(paths),) or ids.dtype.kind not in "iu":
                raise ValueError(f"labels must be one int per image file ({len(paths)} found), "
                                 f"got shape {ids.shape} of {ids.dtype}")
    if ids is None:
        label_mode = None
    classes = len(class_names) if class_names is not None else (
        int(ids.max()) + 1 if ids is not None and len(ids) else 0)
    if label_mode == "binary" and classes != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, found {classes}")
    if not paths:
        raise ValueError(f"image_dataset_from_directory: no images ({', '.join(EXTENSIONS)}) in "
                         f"{directory}")
    if verbose:
        print(f"Found {len(paths)} files" + (f" belonging to {classes} classes." if ids is not None
                                             else "."))

    order = np.random.default_rng(seed).permutation(len(paths)) if shuffle else np.arange(len(paths))
    paths = [paths[k] for k in order]
    ids = None if ids is None else ids[order]

    def make(rows, subset_seed):
        return ImageDirectorySequence(
            [paths[k] for k in rows], None if ids is None else ids[rows], class_names, label_mode,
            (height, width), color_mode, int(batch_size), shuffle, subset_seed, interpolation,
            crop_to_aspect_ratio, pad_to_aspect_ratio, **sequence_options)

    everything = np.arange(len(paths))
    if validation_split is None:
        return make(everything, seed)
    n_val = int(validation_split * len(paths))
    train_rows, val_rows = everything[:len(paths) - n_val], everything[len(paths) - n_val:]
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"validation_split={validation_split} of {len(paths)} images leaves an "
                         "empty subset")
    if verbose and subset != "both":
        used = len(train_rows) if subset == "training" else len(val_rows)
        print(f"Using {used} files for {subset}.")
    if subset == "training":
        return make(train_rows, seed)
    if subset == "validation":
        return make(val_rows, seed)
    return make(train_rows, seed), make(val_rows, seed)

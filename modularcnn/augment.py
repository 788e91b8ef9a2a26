"""Random image augmentation for training, vectorised over the batch.

Each image in a batch gets its own random affine transform (rotation, shift, zoom, flips).
All transforms are applied at once by *inverse mapping*: for every output pixel we compute
where it comes from in the input image and sample the input there (bilinear or nearest),
with one gather over the whole batch instead of a Python loop over images.

Coordinates are (row, col) with rows pointing down and the origin at the image centre
``((H - 1) / 2, (W - 1) / 2)``. The forward transform of a point ``p`` is::

    p_out = centre + zoom * R(angle) @ (p_in - centre) + shift

so the sampling position of output pixel ``p_out`` is::

    p_in = centre + R(angle).T @ (p_out - centre - shift) / zoom

Flips are applied first, by exact indexing.
"""

import numpy as np

from . import validation

INTERPOLATIONS = ("bilinear", "nearest")


class ImageAugmenter:
    """Random rotations, shifts, zooms, flips and Gaussian noise for image batches.

    Parameters
    ----------
    rotation_range : float
        Angles are drawn uniformly from ``[-rotation_range, rotation_range]`` degrees;
        positive angles turn the picture counter-clockwise as displayed.
    width_shift_range, height_shift_range : float
        Shifts are drawn uniformly from ``[-r, r]`` times the image width / height
        (so 0.1 on a 28-pixel image means up to 2.8 pixels).
    zoom_range : float or (float, float)
        A float ``z`` draws the zoom factor from ``[1 - z, 1 + z]``; a pair gives the
        interval directly. Factors above 1 magnify the picture.
    horizontal_flip, vertical_flip : bool
        Flip each image left-right / upside-down with probability 1/2.
    noise_std : float
        Standard deviation of additive Gaussian noise, in the units of the data
        (pixel levels for uint8, which is then rounded and clipped to 0..255).
    fill_value : float
        Value of pixels that come from outside the input image.
    seed : int or None
        Seed of the augmenter's own generator, used when ``augment`` gets no ``rng``.
    interpolation : {"bilinear", "nearest"}
    """

    def __init__(self, rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0,
                 zoom_range=0.0, horizontal_flip=False, vertical_flip=False, noise_std=0.0,
                 fill_value=0.0, seed=None, interpolation="bilinear"):
        owner = "ImageAugmenter"
        # A turn beyond 360 degrees or a shift beyond the whole image adds nothing (and 1e308 would
        # overflow the draw's range).
        rotation_range = validation.real(rotation_range, "rotation_range", owner, minimum=0,
                                         maximum=360)
        width_shift_range = validation.real(width_shift_range, "width_shift_range", owner, minimum=0,
                                            maximum=1)
        height_shift_range = validation.real(height_shift_range, "height_shift_range", owner,
                                             minimum=0, maximum=1)
        noise_std = validation.non_negative_number(noise_std, "noise_std", owner)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"ImageAugmenter: interpolation must be one of {INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        self.rotation_range = float(rotation_range)
        self.width_shift_range = float(width_shift_range)
        self.height_shift_range = float(height_shift_range)
        self.zoom_range = zoom_range
        self._zoom_bounds = _zoom_bounds(zoom_range)
        self.horizontal_flip = validation.boolean(horizontal_flip, "horizontal_flip", owner)
        self.vertical_flip = validation.boolean(vertical_flip, "vertical_flip", owner)
        self.noise_std = noise_std
        self.fill_value = validation.real(fill_value, "fill_value", owner)
        self.seed = validation.seed(seed, "seed", owner)
        self.interpolation = interpolation
        self.rng = np.random.default_rng(seed)

    def get_config(self):
        """Return the constructor's arguments, so that ``from_config(get_config())`` is a copy."""
        return {
            "rotation_range": self.rotation_range,
            "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range,
            "zoom_range": self.zoom_range,
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "noise_std": self.noise_std,
            "fill_value": self.fill_value,
            "seed": self.seed,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_config(cls, config):
        """Build an augmenter from the dictionary returned by :meth:`get_config`."""
        return cls(**config)

    def sample_params(self, n, height, width, rng=None):
        """Draw the random transform of each of ``n`` images of size ``height`` x ``width``.

        Returns
        -------
        dict
            ``angle`` (n,) degrees, ``shift`` (n, 2) pixels as (down, right), ``zoom`` (n,),
            ``flip_horizontal`` (n,) bool, ``flip_vertical`` (n,) bool: the keyword
            arguments of :func:`transform_batch`.
        """
        rng = self.rng if rng is None else np.random.default_rng(rng)
        low_zoom, high_zoom = self._zoom_bounds
        return {
            "angle": rng.uniform(-self.rotation_range, self.rotation_range, n),
            "shift": np.stack([
                rng.uniform(-self.height_shift_range, self.height_shift_range, n) * height,
                rng.uniform(-self.width_shift_range, self.width_shift_range, n) * width,
            ], axis=1),
            "zoom": rng.uniform(low_zoom, high_zoom, n),
            "flip_horizontal": (rng.random(n) < 0.5) & self.horizontal_flip,
            "flip_vertical": (rng.random(n) < 0.5) & self.vertical_flip,
        }

    def augment(self, x, rng=None):
        """Return a randomly transformed copy of the batch ``x``.

        Parameters
        ----------
        x : np.ndarray
            ``(N, H, W, C)`` or ``(N, H, W)``, float or integer (e.g. uint8).
        rng : np.random.Generator, int or None
            Source of randomness; ``None`` uses the augmenter's own seeded generator.
            The same generator state always gives the same result.

        Returns
        -------
        np.ndarray
            Same shape and dtype as ``x``.
        """
        x = _check_batch(x)
        rng = self.rng if rng is None else np.random.default_rng(rng)
        params = self.sample_params(x.shape[0], x.shape[1], x.shape[2], rng)
        noise_std = self.noise_std if self.noise_std > 0 else None
        return transform_batch(x, **params, fill_value=self.fill_value,
                               interpolation=self.interpolation, noise_std=noise_std, rng=rng)

    __call__ = augment

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"ImageAugmenter({args})"


def transform_batch(x, angle=0.0, shift=(0.0, 0.0), zoom=1.0, flip_horizontal=False,
                    flip_vertical=False, fill_value=0.0, interpolation="bilinear",
                    noise_std=None, rng=None):
    """Apply a given affine transform (and optional noise) to every image of a batch.

    Every per-image argument is either one value for all images or an array with one
    entry per image.

    Parameters
    ----------
    x : np.ndarray
        ``(N, H, W, C)`` or ``(N, H, W)``.
    angle : float or (N,)
        Rotation in degrees, counter-clockwise as displayed, about the image centre.
    shift : (2,) or (N, 2)
        Translation in pixels as (rows down, columns right).
    zoom : float or (N,)
        Scale factor about the centre; > 1 magnifies.
    flip_horizontal, flip_vertical : bool or (N,) bool
        Mirror left-right / upside-down before the affine part.
    fill_value : float
        Value for pixels sampled from outside the image.
    interpolation : {"bilinear", "nearest"}
    noise_std : float or None
        Standard deviation of Gaussian noise added at the end (needs ``rng``).
    rng : np.random.Generator or None

    Returns
    -------
    np.ndarray
        Same shape and dtype as ``x``. Integer outputs are rounded and clipped to the
        dtype's range.
    """
    x = _check_batch(x)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"transform_batch: interpolation must be one of {INTERPOLATIONS}, "
                         f"got {interpolation!r}")
    no_channels = x.ndim == 3
    images = x[..., None] if no_channels else x
    n, height, width, _ = images.shape
    # uint8 and float32 are processed in float32, float64 stays float64.
    work_dtype = np.float64 if x.dtype == np.float64 else np.float32
    out = images.astype(work_dtype)  # always a copy

    out = _flip(out, np.broadcast_to(flip_horizontal, (n,)), axis=2)
    out = _flip(out, np.broadcast_to(flip_vertical, (n,)), axis=1)

    angle = np.broadcast_to(np.asarray(angle, dtype=np.float64), (n,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n, 2))
    zoom = np.broadcast_to(np.asarray(zoom, dtype=np.float64), (n,))
    if np.any(zoom <= 0):
        raise ValueError(f"transform_batch: zoom factors must be > 0, got min {zoom.min()}")
    if np.any(angle != 0) or np.any(shift != 0) or np.any(zoom != 1):
        rows, cols = _source_coordinates(height, width, angle, shift, zoom)
        sample = _sample_bilinear if interpolation == "bilinear" else _sample_nearest
        out = sample(out, rows, cols, np.asarray(fill_value, dtype=work_dtype))

    if noise_std:
        if rng is None:
            raise ValueError("transform_batch: noise_std needs an rng")
        out += rng.normal(0.0, noise_std, size=out.shape).astype(work_dtype)

    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(x.dtype, copy=False)
    return out[..., 0] if no_channels else out


def _check_batch(x):
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"augment: expected a batch of shape (N, H, W, C) or (N, H, W), "
                         f"got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"augment: expected an integer or float array, got dtype {x.dtype}")
    return x


def _zoom_bounds(zoom_range):
    if not isinstance(zoom_range, (tuple, list)):
        zoom = validation.probability(zoom_range, "zoom_range", "ImageAugmenter")
        return 1.0 - zoom, 1.0 + zoom
    if len(zoom_range) != 2:
        validation.fail("ImageAugmenter", "zoom_range", "a number in [0, 1) or a (low, high) pair",
                        zoom_range)
    low, high = (validation.real(v, "zoom_range", "ImageAugmenter") for v in zoom_range)
    if not 0 < low <= high:
        raise ValueError(f"ImageAugmenter: zoom_range pair must satisfy 0 < low <= high, "
                         f"got {zoom_range!r}")
    return low, high


def _flip(images, mask, axis):
    """Reverse ``axis`` of the images where ``mask`` (N,) is True."""
    if not mask.any():
        return images
    flipped = np.flip(images, axis=axis)
    return np.where(mask[:, None, None, None], flipped, images)


def _source_coordinates(height, width, angle, shift, zoom):
    """Input (row, col) positions sampled by each output pixel.

    Returns
    -------
    (rows, cols)
        Two float64 arrays of shape (N, H, W).
    """
    centre_r, centre_c = (height - 1) / 2.0, (width - 1) / 2.0
    out_r, out_c = np.meshgrid(np.arange(height, dtype=np.float64),
                               np.arange(width, dtype=np.float64), indexing="ij")
    # Undo the shift, then move the origin to the centre: (N, H, W) each.
    dr = out_r[None] - centre_r - shift[:, 0, None, None]
    dc = out_c[None] - centre_c - shift[:, 1, None, None]
    theta = np.deg2rad(angle)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    inv_zoom = 1.0 / zoom[:, None, None]
    # R(angle).T @ (dr, dc), with R = [[cos, -sin], [sin, cos]] acting on (row, col).
    rows = centre_r + (cos * dr + sin * dc) * inv_zoom
    cols = centre_c + (-sin * dr + cos * dc) * inv_zoom
    return rows, cols


def _gather(images, rows, cols, fill_value):
    """``images[n, rows, cols, :]`` for integer-valued positions, ``fill_value`` outside.

    images : (N, H, W, C); rows, cols : (N, H, W) -> (N, H, W, C)
    """
    n, height, width, channels = images.shape
    inside = (rows >= 0) & (rows <= height - 1) & (cols >= 0) & (cols <= width - 1)
    r = np.clip(rows, 0, height - 1).astype(np.intp)
    c = np.clip(cols, 0, width - 1).astype(np.intp)
    flat_index = (r * width + c).reshape(n, -1, 1)  # (N, H*W, 1)
    values = np.take_along_axis(images.reshape(n, -1, channels), flat_index, axis=1)
    values = values.reshape(n, height, width, channels)
    return np.where(inside[..., None], values, fill_value)


def _sample_nearest(images, rows, cols, fill_value):
    return _gather(images, np.floor(rows + 0.5), np.floor(cols + 0.5), fill_value)


def _sample_bilinear(images, rows, cols, fill_value):
    """Bilinear interpolation; neighbours outside the image count as ``fill_value``."""
    r0, c0 = np.floor(rows), np.floor(cols)
    fr = (rows - r0).astype(images.dtype)[..., None]  # fractional parts, (N, H, W, 1)
    fc = (cols - c0).astype(images.dtype)[..., None]
    top = (1 - fc) * _gather(images, r0, c0, fill_value) + fc * _gather(images, r0, c0 + 1,
                                                                         fill_value)
    bottom = (1 - fc) * _gather(images, r0 + 1, c0, fill_value) + fc * _gather(
        images, r0 + 1, c0 + 1, fill_value)
    return ((1 - fr) * top + fr * bottom).astype(images.dtype, copy=False)


def augment_batches(x, y, augmenter, batch_size, copies=1, rng=None, shuffle=True,
                    include_original=False):
    """Iterate over augmented mini-batches: ``copies`` augmented versions of every image.

    One pass yields ``N * copies`` samples (``N * (copies + 1)`` with ``include_original``),
    in random order when ``shuffle``.

    Parameters
    ----------
    x : np.ndarray
        ``(N, H, W, C)`` or ``(N, H, W)`` images.
    y : np.ndarray
        ``(N, ...)`` labels (class indices or one-hot rows), carried along unchanged.
    augmenter : ImageAugmenter
    batch_size : int
    copies : int
        Augmented copies made of each image per pass.
    rng : np.random.Generator, int or None
        Drives both the shuffling and the augmentation; ``None`` uses ``augmenter.rng``.
    shuffle : bool
    include_original : bool
        Also yield every image once unchanged.

    Yields
    ------
    (x_batch, y_batch)
        ``(B, H, W[, C])`` with ``x``'s dtype, and ``(B, ...)`` labels; B = ``batch_size``
        except possibly for the last batch.
    """
    x = _check_batch(x)
    y = np.asarray(y)
    if len(y) != len(x):
        raise ValueError(f"augment_batches: x has {len(x)} images but y has {len(y)} labels")
    for name, value in (("batch_size", batch_size), ("copies", copies)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"augment_batches: {name} must be an integer >= 1, got {value!r}")
    rng = augmenter.rng if rng is None else np.random.default_rng(rng)
    return _batches(x, y, augmenter, int(batch_size), int(copies), rng, shuffle,
                    include_original)


def _batches(x, y, augmenter, batch_size, copies, rng, shuffle, include_original):
    n = len(x)
    # Sample k stands for image k % n; the first n samples are the originals when kept.
    first_augmented = n if include_original else 0
    samples = np.arange(first_augmented + n * copies)
    if shuffle:
        samples = rng.permutation(samples)
    for start in range(0, len(samples), batch_size):
        chosen = samples[start:start + batch_size]
        index = chosen % n
        x_batch = x[index]  # fancy indexing copies, so x itself is never modified
        to_augment = chosen >= first_augmented
        if to_augment.all():
            x_batch = augmenter.augment(x_batch, rng)
        elif to_augment.any():
            x_batch[to_augment] = augmenter.augment(x_batch[to_augment], rng)
        yield x_batch, y[index]

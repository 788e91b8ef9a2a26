"""Tests for modularcnn.augment against hand-built expectations and a per-pixel loop."""

import math

import numpy as np
import pytest

from modularcnn.augment import ImageAugmenter, augment_batches, transform_batch

FULL = dict(rotation_range=25.0, width_shift_range=0.15, height_shift_range=0.1,
            zoom_range=0.2, horizontal_flip=True, vertical_flip=True, noise_std=3.0)


def random_images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.random(shape).astype(dtype)


# --------------------------------------------------------------------------- the naive oracle

def naive_transform(x, angle, shift, zoom, fill_value, interpolation):
    """One image at a time, one pixel at a time, from the formula in the module docstring.

    x: (N, H, W, C) float64; angle, zoom: (N,); shift: (N, 2).
    """
    n, height, width, channels = x.shape
    cr, cc = (height - 1) / 2, (width - 1) / 2
    out = np.empty_like(x)

    def pixel(image, r, c):
        if 0 <= r < height and 0 <= c < width:
            return image[r, c]
        return np.full(channels, fill_value)

    for i in range(n):
        t = math.radians(angle[i])
        for r in range(height):
            for c in range(width):
                u, v = r - cr - shift[i, 0], c - cc - shift[i, 1]
                # inverse rotation R.T with R = [[cos, -sin], [sin, cos]], then undo the zoom
                src_r = cr + (math.cos(t) * u + math.sin(t) * v) / zoom[i]
                src_c = cc + (-math.sin(t) * u + math.cos(t) * v) / zoom[i]
                if interpolation == "nearest":
                    out[i, r, c] = pixel(x[i], math.floor(src_r + 0.5), math.floor(src_c + 0.5))
                    continue
                r0, c0 = math.floor(src_r), math.floor(src_c)
                a, b = src_r - r0, src_c - c0
                out[i, r, c] = ((1 - a) * (1 - b) * pixel(x[i], r0, c0)
                                + (1 - a) * b * pixel(x[i], r0, c0 + 1)
                                + a * (1 - b) * pixel(x[i], r0 + 1, c0)
                                + a * b * pixel(x[i], r0 + 1, c0 + 1))
    return out


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_transform_batch_matches_a_per_pixel_loop(interpolation):
    rng = np.random.default_rng(1)
    x = rng.random((4, 9, 7, 2))
    angle = rng.uniform(-40, 40, 4)
    shift = rng.uniform(-2, 2, (4, 2))
    zoom = rng.uniform(0.7, 1.4, 4)
    got = transform_batch(x, angle=angle, shift=shift, zoom=zoom, fill_value=-1.0,
                          interpolation=interpolation)
    expected = naive_transform(x, angle, shift, zoom, -1.0, interpolation)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- basic contract

@pytest.mark.parametrize("shape", [(5, 12, 10, 3), (5, 12, 10)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_shape_and_dtype_are_preserved(shape, dtype):
    x = random_images(shape, dtype)
    out = ImageAugmenter(**FULL, seed=0).augment(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert not np.shares_memory(out, x)


def test_same_seed_same_result_and_different_seed_different_result():
    x = random_images((6, 16, 16, 1), np.float32)
    first = ImageAugmenter(**FULL, seed=3).augment(x)
    again = ImageAugmenter(**FULL, seed=3).augment(x)
    other = ImageAugmenter(**FULL, seed=4).augment(x)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    augmenter = ImageAugmenter(**FULL)
    np.testing.assert_array_equal(augmenter.augment(x, rng=np.random.default_rng(9)),
                                  augmenter.augment(x, rng=np.random.default_rng(9)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_all_ranges_zero_is_the_identity(dtype):
    x = random_images((4, 11, 13, 2), dtype)
    out = ImageAugmenter(fill_value=7.0, seed=0).augment(x)
    np.testing.assert_array_equal(out, x)
    # Explicit neutral parameters take the sampling path and are exact too.
    out = transform_batch(x, angle=np.zeros(4), shift=np.zeros((4, 2)), zoom=np.ones(4) * 1.0)
    np.testing.assert_array_equal(out, x)


# --------------------------------------------------------------------------- geometry

def roll_with_fill(image, down, right, fill):
    """np.roll, but what rolls in from outside is ``fill`` instead of wrapping around."""
    out = np.roll(image, (down, right), axis=(0, 1)).astype(np.float64)
    if down > 0:
        out[:down] = fill
    elif down < 0:
        out[down:] = fill
    if right > 0:
        out[:, :right] = fill
    elif right < 0:
        out[:, right:] = fill
    return out


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_integer_shift_equals_roll_with_fill(interpolation):
    x = random_images((3, 10, 12, 2), np.uint8)
    shifts = np.array([[2, -3], [0, 4], [-1, 0]])
    out = transform_batch(x, shift=shifts, fill_value=9, interpolation=interpolation)
    for i, (down, right) in enumerate(shifts):
        np.testing.assert_array_equal(out[i], roll_with_fill(x[i], down, right, 9))


def test_flips_equal_reversed_axes():
    x = random_images((4, 6, 5, 3), np.float32)
    np.testing.assert_array_equal(transform_batch(x, flip_horizontal=True), x[:, :, ::-1])
    np.testing.assert_array_equal(transform_batch(x, flip_vertical=True), x[:, ::-1])
    mask = np.array([True, False, True, False])
    out = transform_batch(x, flip_horizontal=mask)
    np.testing.assert_array_equal(out[mask], x[mask][:, :, ::-1])
    np.testing.assert_array_equal(out[~mask], x[~mask])


def test_random_horizontal_flip_gives_original_or_mirror_both_seen():
    x = random_images((64, 8, 8), np.uint8)
    out = ImageAugmenter(horizontal_flip=True, seed=1).augment(x)
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    unchanged = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(mirrored ^ unchanged)
    assert 10 < mirrored.sum() < 54


def test_small_rotations_and_zooms_keep_the_centre_pixel():
    x = random_images((32, 15, 15, 3), np.float64)
    out = ImageAugmenter(rotation_range=15, zoom_range=0.2, seed=2).augment(x)
    np.testing.assert_array_equal(out[:, 7, 7], x[:, 7, 7])
    assert not np.allclose(out, x)


def test_quarter_turn_is_counter_clockwise_like_rot90():
    x = random_images((2, 9, 9, 1), np.float64)
    out = transform_batch(x, angle=90.0)
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(1, 2)), atol=1e-12)


def test_sampled_shifts_stay_within_the_range():
    augmenter = ImageAugmenter(width_shift_range=0.25, height_shift_range=0.1, seed=0)
    params = augmenter.sample_params(1000, height=20, width=40)
    assert params["shift"].shape == (1000, 2)
    assert np.abs(params["shift"][:, 0]).max() <= 2.0 and np.abs(params["shift"][:, 0]).max() > 1.8
    assert np.abs(params["shift"][:, 1]).max() <= 10.0 and np.abs(params["shift"][:, 1]).max() > 9
    np.testing.assert_array_equal(params["angle"], 0)
    np.testing.assert_array_equal(params["zoom"], 1)
    assert not params["flip_horizontal"].any()


# --------------------------------------------------------------------------- noise

def test_noise_has_the_requested_mean_and_std():
    x = np.zeros((50, 40, 40, 1))
    out = ImageAugmenter(noise_std=0.5, seed=0).augment(x)
    n = out.size  # 80,000 samples: standard error of the mean 0.5 / sqrt(n) ~ 0.0018
    assert abs(out.mean()) < 5 * 0.5 / np.sqrt(n)
    assert abs(out.std() - 0.5) < 0.01


def test_noise_on_uint8_is_rounded_and_clipped():
    grey = np.full((20, 30, 30), 128, dtype=np.uint8)
    out = ImageAugmenter(noise_std=10.0, seed=0).augment(grey)
    assert out.dtype == np.uint8
    assert abs(out.mean() - 128) < 0.5 and 9.5 < out.std() < 10.5
    black = np.zeros((20, 30, 30), dtype=np.uint8)
    out = ImageAugmenter(noise_std=10.0, seed=0).augment(black)
    # Half the noise is negative and clips to 0: about half the pixels stay black.
    assert 0.45 < np.mean(out == 0) < 0.55


# --------------------------------------------------------------------------- config & errors

def test_config_round_trip():
    augmenter = ImageAugmenter(**FULL, fill_value=0.5, seed=11, interpolation="nearest")
    config = augmenter.get_config()
    assert config == dict(FULL, fill_value=0.5, seed=11, interpolation="nearest")
    copy = ImageAugmenter.from_config(config)
    assert copy.get_config() == config
    x = random_images((3, 10, 10, 1), np.float32)
    np.testing.assert_array_equal(copy.augment(x), augmenter.augment(x))


@pytest.mark.parametrize("kwargs,expected", [
    ({"rotation_range": -1}, r"rotation_range must be a number in \[0, 360\], got -1"),
    ({"noise_std": float("nan")}, "noise_std"),
    ({"zoom_range": 1.5}, r"zoom_range must be a number in \[0, 1\), got 1.5"),
    ({"zoom_range": (1.2, 0.8)}, "0 < low <= high"),
    ({"interpolation": "cubic"}, "interpolation must be one of"),
])
def test_bad_arguments_are_reported(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        ImageAugmenter(**kwargs)


def test_bad_batches_are_reported():
    with pytest.raises(ValueError, match=r"got shape \(28, 28\)"):
        ImageAugmenter().augment(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="dtype bool"):
        ImageAugmenter().augment(np.zeros((2, 4, 4), dtype=bool))


# --------------------------------------------------------------------------- augment_batches

def test_augment_batches_yields_each_image_copies_times():
    x = random_images((10, 6, 6, 1), np.uint8)
    y = np.arange(10)
    batches = list(augment_batches(x, y, ImageAugmenter(), batch_size=4, copies=3, rng=0))
    assert [len(b[0]) for b in batches] == [4] * 7 + [2]  # 30 samples
    ids = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.bincount(ids), [3] * 10)
    # Identity augmenter: every image still sits beside its own label.
    for x_batch, y_batch in batches:
        np.testing.assert_array_equal(x_batch, x[y_batch])


def test_augment_batches_without_shuffle_keeps_order():
    x = random_images((5, 4, 4), np.float32)
    batches = list(augment_batches(x, np.arange(5), ImageAugmenter(), batch_size=5, copies=2,
                                   shuffle=False))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]),
                                  [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])


def test_augment_batches_include_original_and_determinism():
    x = random_images((8, 5, 5, 1), np.float64)
    y = np.arange(8)
    augmenter = ImageAugmenter(noise_std=1.0)
    run = list(augment_batches(x, y, augmenter, batch_size=6, copies=2, rng=5,
                               include_original=True))
    again = list(augment_batches(x, y, augmenter, batch_size=6, copies=2, rng=5,
                                 include_original=True))
    xs = np.concatenate([b[0] for b in run])
    ys = np.concatenate([b[1] for b in run])
    np.testing.assert_array_equal(xs, np.concatenate([b[0] for b in again]))
    np.testing.assert_array_equal(np.bincount(ys), [3] * 8)
    untouched = np.array([np.array_equal(image, x[label]) for image, label in zip(xs, ys)])
    np.testing.assert_array_equal(np.bincount(ys[untouched], minlength=8), [1] * 8)


@pytest.mark.parametrize("kwargs,expected", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 4, "copies": 1.5}, "copies must be an integer >= 1, got 1.5"),
])
def test_augment_batches_checks_arguments(kwargs, expected):
    x = np.zeros((4, 3, 3))
    with pytest.raises(ValueError, match=expected):
        augment_batches(x, np.arange(4), ImageAugmenter(), **kwargs)
    with pytest.raises(ValueError, match="x has 4 images but y has 3 labels"):
        augment_batches(x, np.arange(3), ImageAugmenter(), batch_size=2)

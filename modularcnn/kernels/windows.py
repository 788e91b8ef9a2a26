"""Window arithmetic shared by convolution, pooling and shape inference.

Everything that slides a window over spatial axes (2-D convolution and pooling, and their 1-D/3-D
relatives) asks this module two questions: how much padding does a padding specification mean, and how
many output positions are there. Keeping both answers in one place keeps shape inference and the kernels
in agreement. (Checking the arguments that become these specifications is the layers' business:
:func:`modularcnn.validation.normalize_tuple` and :func:`~modularcnn.validation.normalize_padding`.)
"""

import numpy as np

def same_padding(size, kernel, stride):
    """Keras/TensorFlow "same" padding along one axis: output ``ceil(size / stride)``.

    When the total is odd the extra row goes after (bottom/right), as TensorFlow does.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, spatial_shape, kernel, stride):
    """Turn a normalised padding spec into explicit ``(before, after)`` pairs, one per spatial axis."""
    if padding == "valid":
        return tuple((0, 0) for _ in spatial_shape)
    if padding == "same":
        return tuple(same_padding(n, k, s) for n, k, s in zip(spatial_shape, kernel, stride))
    return tuple(padding)


def output_length(size, kernel, stride, pad_before, pad_after):
    """Number of window positions along one axis: ``floor((size + pads - kernel) / stride) + 1``."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def output_spatial_shape(spatial_shape, kernel, stride, pads):
    """Output positions along every spatial axis; raises ``ValueError`` if the window does not fit."""
    out = []
    for axis, (n, k, s, (before, after)) in enumerate(zip(spatial_shape, kernel, stride, pads)):
        if n + before + after < k:
            raise ValueError(
                f"window of size {tuple(kernel)} does not fit the padded input: axis {axis} has "
                f"{n} + {before + after} padding = {n + before + after} < {k}"
            )
        out.append(output_length(n, k, s, before, after))
    return tuple(out)


def dilated_size(kernel, dilation):
    """Cells a dilated window spans along each axis: ``dilation * (kernel - 1) + 1``.

    Output sizes and "same" padding of a dilated convolution are those of an undilated window of this
    size (as in Keras and PyTorch).
    """
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def padded_shape(x_shape, pads):
    """Shape of ``(N, *S, C)`` after padding its spatial axes."""
    return (x_shape[0],) + tuple(
        n + before + after for n, (before, after) in zip(x_shape[1:-1], pads)
    ) + (x_shape[-1],)


def interior(x_shape, pads):
    """Index of the unpadded region inside a padded array."""
    return (slice(None),) + tuple(
        slice(before, before + n) for n, (before, _) in zip(x_shape[1:-1], pads)
    ) + (slice(None),)


def pad_spatial(x, pads, value=0.0, workspace=None):
    """Copy ``x`` (N, *spatial, C) into an array whose spatial border holds ``value``.

    With a :class:`~modularcnn.kernels.workspace.Workspace`, the padded array is kept between calls and
    only its interior is rewritten: the border keeps ``value`` from the first call, which is what saves
    the allocation and fill that ``np.pad`` makes every time.
    """
    if not any(before or after for before, after in pads):
        return x
    shape = padded_shape(x.shape, pads)
    if workspace is None:
        out = np.full(shape, value, dtype=x.dtype)
    else:
        out = workspace.get(f"padded{value}", shape, x.dtype, fill=value)
    out[interior(x.shape, pads)] = x
    return out


def unpad_spatial(x, pads):
    """The view of ``x`` (N, *padded, C) without its border: the inverse of :func:`pad_spatial`."""
    inner = (slice(None),) + tuple(
        slice(before, n - after) for n, (before, after) in zip(x.shape[1:-1], pads)
    ) + (slice(None),)
    return x[inner]


def window_slices(offsets, stride, out_shape):
    """Index selecting, for one kernel offset, the input positions that meet it in every output position.

    For offset ``(i, j)``, stride ``(sh, sw)`` and output ``(Ho, Wo)`` this is
    ``[:, i : i + sh*(Ho-1) + 1 : sh, j : j + sw*(Wo-1) + 1 : sw, :]`` — a strided view of shape
    (N, Ho, Wo, C) whose innermost axis is the contiguous channel axis.
    """
    return (slice(None),) + tuple(
        slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offsets, stride, out_shape)
    ) + (slice(None),)

"""Deliberately simple loop implementations: independent oracles for the vectorised kernels."""

import itertools

import numpy as np


def conv2d(x, kernel, bias, stride, pads):
    """Direct convolution with explicit loops over samples, output pixels and filters."""
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    sh, sw = stride
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=np.float64)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    y = np.zeros((n, ho, wo, f))
    for b, i, j, o in itertools.product(range(n), range(ho), range(wo), range(f)):
        window = xp[b, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
        y[b, i, j, o] = np.sum(window * kernel[:, :, :, o]) + (0 if bias is None else bias[o])
    return y


def pool2d(x, pool, stride, pads, mode):
    """Max or average pooling with loops; average counts only unpadded cells."""
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x.shape
    ph, pw = pool
    sh, sw = stride
    ho = (h + pt + pb - ph) // sh + 1
    wo = (w + pl + pr - pw) // sw + 1
    y = np.zeros((n, ho, wo, c))
    for b, i, j, ch in itertools.product(range(n), range(ho), range(wo), range(c)):
        rows = range(max(i * sh - pt, 0), min(i * sh - pt + ph, h))
        cols = range(max(j * sw - pl, 0), min(j * sw - pl + pw, w))
        values = [x[b, r, s, ch] for r in rows for s in cols]
        y[b, i, j, ch] = max(values) if mode == "max" else sum(values) / len(values)
    return y


def conv_nd(x, kernel, bias, stride, pads, dilation, groups=1):
    """Direct dilated, grouped convolution over any number of spatial axes, one output value at a time.

    x (N, *S, C), kernel (*K, C / groups, F): output channel ``o`` belongs to group
    ``o // (F / groups)`` and reads only that group's input channels; tap ``k`` of a window starting at
    ``p`` reads input cell ``p + k * dilation``.
    """
    rank = x.ndim - 2
    kernel_size = kernel.shape[:rank]
    per_group_in, filters = kernel.shape[-2:]
    per_group_out = filters // groups
    padded = [n + b + a for n, (b, a) in zip(x.shape[1:-1], pads)]
    xp = np.zeros((x.shape[0], *padded, x.shape[-1]))
    xp[(slice(None),) + tuple(slice(b, b + n) for n, (b, _) in zip(x.shape[1:-1], pads))] = x
    span = [d * (k - 1) + 1 for k, d in zip(kernel_size, dilation)]
    out = [(p - s) // st + 1 for p, s, st in zip(padded, span, stride)]
    y = np.zeros((x.shape[0], *out, filters))
    for b in range(x.shape[0]):
        for position in itertools.product(*(range(o) for o in out)):
            for o in range(filters):
                g = o // per_group_out
                total = 0.0 if bias is None else bias[o]
                for tap in itertools.product(*(range(k) for k in kernel_size)):
                    cell = tuple(p * st + t * d for p, st, t, d in zip(position, stride, tap, dilation))
                    for c in range(per_group_in):
                        total += xp[(b, *cell, g * per_group_in + c)] * kernel[(*tap, c, o)]
                y[(b, *position, o)] = total
    return y


def bilinear_upsample(x, factors):
    """Half-pixel-centre linear interpolation (Keras's and PyTorch's ``align_corners=False``), looped.

    Output cell ``i`` along an axis of length ``n`` upsampled ``f`` times samples the input at
    ``(i + 0.5) / f - 0.5``, clamped to ``[0, n - 1]``, mixing its two neighbours linearly.
    """
    y = x.astype(np.float64)
    for axis, factor in enumerate(factors, start=1):
        n = y.shape[axis]
        pieces = []
        for i in range(n * factor):
            source = min(max((i + 0.5) / factor - 0.5, 0.0), n - 1)
            low = int(np.floor(source))
            high = min(low + 1, n - 1)
            weight = source - low
            pieces.append((1 - weight) * np.take(y, low, axis=axis) + weight * np.take(y, high, axis=axis))
        y = np.stack(pieces, axis=axis)
    return y


def depthwise_conv(x, kernel, bias, stride, pads, dilation):
    """Direct depthwise convolution: kernel (*K, C, M); output channel ``c * M + m`` is channel ``c``
    convolved with filter ``m``."""
    rank = x.ndim - 2
    kernel_size = kernel.shape[:rank]
    channels, multiplier = kernel.shape[-2:]
    padded = [n + b + a for n, (b, a) in zip(x.shape[1:-1], pads)]
    xp = np.zeros((x.shape[0], *padded, channels))
    xp[(slice(None),) + tuple(slice(b, b + n) for n, (b, _) in zip(x.shape[1:-1], pads))] = x
    span = [d * (k - 1) + 1 for k, d in zip(kernel_size, dilation)]
    out = [(p - s) // st + 1 for p, s, st in zip(padded, span, stride)]
    y = np.zeros((x.shape[0], *out, channels * multiplier))
    for b in range(x.shape[0]):
        for position in itertools.product(*(range(o) for o in out)):
            for c in range(channels):
                for m in range(multiplier):
                    total = 0.0 if bias is None else bias[c * multiplier + m]
                    for tap in itertools.product(*(range(k) for k in kernel_size)):
                        cell = tuple(p * st + t * d for p, st, t, d in zip(position, stride, tap, dilation))
                        total += xp[(b, *cell, c)] * kernel[(*tap, c, m)]
                    y[(b, *position, c * multiplier + m)] = total
    return y


def pointwise(x, kernel, bias):
    """A 1x1 convolution looped: ``kernel`` (*1, C, F) applied to every position of x (N, *S, C)."""
    kernel = kernel.reshape(kernel.shape[-2:])
    y = np.zeros(x.shape[:-1] + (kernel.shape[1],))
    for index in itertools.product(*(range(n) for n in x.shape[:-1])):
        for f in range(kernel.shape[1]):
            y[index + (f,)] = sum(x[index + (c,)] * kernel[c, f] for c in range(kernel.shape[0])) + (
                0 if bias is None else bias[f])
    return y


def standardise(values, epsilon):
    """``(v - mean) / sqrt(var + epsilon)`` of a flat list, mean and biased variance summed by hand."""
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return [(v - mean) / (variance + epsilon) ** 0.5 for v in values]


def group_norm(x, groups, gamma, beta, epsilon):
    """Group normalisation, one sample and one group at a time."""
    y = np.zeros(x.shape)
    channels = x.shape[-1]
    per = channels // groups
    for b in range(x.shape[0]):
        for g in range(groups):
            cells = [index for index in itertools.product(*(range(n) for n in x.shape[1:-1]))]
            keys = [(b, *cell, c) for cell in cells for c in range(g * per, (g + 1) * per)]
            for key, value in zip(keys, standardise([x[k] for k in keys], epsilon)):
                y[key] = value * gamma[key[-1]] + beta[key[-1]]
    return y


def layer_norm(x, axes, gamma, beta, epsilon):
    """Layer normalisation over ``axes`` (sorted ints of the batch shape, not 0), one sample and one
    setting of the other axes at a time; gamma and beta have the sizes of ``axes``."""
    y = np.zeros(x.shape)
    others = [a for a in range(1, x.ndim) if a not in axes]
    for b in range(x.shape[0]):
        for rest in itertools.product(*(range(x.shape[a]) for a in others)):
            keys = []
            for inner in itertools.product(*(range(x.shape[a]) for a in axes)):
                key = [b] + [0] * (x.ndim - 1)
                for a, i in zip(others, rest):
                    key[a] = i
                for a, i in zip(axes, inner):
                    key[a] = i
                keys.append((tuple(key), inner))
            for (key, inner), value in zip(keys, standardise([x[k] for k, _ in keys], epsilon)):
                y[key] = value * gamma[inner] + beta[inner]
    return y


def zero_pad(x, pairs):
    """A larger zero array with ``x`` copied in cell by cell."""
    shape = (x.shape[0], *(n + b + a for n, (b, a) in zip(x.shape[1:-1], pairs)), x.shape[-1])
    y = np.zeros(shape)
    for index in itertools.product(*(range(n) for n in x.shape)):
        y[(index[0], *(i + b for i, (b, _) in zip(index[1:-1], pairs)), index[-1])] = x[index]
    return y


def crop(x, pairs):
    """The inner cells of ``x`` copied one by one."""
    shape = (x.shape[0], *(n - b - a for n, (b, a) in zip(x.shape[1:-1], pairs)), x.shape[-1])
    y = np.zeros(shape)
    for index in itertools.product(*(range(n) for n in shape)):
        y[index] = x[(index[0], *(i + b for i, (b, _) in zip(index[1:-1], pairs)), index[-1])]
    return y


def permute(x, dims):
    """``y[b, i_d1, i_d2, ...] = x[b, i_1, i_2, ...]`` cell by cell (``dims`` numbered from 1)."""
    y = np.zeros((x.shape[0], *(x.shape[d] for d in dims)))
    for index in itertools.product(*(range(n) for n in x.shape)):
        y[(index[0], *(index[d] for d in dims))] = x[index]
    return y

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

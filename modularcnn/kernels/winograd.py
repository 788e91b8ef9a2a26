"""A 3×3, stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3), and its two gradients.

A direct convolution spends 9 multiplications per input channel on each output pixel. Winograd's
algorithm computes a 2×2 block of outputs from the 4×4 input tile under it with 16 multiplications
instead of 36, by moving tile and kernel into a basis where the convolution is an element-wise product
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)::

    V = Bᵀ d B        input tile d (4×4)  ->  16 values per tile and channel
    U = G g Gᵀ        kernel g (3×3)      ->  16 values per channel and filter
    M[ξ] = Σ_c V[ξ] U[ξ]                  ->  16 matrix products, one per basis element ξ
    Y = Aᵀ M A        M (4×4)             ->  the 2×2 outputs

Summed over channels, each ξ is one matrix product ``(T, C) @ (C, F)`` over all ``T`` tiles, so the
three products of a training step (forward, kernel gradient, input gradient) do 16/36 of the direct
method's arithmetic, at the price of the transforms (additions over planes of the tiles). For the Keras
MNIST example's second layer (32 channels, 64 filters, batch 32) the three products took 3.8 ms instead
of 7.7 ms, already at the core's peak, and the fused conv + ReLU + pool step (forward and backward)
went from 9.7 to 6.8 ms.

Shapes: the padded input is ``(N, 2·th + 2, 2·tw + 2, C)``; it has ``th × tw`` tiles per sample,
``T = N·th·tw`` in all, in the row-major order ``(n, i, j)``. Tile ``(n, i, j)`` reads rows ``2i .. 2i+3``
and columns ``2j .. 2j+3`` and gives outputs ``(2i + a, 2j + b)`` for ``a, b`` in ``{0, 1}``.
Transformed arrays keep the 16 basis elements first: ``V`` is ``(16, T, C)``, ``U`` is ``(16, C, F)``,
``M`` is ``(16, T, F)``, and the outputs are the four planes ``(4, T, F)`` of positions ``(a, b)``.

Each transform works one axis at a time. Along rows, the four rows of every tile are whole rows of the
input, long contiguous runs. Along columns, a tile's columns ``2j .. 2j+3`` are ``C`` values apart,
and NumPy handles runs of ``C`` values several times slower than long runs. So the padded input is
stored with its even and odd columns apart, *split*: ``(N, Hp, 2, Wp/2, C)``. Then the columns
``2j, 2j+1, 2j+2, 2j+3`` of all tiles ``j`` of a row are four contiguous runs (even ``j``, odd ``j``,
even ``j+1``, odd ``j+1``), and only :func:`split_columns` and :func:`merge_columns` move runs of ``C``.
"""

import numpy as np

from .windows import padded_shape
from .workspace import scratch


def _along(first, second, third, fourth, out):
    """``out[k] = (Bᵀ [first, second, third, fourth])[k]``: the input transform along one axis."""
    np.subtract(first, third, out=out[0])
    np.add(second, third, out=out[1])
    np.subtract(third, second, out=out[2])
    np.subtract(second, fourth, out=out[3])


def _column_parities(width, pad_before):
    """For each parity ``p`` of the padded columns: ``(first, count, slot)`` — the input columns
    ``first, first + 2, ...`` (``count`` of them) land at padded columns ``2·slot + p, 2·(slot+1) + p, ...``."""
    parities = []
    for parity in (0, 1):
        first = (parity - pad_before) % 2
        count = len(range(first, width, 2))
        parities.append((first, count, (first + pad_before) // 2))
    return parities


def split_shape(x_shape, pads):
    """Shape of ``x_shape`` (N, H, W, C) padded by ``pads`` and split: ``(N, Hp, 2, Wp/2, C)``."""
    _, height, width, channels = padded_shape(x_shape, pads)
    return (x_shape[0], height, 2, width // 2, channels)


def split_columns(x, pads, out):
    """Pad ``x`` (N, H, W, C) by ``pads`` (as convolutions give them) into ``out``, split:
    ``out[n, r, p, k]`` is padded cell ``(r, 2k + p)``. Only the interior is written: ``out`` must
    hold zeros elsewhere (a workspace array filled once)."""
    (top, _), (left, _) = pads
    rows = slice(top, top + x.shape[1])
    for parity, (first, count, slot) in enumerate(_column_parities(x.shape[2], left)):
        out[:, rows, parity, slot:slot + count] = x[:, :, first::2]
    return out


def merge_columns(split, pads, out):
    """The inverse of :func:`split_columns`: the interior of ``split`` (N, Hp, 2, Wp/2, C) as
    ``out`` (N, H, W, C)."""
    (top, _), (left, _) = pads
    rows = slice(top, top + out.shape[1])
    for parity, (first, count, slot) in enumerate(_column_parities(out.shape[2], left)):
        out[:, :, first::2] = split[:, rows, parity, slot:slot + count]
    return out


def input_transform(split, tiles, out=None, workspace=None):
    """``V = Bᵀ d B`` for every 4×4 tile ``d`` of the split padded input ``split`` (N, 2·th+2, 2,
    tw+1, C): ``(16, T, C)``.

    ``tiles`` is ``(th, tw)``; the result goes into ``out`` when given, temporaries into ``workspace``.
    """
    batch, _, _, half_width, channels = split.shape
    th, tw = tiles
    rows = scratch(workspace, "winograd_rows", (4, batch, th, 2, half_width, channels),
                   split.dtype)                                        # Bᵀ d, whole rows
    _along(*(split[:, r:r + 2 * th:2] for r in range(4)), out=rows)
    if out is None:
        out = np.empty((16, batch * th * tw, channels), split.dtype)
    planes = out.reshape(4, 4, batch, th, tw, channels)
    even, odd = rows[:, :, :, 0], rows[:, :, :, 1]
    _along(even[..., :tw, :], odd[..., :tw, :], even[..., 1:, :], odd[..., 1:, :],
           out=planes.transpose(1, 0, 2, 3, 4, 5))
    return out


def _kernel_along(first, second, third):
    """``G [first, second, third]``: the kernel transform along one axis (four values)."""
    half_sum = (first + third) * 0.5
    half_second = second * 0.5
    return [first, half_sum + half_second, half_sum - half_second, third]


def kernel_transform(kernel):
    """``U = G g Gᵀ`` for the kernel ``(3, 3, C, F)``: ``(16, C, F)``."""
    rows = _kernel_along(kernel[0], kernel[1], kernel[2])              # four (3, C, F)
    planes = [plane for row in rows for plane in _kernel_along(row[0], row[1], row[2])]
    return np.stack(planes).astype(kernel.dtype, copy=False)


def kernel_transform_adjoint(d_transformed):
    """The kernel gradient ``(3, 3, C, F)`` from the gradient of ``U``, ``(16, C, F)`` (``Gᵀ dU G``)."""
    def along(first, second, third, fourth):
        half_sum, half_difference = (second + third) * 0.5, (second - third) * 0.5
        return [first + half_sum, half_difference, half_sum + fourth]

    planes = d_transformed.reshape(4, 4, *d_transformed.shape[1:])
    rows = along(planes[0], planes[1], planes[2], planes[3])           # three (4, C, F)
    return np.stack([np.stack(along(row[0], row[1], row[2], row[3])) for row in rows])


def output_transform(products, workspace=None):
    """The outputs ``Y = Aᵀ M A`` from ``M`` (16, T, F): the four planes ``(4, T, F)`` of positions
    ``(0, 0), (0, 1), (1, 0), (1, 1)`` of every 2×2 output block (in ``workspace`` when given)."""
    m = products.reshape(4, 4, *products.shape[1:])
    rows = scratch(workspace, "winograd_output_rows", (2, 4, *products.shape[1:]),
                   products.dtype)                                     # Aᵀ M
    np.add(m[0], m[1], out=rows[0])
    rows[0] += m[2]
    np.subtract(m[1], m[2], out=rows[1])
    rows[1] -= m[3]
    y = scratch(workspace, "winograd_output", (2, 2, *products.shape[1:]), products.dtype)
    np.add(rows[:, 0], rows[:, 1], out=y[:, 0])
    y[:, 0] += rows[:, 2]
    np.subtract(rows[:, 1], rows[:, 2], out=y[:, 1])
    y[:, 1] -= rows[:, 3]
    return y.reshape(4, *products.shape[1:])


def output_transform_adjoint(dy, workspace=None):
    """The gradient of ``M``, ``(16, T, F)``, from that of the four output planes ``dy`` (4, T, F)
    (``A dY Aᵀ``; in ``workspace`` when given)."""
    blocks = dy.reshape(2, 2, *dy.shape[1:])
    rows = scratch(workspace, "winograd_d_output_rows", (4, 2, *dy.shape[1:]), dy.dtype)  # A dY
    rows[0] = blocks[0]
    np.add(blocks[0], blocks[1], out=rows[1])
    np.subtract(blocks[0], blocks[1], out=rows[2])
    np.negative(blocks[1], out=rows[3])
    out = scratch(workspace, "winograd_d_products", (16, *dy.shape[1:]), dy.dtype)
    d = out.reshape(4, 4, *dy.shape[1:])
    d[:, 0] = rows[:, 0]
    np.add(rows[:, 0], rows[:, 1], out=d[:, 1])
    np.subtract(rows[:, 0], rows[:, 1], out=d[:, 2])
    np.negative(rows[:, 1], out=d[:, 3])
    return out


def _scatter(d_first, d_second, d_third, d_fourth, at, tail):
    """Add ``B [d_first .. d_fourth]`` (the input transform's adjoint along one axis) to the four
    offsets of every tile: ``at`` holds the four target views, ``tail`` the cells past the last tile's
    first two (only offsets 2 and 3 reach them).

    Offsets 0 and 1 of consecutive tiles never overlap, so they are assigned; 2 and 3 are added.
    """
    tail[...] = 0
    at[0][...] = d_first
    np.subtract(d_second, d_third, out=at[1])
    at[1][...] += d_fourth
    at[2][...] += d_second + d_third - d_first
    at[3][...] -= d_fourth


def input_transform_adjoint(d_transformed, split_shape, tiles, out=None, workspace=None):
    """The gradient of the split padded input ``(N, 2·th+2, 2, tw+1, C)`` from that of ``V``,
    ``(16, T, C)``: ``B dV Bᵀ`` for every tile, summed where tiles overlap. It is written into ``out``
    when given (every element is), else into a new array; temporaries go into ``workspace``."""
    batch, _, _, half_width, channels = split_shape
    th, tw = tiles
    d = d_transformed.reshape(4, 4, batch, th, tw, channels)
    rows = scratch(workspace, "winograd_d_rows", (4, batch, th, 2, half_width, channels),
                   d_transformed.dtype)
    even, odd = rows[:, :, :, 0], rows[:, :, :, 1]
    _scatter(d[:, 0], d[:, 1], d[:, 2], d[:, 3],                       # columns, for each row
             at=(even[..., :tw, :], odd[..., :tw, :], even[..., 1:, :], odd[..., 1:, :]),
             tail=rows[..., tw:, :])
    if out is None:
        out = np.empty(split_shape, d_transformed.dtype)
    _scatter(rows[0], rows[1], rows[2], rows[3],
             at=[out[:, r:r + 2 * th:2] for r in range(4)], tail=out[:, 2 * th:])
    return out

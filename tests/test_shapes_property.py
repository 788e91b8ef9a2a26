"""Property test: for random geometries, forward output shapes equal compute_output_shape."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modularcnn.layers import AveragePooling, Convolutional, MaxPooling


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2)))
    h = draw(st.integers(kh, 12))
    w = draw(st.integers(kw, 12))
    c = draw(st.integers(1, 3))
    return (kh, kw), (sh, sw), pad, (h, w, c)


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(1, 3))
def test_conv_output_shape(geometry, batch):
    kernel, stride, pad, shape = geometry
    layer = Convolutional(2, kernel, stride, pad)
    layer.build(shape)
    y = layer.forward(np.zeros((batch,) + shape, dtype=np.float32))
    assert y.shape == (batch,) + layer.compute_output_shape(shape) == (batch,) + layer.output_shape
    if pad == "same":
        assert y.shape[1:3] == (-(-shape[0] // stride[0]), -(-shape[1] // stride[1]))


@settings(max_examples=60, deadline=None)
@given(geometries(), st.booleans())
def test_pool_output_shape(geometry, use_max):
    kernel, stride, pad, shape = geometry
    if isinstance(pad, int) and pad >= min(kernel):
        pad = 0
    layer = (MaxPooling if use_max else AveragePooling)(kernel, stride, pad)
    layer.build(shape)
    y = layer.forward(np.random.default_rng(0).random((2,) + shape))
    assert y.shape == (2,) + layer.output_shape
    assert np.all(np.isfinite(y))

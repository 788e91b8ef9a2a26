"""Input(...) and symbolic tensors: shapes, errors at the call, and Net accepting an Input first."""

import numpy as np
import pytest

import modularcnn as mc
from modularcnn.layers import Conv2D, Dense, Flatten, InputLayer, MaxPooling2D


def test_input_is_a_symbolic_tensor_with_keras_shape():
    x = mc.Input((28, 28, 1), name="image")
    assert x.shape == (None, 28, 28, 1)
    assert x.dtype == np.float32
    assert x.name == "image"
    assert isinstance(x.node.layer, InputLayer)
    assert mc.Input(shape=(5,), dtype="float64").dtype == np.float64
    assert mc.Input(batch_shape=(None, 4, 3)).shape == (None, 4, 3)


@pytest.mark.parametrize("bad", [dict(), dict(shape=(0, 3)), dict(shape=(3,), dtype="int32"),
                                 dict(shape=(3,), batch_size=0), dict(shape=(3,), sparse=True)])
def test_input_refuses_bad_arguments(bad):
    with pytest.raises(ValueError):
        mc.Input(**bad)


def test_calling_a_layer_infers_shapes_and_records_a_node():
    x = mc.Input((9, 7, 2))
    conv = Conv2D(4, 3, strides=2)
    y = conv(x)
    assert y.shape == (None, 4, 3, 4)
    assert y.node.layer is conv and y.node.inputs == [x]
    z = Dense(5)(Flatten()(MaxPooling2D(2)(y)))
    assert z.shape == (None, 5)


def test_errors_at_the_call_name_the_layer_and_the_shapes():
    x = mc.Input((6, 6, 1))
    with pytest.raises(ValueError, match=r"big.*\(None, 6, 6, 1\)"):
        Conv2D(2, 9, name="big")(x)
    dense = Dense(3, name="shared")
    dense(Flatten()(x))
    with pytest.raises(ValueError, match=r"shared.*\(None, 36\).*\(None, 6, 6, 1\)"):
        dense(x)
    with pytest.raises(ValueError, match="one input tensor"):
        Dense(2)([x, x])


def test_calling_a_layer_on_an_array_runs_it_in_inference():
    dense = Dense(4, activation="relu")
    x = np.random.default_rng(0).normal(size=(3, 5))
    y = dense(x)
    assert y.shape == (3, 4) and dense.dtype == np.float64
    np.testing.assert_allclose(y, np.maximum(x @ dense.params["kernel"] + dense.params["bias"], 0))
    with pytest.raises(TypeError):
        np.asarray(mc.Input((3,)))


def test_net_takes_an_input_first_in_its_list_or_in_add():
    net = mc.Net(layers=[mc.Input((8, 8, 1)), Conv2D(2, 3), Flatten(), Dense(3)])
    assert net.input_shape == (8, 8, 1)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv2D", "Flatten", "Dense"]
    other = mc.Net()
    other.add(mc.Input((4,), dtype="float64"))
    other.add(Dense(2))
    assert other.dtype == np.float64 and other.predict(np.ones((2, 4))).dtype == np.float64
    with pytest.raises(ValueError, match="first"):
        other.add(mc.Input((4,)))
    with pytest.raises(ValueError, match="disagrees"):
        mc.Net(input_shape=(3,), layers=[mc.Input((4,))])
    with pytest.raises(ValueError, match="Model"):
        mc.Net().add(Dense(2)(mc.Input((3,))))
    # The config and a saved file are those of a Net without the Input: nothing new to store.
    assert net.get_config()["input_shape"] == [8, 8, 1]

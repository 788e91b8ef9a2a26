"""Argument validation (issue 14 items 6, 11, 15): one helper module, the same rules in every layer,
Net and fit; errors are the library's ArgumentError (a ValueError) naming owner, argument and value."""

import numpy as np
import pytest

from modularcnn import Net, callbacks, validation
from modularcnn.errors import ArgumentError
from modularcnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Reshape


def small_net(seed=0):
    net = Net(input_shape=(4,), seed=seed)
    net.add(Dense(3, activation="softmax"))
    net.compile()
    return net


@pytest.mark.parametrize("make, words", [
    (lambda: Dense(None), "Dense: units must be a positive int, got None"),
    (lambda: Dense(28.7), "Dense: units must be a positive int, got 28.7"),
    (lambda: Dense(True), "Dense: units must be a positive int, got True"),
    (lambda: Dropout("0.5"), "Dropout: rate must be a number in [0, 1), got '0.5'"),
    (lambda: Dropout(None), "Dropout: rate"),
    (lambda: Dropout(float("nan")), "Dropout: rate"),
    (lambda: BatchNormalization(momentum="x"), "BatchNormalization: momentum"),
    (lambda: Reshape(None), "Reshape: target_shape"),
    (lambda: Conv2D(filters=3, padding=((1,), (2,))), "Conv2D: padding"),
    (lambda: Conv2D(filters=3, kernel_size="3"), "Conv2D: filter_size"),
    (lambda: Net(input_shape="abc"), "Net: input_shape"),
    (lambda: Net(input_shape=28), "such as (28,)"),
    (lambda: Net(input_shape=(None, 28, 1)), "Net: input_shape"),
    (lambda: Net(input_shape=(float("nan"), 2, 1)), "Net: input_shape"),
    (lambda: Net(input_shape=(-1,)), "Net: input_shape"),
    (lambda: Net(input_shape=(28.7,)), "Net: input_shape"),
    (lambda: Net(seed="abc"), "Net: seed"),
    (lambda: Net(seed=1.5), "Net: seed"),
    (lambda: Net(seed=-1), "Net: seed"),
    (lambda: Net(dtype="bogus"), "Net: dtype"),
    (lambda: Net(dtype=None), "Net: dtype"),
    (lambda: callbacks.EarlyStopping(patience=-1), "EarlyStopping: patience"),
])
def test_bad_arguments_raise_argument_error_naming_owner_and_value(make, words):
    with pytest.raises(ArgumentError) as caught:
        make()
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_numpy_integers_are_accepted_alike_by_dense_and_conv():
    assert Conv2D(filters=np.int64(3)).filters == 3
    assert type(Conv2D(filters=np.int64(3)).filters) is int
    assert Dense(np.int32(5)).units == 5
    assert Net(input_shape=(np.int64(28), 28, 1)).input_shape == (28, 28, 1)
    assert Net(seed=np.uint8(3)).seed == 3


def test_oversized_layers_get_a_clear_error_not_a_memory_error():
    net = Net(input_shape=(784,))
    with pytest.raises(ArgumentError, match="MAX_ARRAY_ELEMENTS"):
        net.add(Dense(10**9))
    # the network is unchanged and the refused layer is not left half built
    assert net.layers == []
    conv_net = Net(input_shape=(28, 28, 1))
    layer = Conv2D(filters=10**9)
    with pytest.raises(ArgumentError, match="kernel"):
        conv_net.add(layer)
    assert not layer.built and layer.params == {}


def test_evaluate_and_predict_refuse_batch_size_zero_like_fit():
    net = small_net()
    x, y = np.ones((5, 4), np.float32), np.zeros(5, int)
    for call in (lambda: net.evaluate(x, y, batch_size=0), lambda: net.predict(x, batch_size=0),
                 lambda: net.fit(x, y, batch_size=0, verbose=0)):
        with pytest.raises(ArgumentError, match="batch_size must be a positive int, got 0"):
            call()


def test_test_on_batch_with_a_scalar_is_a_clear_error():
    with pytest.raises(ValueError, match="expected input of shape"):
        small_net().test_on_batch(3.0, 1)


def test_fit_accepts_a_single_callback_and_refuses_other_objects():
    net = small_net()
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), np.arange(8) % 3
    history = callbacks.History()
    net.fit(x, y, epochs=2, callbacks=history, verbose=0)
    assert history.epoch == [0, 1]
    with pytest.raises(ArgumentError, match="Net.fit: callbacks"):
        net.fit(x, y, callbacks="history", verbose=0)


def test_an_unknown_monitor_is_refused_before_the_first_epoch():
    net = small_net()
    before = net.get_weights()
    x, y = np.ones((8, 4), np.float32), np.arange(8) % 3
    with pytest.raises(ArgumentError, match="'val_acuracy', which is not logged"):
        net.fit(x, y, epochs=1, validation_split=0.25, verbose=0,
                callbacks=[callbacks.EarlyStopping(monitor="val_acuracy")])
    for old, new in zip(before, net.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("bad, words", [
    (np.nan, "contain nan"), (np.inf, "contain inf"), (1.5, "must lie in [0, 1]"),
    (-0.5, "must lie in [0, 1]"),
])
def test_bad_one_hot_labels_are_refused_before_any_weight_changes(bad, words):
    net = small_net()
    before = net.get_weights()
    x = np.ones((4, 4), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    y[2, 1] = bad
    for call in (lambda: net.fit(x, y, verbose=0), lambda: net.train_on_batch(x, y)):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            call()
    for old, new in zip(before, net.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_one_hot_rows_must_sum_to_one():
    net = small_net()
    y = np.array([[1, 1, 0], [0, 1, 0]], np.float32)
    with pytest.raises(ValueError, match="row 0 sums to 2"):
        net.train_on_batch(np.ones((2, 4)), y)


def test_nan_class_id_message_quotes_the_nan():
    with pytest.raises(ValueError, match="got nan at index 1"):
        small_net().train_on_batch(np.ones((3, 4)), np.array([0.0, np.nan, 2.0]))


def test_checkers_directly():
    assert validation.probability(np.float32(0.25), "rate", "X") == 0.25
    assert validation.shape_tuple([3, 4], "s", "X") == (3, 4)
    assert validation.float_dtype("float64", "dtype", "X") == np.float64
    assert validation.int_tuple(2, 3, "size", "X") == (2, 2, 2)
    with pytest.raises(ArgumentError, match="X: flag must be True or False, got 'False'"):
        validation.boolean("False", "flag", "X")
    with pytest.raises(ArgumentError):
        validation.positive_int(np.bool_(True), "n", "X")
    with pytest.raises(ArgumentError):
        validation.array_elements((2**20, 2**12), "kernel", "X")
    assert Flatten().trainable is True

"""Issue 14 item 15: finite data that overflows the arithmetic (``x * 1e30``) is refused on the first
step, before any weight, optimizer slot or moving statistic changes; a later divergence warns."""

import warnings

import numpy as np
import pytest

from modularcnn import Net, callbacks, optimizers
from modularcnn import NonFiniteLossError
from modularcnn.layers import BatchNormalization, Convolutional, Dense, Flatten
from modularcnn.training import strategies
from modularcnn.training.finite import step_problem


def small_net(batch_norm=False, loss="sparse_categorical_crossentropy"):
    net = Net(input_shape=(8, 7, 1), seed=1)
    net.add(Convolutional(4, 3, activation="relu"))
    if batch_norm:
        net.add(BatchNormalization(momentum=0.5))
    net.add(Flatten())
    net.add(Dense(10, activation="softmax" if loss != "mse" else None))
    net.compile(optimizer="adam", loss=loss)
    return net


def data(rows=24):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (rows, 8, 7, 1)).astype(np.float32), rng.integers(0, 10, rows)


def state(net):
    return [w.copy() for w in net.get_weights()]


def assert_unchanged(net, before):
    after = net.get_weights()
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    assert net.optimizer.iterations == 0 and not net.optimizer._slots  # no Adam moment written


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_x_times_1e30_is_refused_before_any_weight_changes(workers, loss):
    # Before the fix both losses trained to NaN weights without an error.
    net = small_net(loss=loss)
    x, y = data()
    y = np.eye(10, dtype=np.float32)[y] if loss == "mse" else y
    before = state(net)
    # NumPy's own overflow warnings come first (errors under this suite's warning filter)
    with pytest.raises(NonFiniteLossError) as info, np.errstate(over="ignore", invalid="ignore"):
        net.fit(x * np.float32(1e30), y, epochs=2, batch_size=8, verbose=0, workers=workers)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("Net.fit: ") and "first batch" in message
    assert "no weight was changed" in message and "inputs reach 1e+30" in message
    assert "float32" in message and "scale the data" in message
    assert_unchanged(net, before)
    # the network (and a pool it used) still trains on sensible data
    net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=workers)
    assert all(np.isfinite(w).all() for w in net.get_weights())
    strategies.close_pool(net)


def test_train_on_batch_refuses_it_too_and_puts_back_the_moving_statistics():
    net = small_net(batch_norm=True, loss="mse")
    x, y = data(6)
    before = state(net)  # moving mean and variance included
    # batch norm rescales the inputs, so the overflow comes from the targets here
    with pytest.raises(NonFiniteLossError, match=r"Net.train_on_batch: the loss is inf .* targets "
                                                 r"reach 1e\+30"), \
            np.errstate(over="ignore", invalid="ignore"):
        net.train_on_batch(x, np.eye(10, dtype=np.float32)[y] * np.float32(1e30))
    assert_unchanged(net, before)


def test_a_later_divergence_warns_once_and_trains_on_as_keras_does():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 6)).astype(np.float32) * 1e3
    y = rng.standard_normal(64).astype(np.float32)
    net = Net(input_shape=(6,), seed=0)
    net.add(Dense(1))
    net.compile(optimizer=optimizers.SGD(1e3), loss="mse", metrics=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            history = net.fit(x, y, epochs=4, batch_size=8, verbose=0)
    ours = [w for w in caught if "the loss became" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert "TerminateOnNaN" in str(ours[0].message) and ours[0].filename == __file__
    assert len(history.epoch) == 4
    # TerminateOnNaN still stops such a run
    net = Net(input_shape=(6,), seed=0)
    net.add(Dense(1))
    net.compile(optimizer=optimizers.SGD(1e3), loss="mse", metrics=[])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            history = net.fit(x, y, epochs=50, batch_size=8, verbose=0,
                              callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.epoch) < 50


def test_step_problem_names_what_is_wrong():
    fine = {"d/kernel": np.ones((3, 2), np.float32)}
    assert step_problem(1.5, fine) is None
    assert step_problem(float("nan"), fine) == "the loss is nan"
    assert step_problem(None, {"d/kernel": np.array([1.0, np.inf], np.float32)}) == \
        "the gradient of 'd/kernel' is not finite"
    big = np.array([1.0, 3e19], np.float32)  # its square overflows float32, Adam's v would be inf
    assert "reaches 3e+19, too large to square in float32" in step_problem(None, {"w": big})
    assert step_problem(None, {"w": big.astype(np.float64)}) is None  # float64 squares it fine
    # Many values whose squares fit but whose sum of squares overflows float32: Adam squares them one
    # by one, so the step is fine.
    many = np.full(100_000, 1e17, np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.dot(many, many))
    assert step_problem(None, {"w": many}) is None


def test_a_strategy_whose_step_takes_no_check_finite_still_trains():
    # Strategy.open's protocol gained check_finite; a user's strategy written before it keeps working.
    import contextlib

    from modularcnn.training.strategies import SingleProcess

    class Plain(SingleProcess):
        name = "plain"

        @contextlib.contextmanager
        def open(self, net, batch_size, y_sample):
            with SingleProcess.open(self, net, batch_size, y_sample) as step:
                yield lambda x, y, sample_weight=None: step(x, y, sample_weight)

    net = small_net()
    x, y = data()
    history = net.fit(x, y, epochs=1, batch_size=8, verbose=0, strategy=Plain())
    assert np.isfinite(history.history["loss"][0])

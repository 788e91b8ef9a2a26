"""The optimizer step shared out among data-parallel workers (parameter_shards, sharded_update): the
shares cover every element once, updating by ranges is bit for bit ``apply``, and ``fit(workers=2)``
with the update in the workers gives exactly the weights and state of the update in this process."""

import numpy as np
import pytest

from modularcnn import Net, optimizers, schedules
from modularcnn.callbacks import Callback
from modularcnn.layers import Dense
from modularcnn.parameter_shards import MIN_RANGE_ELEMENTS, MIN_SHARDED_ELEMENTS, share_out
from modularcnn.training.strategies import close_pool, local
from modularcnn.training.strategies.sharded_update import sharded_update

# Every optimizer of modularcnn, in the settings whose update differs.
OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.05}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"weight_decay": 0.01}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {"initial_accumulator_value": 0.3}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
    ("Lion", {"weight_decay": 0.1}),
]


def covered(shares, sizes):
    """How many times each element of each array is in some range."""
    counts = {key: np.zeros(size, dtype=int) for key, size in sizes.items()}
    for share in shares:
        for key, start, stop in share:
            counts[key][start:stop] += 1
    return counts


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_the_shares_cover_every_element_exactly_once(parts):
    sizes = {"a/kernel": 401_408, "a/bias": 512, "b/kernel": 131_072 + 7, "b/bias": 256,
             "c/kernel": MIN_RANGE_ELEMENTS * 2 - 1, "c/bias": 10}
    shares = share_out(sizes, parts)
    assert len(shares) == parts
    for key, count in covered(shares, sizes).items():
        assert (count == 1).all(), key
    loads = [sum(stop - start for _, start, stop in share) for share in shares]
    assert max(loads) - min(loads) <= max(sizes.values()) // parts + 1  # roughly balanced
    for share in shares:  # each participant's ranges keep the arrays' order
        order = [list(sizes).index(key) for key, _, _ in share]
        assert order == sorted(order)


def test_small_arrays_go_whole_and_small_totals_are_not_split():
    sizes = {"k": MIN_RANGE_ELEMENTS * 8, "small": MIN_RANGE_ELEMENTS - 1}
    shares = share_out(sizes, 2)
    assert [entry for share in shares for entry in share if entry[0] == "small"] == [
        ("small", 0, MIN_RANGE_ELEMENTS - 1)]
    assert share_out({"k": MIN_SHARDED_ELEMENTS - 1}, 2) is None
    assert share_out({"k": MIN_SHARDED_ELEMENTS * 4}, 1) is None


def parameters(dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"d1/kernel": (300, 250), "d1/bias": (250,), "d2/kernel": (250, 7), "d2/bias": (7,)}
    return {key: rng.standard_normal(shape).astype(dtype) for key, shape in shapes.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_updating_by_ranges_is_bit_for_bit_apply(name, kwargs, dtype):
    whole = optimizers.get({"class_name": name, "config": kwargs})
    shared = optimizers.get({"class_name": name, "config": kwargs})
    assert shared.elementwise
    params_a, params_b = parameters(dtype), parameters(dtype)
    sizes = {key: value.size for key, value in params_a.items()}
    # Ranges small enough that every kernel is cut: the threshold is about speed, not correctness.
    shares = [[(key, start, stop) for key, start, stop in share]
              for share in _cut(sizes, 3)]
    shared.build(params_b)
    rng = np.random.default_rng(5)
    for _ in range(4):
        grads = {key: rng.standard_normal(value.shape).astype(dtype) for key, value in params_a.items()}
        whole.apply(params_a, grads)
        lr = shared.current_learning_rate
        for share in shares:  # each participant, in turn, on the same state
            shared.update_ranges(params_b, grads, share, lr)
        shared.iterations += 1
    for key in params_a:
        assert np.array_equal(params_a[key], params_b[key]), key
    state_a, state_b = whole.get_state(), shared.get_state()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert np.array_equal(state_a[key], state_b[key]), key


def _cut(sizes, parts):
    """Every array cut into ``parts`` ranges, dealt out round-robin."""
    shares = [[] for _ in range(parts)]
    for key, size in sizes.items():
        bounds = [size * i // parts for i in range(parts + 1)]
        for part, (start, stop) in enumerate(zip(bounds, bounds[1:])):
            shares[part].append((key, start, stop))
    return shares


def test_adagrad_starts_its_accumulator_once():
    adagrad = optimizers.Adagrad(initial_accumulator_value=0.25)
    params = parameters("float64")
    adagrad.build(params)
    grads = {key: np.ones_like(value) for key, value in params.items()}
    adagrad.update_ranges(params, grads, [("d1/kernel", 0, 100)], 0.1)
    accumulator = adagrad.get_state()["accumulator/d1/kernel"].reshape(-1)
    assert np.allclose(accumulator[:100], 1.25) and np.allclose(accumulator[100:], 0.25)


def test_a_subclass_that_overrides_the_update_is_not_elementwise_unless_it_says_so():
    class Clipped(optimizers.SGD):
        def _update(self, key, param, grad, lr):
            super()._update(key, param, grad / max(1.0, np.abs(grad).max()), lr)

    class Declared(optimizers.SGD):
        elementwise = True

        def _update(self, key, param, grad, lr):
            super()._update(key, param, np.clip(grad, -1, 1), lr)

    class Plain(optimizers.Adam):
        pass

    assert not Clipped().elementwise and Declared().elementwise and Plain().elementwise


def mlp(optimizer="adam", dtype="float64", seed=0, **dense):
    net = Net(input_shape=(300,), seed=seed, dtype=dtype)
    net.add(Dense(450, activation="relu", **dense))  # 140k weights: enough to share out
    net.add(Dense(10, activation="softmax"))
    net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return net


def test_what_keeps_the_update_in_this_process():
    assert sharded_update(mlp(), 2) is not None
    assert sharded_update(mlp(), 1) is None
    assert sharded_update(mlp(optimizers.Adam(clipnorm=1.0)), 2) is None
    assert sharded_update(mlp(optimizers.SGD(global_clipnorm=1.0)), 2) is None
    assert sharded_update(mlp(kernel_regularizer="l2"), 2) is None

    class Mine(optimizers.Adam):   # elementwise, but the workers could not rebuild it by name
        pass

    assert sharded_update(mlp(Mine()), 2) is None
    small = Net(input_shape=(20,), seed=0)
    small.add(Dense(10, activation="softmax"))
    small.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert sharded_update(small, 2) is None


def data(rows=96, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 300)), rng.integers(0, 10, rows)


class StateRoundTrip(Callback):
    """Reads and restores the optimizer's state mid-fit, as a checkpoint callback would."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 3:
            optimizer = self.model.optimizer
            state = optimizer.get_state()
            state["m/dense_1/bias"] = state["m/dense_1/bias"] * 0.5
            optimizer.set_state(state)


def train(monkeypatch, in_workers, optimizer="adam", callbacks=()):
    """Two fits with 2 workers, the update in the workers or (patched off) in this process; returns
    the network and how many steps the workers updated."""
    steps = []
    with monkeypatch.context() as patch:
        if in_workers:
            original = local._Session._update_in_workers

            def counted(session, busy):
                steps.append(busy)
                return original(session, busy)

            patch.setattr(local._Session, "_update_in_workers", counted)
        else:
            patch.setattr(local, "sharded_update", lambda net, workers: None)
        if optimizer == "schedule":   # the learning rate changes at every step
            optimizer = optimizers.Adam(schedules.ExponentialDecay(0.01, decay_steps=3,
                                                                   decay_rate=0.5))
        net = mlp(optimizer)
        x, y = data()
        for _ in range(2):
            net.fit(x, y, epochs=2, batch_size=16, workers=2, verbose=0, callbacks=list(callbacks))
        close_pool(net)
    return net, steps


@pytest.mark.parametrize("optimizer", ["adam", "schedule", "rmsprop"])
def test_fit_with_the_update_in_the_workers_equals_the_update_here(monkeypatch, optimizer):
    a, steps = train(monkeypatch, True, optimizer)
    b, none = train(monkeypatch, False, optimizer)
    # 2 fits x 2 epochs x 6 batches; the first step of each fit is checked for finite values here.
    assert len(steps) == 22 and not none
    assert a.optimizer.iterations == b.optimizer.iterations == 24
    for key, value in b.trainable_params().items():
        assert np.array_equal(a.trainable_params()[key], value), key
    state_a, state_b = a.optimizer.get_state(), b.optimizer.get_state()
    assert state_a.keys() == state_b.keys()
    for key in state_b:
        assert np.array_equal(state_a[key], state_b[key]), key


def test_set_state_in_a_callback_reaches_the_workers(monkeypatch):
    a, steps = train(monkeypatch, True, callbacks=[StateRoundTrip()])
    b, _ = train(monkeypatch, False, callbacks=[StateRoundTrip()])
    reference, _ = train(monkeypatch, False)
    assert steps
    for key, value in b.trainable_params().items():
        assert np.array_equal(a.trainable_params()[key], value), key
    assert not np.array_equal(reference.trainable_params()["dense_1/bias"],
                              b.trainable_params()["dense_1/bias"])  # the callback did change it


def test_the_state_outlives_the_pool(monkeypatch):
    net, steps = train(monkeypatch, True)
    assert steps
    state = net.optimizer.get_state()
    for name, array in net.optimizer._slots.items():
        assert array.base is None, name  # a private copy, not a view of the shared block
    assert np.isfinite(state["v/dense_1/kernel"]).all() and state["v/dense_1/kernel"].any()
    x, y = data()
    before = net.optimizer.get_state()["m/dense_1/kernel"].copy()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)   # and one process goes on from it
    assert not np.array_equal(before, net.optimizer.get_state()["m/dense_1/kernel"])

"""Issue 14 item 16: a frozen BatchNormalization (``trainable=False``) trains in inference mode, as
in Keras 3: moving statistics unchanged, gamma/beta unchanged, outputs those of inference, and the
gradient that of the affine map; in one process, with ``workers=2`` and with ``train_on_batch``."""

import json
import os
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from modularcnn import Net, models
from modularcnn.gradcheck import gradcheck
from modularcnn.layers import BatchNormalization, Convolutional, Dense, Flatten, MaxPooling
from modularcnn.training import strategies


def frozen_net(freeze_at_construction=True, seed=5):
    """Conv -> BN (frozen) -> pool -> Dense -> BN (trainable) -> Dense, in float64, odd shapes."""
    net = Net(input_shape=(7, 5, 3), seed=seed, dtype="float64")
    net.add(Convolutional(4, 3, pad=1))
    net.add(BatchNormalization(momentum=0.5, trainable=not freeze_at_construction, name="frozen"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(5))
    net.add(BatchNormalization(momentum=0.7, name="free"))
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # Moving statistics far from the batch's, so that using either one shows.
    bn = net.get_layer("frozen")
    bn.params["moving_mean"][:] = [0.4, -0.3, 1.1, 0.0]
    bn.params["moving_variance"][:] = [2.0, 0.6, 1.5, 0.9]
    bn.params["gamma"][:] = [1.2, 0.8, -0.5, 1.0]
    bn.params["beta"][:] = [0.1, -0.2, 0.3, 0.05]
    if not freeze_at_construction:
        bn.trainable = False  # fine-tuning: frozen after the network was built
    return net


def data(rows=36, seed=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 7, 5, 3)) * 3 + 2, rng.integers(0, 3, rows)


def frozen_state(net):
    return {key: value.copy() for key, value in net.get_layer("frozen").params.items()}


@pytest.mark.parametrize("freeze_at_construction", [True, False], ids=["constructor", "after-build"])
def test_fit_leaves_a_frozen_layers_moving_statistics_and_affine_weights(freeze_at_construction):
    # Fails on the code before the fix: the moving statistics followed the batches.
    net = frozen_net(freeze_at_construction)
    before = frozen_state(net)
    free_before = net.get_layer("free").params["moving_mean"].copy()
    x, y = data()
    net.fit(x, y, epochs=2, batch_size=6, verbose=0)
    for key, value in frozen_state(net).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    # the trainable BN still learns its statistics
    assert not np.allclose(net.get_layer("free").params["moving_mean"], free_before)


def test_train_on_batch_leaves_a_frozen_layer_alone():
    net = frozen_net()
    before = frozen_state(net)
    x, y = data(9)
    net.train_on_batch(x, y)
    for key, value in frozen_state(net).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("rows", [1, 4])
def test_a_frozen_layer_outputs_in_training_what_it_outputs_in_inference(rows):
    layer = BatchNormalization(trainable=False)
    layer.dtype = np.dtype(np.float64)
    layer.build((3, 5, 7))
    rng = np.random.default_rng(0)
    for key in layer.params:
        layer.params[key][:] = rng.uniform(0.5, 2.0, 7)
    x = rng.standard_normal((rows, 3, 5, 7)) * 4 + 1
    trained = layer.forward(x, training=True)
    # The inference formula written out, not the layer's own inference path.
    p = layer.params
    expected = (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]
    np.testing.assert_allclose(trained, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(trained, layer.forward(x, training=False))
    dy = rng.standard_normal(x.shape)
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.backward(dy),
                               dy * p["gamma"] / np.sqrt(p["moving_variance"] + 1e-3), rtol=1e-13)
    assert layer.trainable_params == {}


@pytest.mark.parametrize("batch", [1, 3])
def test_gradient_through_a_frozen_layer_in_training_matches_finite_differences(batch):
    # No trainable BN after it: batch statistics there would make the upstream biases' true gradient
    # zero, which checks nothing.
    net = Net(input_shape=(7, 5, 3), seed=5, dtype="float64")
    net.add(Convolutional(4, 3, pad=1))
    net.add(BatchNormalization(trainable=False, name="frozen"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="tanh"))
    bn = net.get_layer("frozen")
    bn.params["moving_mean"][:] = [0.4, -0.3, 1.1, 0.0]
    bn.params["moving_variance"][:] = [2.0, 0.6, 1.5, 0.9]
    bn.params["gamma"][:] = [1.2, 0.8, -0.5, 1.0]
    # training=True: the frozen BN must be the affine map (batch 1 has zero batch variance, so the
    # batch-statistics path would give a gradient of almost nothing)
    errors = gradcheck(net, batch_size=batch, training=True, tolerance=1e-6)
    assert "frozen/gamma" not in errors and "convolutional/bias" in errors
    assert max(errors.values()) < 1e-6
    # the same gradient as in inference: a 3-term batch-statistics backward would differ
    x = np.random.default_rng(4).standard_normal((batch, 7, 5, 3)) * 2 + 1
    dy = np.random.default_rng(5).standard_normal((batch, 3))
    grads = []
    for training in (True, False):
        net.forward(x, training=training)
        grads.append(net.backward(dy.copy()))
    np.testing.assert_array_equal(grads[0], grads[1])


def test_a_frozen_layer_trains_with_two_workers_as_in_one_process():
    x, y = data(40)
    results = []
    for workers in (1, 2):
        net = frozen_net(freeze_at_construction=False)
        net.fit(x, y, epochs=2, batch_size=8, verbose=0, workers=workers, shuffle=False)
        results.append(net)
    for a, b in zip(results[0].get_weights(), results[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    fresh = frozen_state(frozen_net())
    for key, value in frozen_state(results[1]).items():
        np.testing.assert_array_equal(value, fresh[key], err_msg=key)
    # the second fit reuses the workers: unfreezing reaches them (the config they rebuild from changes)
    for net in results:
        net.get_layer("frozen").trainable = True
        net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=2 if net is results[1] else 1,
                shuffle=False)
    for a, b in zip(results[0].get_weights(), results[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    assert not np.allclose(results[1].get_layer("frozen").params["moving_mean"], fresh["moving_mean"])
    strategies.close_pool(results[1])


def test_the_flag_survives_save_load_and_json(tmp_path):
    net = frozen_net(freeze_at_construction=False)
    for path in (tmp_path / "net.h5", tmp_path / "net.keras"):
        net.save(str(path))
        loaded = models.load_model(str(path))
        assert loaded.get_layer("frozen").trainable is False, path.name
        assert loaded.get_layer("free").trainable is True, path.name
    again = models.model_from_json(net.to_json())
    assert again.get_layer("frozen").trainable is False
    assert json.loads(net.to_json())["config"]["layers"][1]["config"]["trainable"] is False


KERAS_PYTHON = "/work/venv-bench/bin/python"


@pytest.mark.skipif(not os.path.exists(KERAS_PYTHON) or shutil.which("true") is None,
                    reason="no Python with Keras 3 at " + KERAS_PYTHON)
def test_keras_fits_a_frozen_batch_norm_as_modularcnn_does(tmp_path):
    # Keras 3 trains a model with a frozen BN for two SGD steps; modularcnn loads the same .keras file
    # and takes the same steps: moving statistics unchanged on both sides, the same weights after.
    script = textwrap.dedent(f"""
        import os; os.environ["KERAS_BACKEND"] = "torch"
        import numpy as np, keras
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="d1"),
                                  keras.layers.BatchNormalization(name="bn", trainable=False),
                                  keras.layers.Dense(3, activation="softmax", name="d2")])
        bn = model.get_layer("bn")
        bn.set_weights([np.full(5, 1.3), np.full(5, 0.2), np.linspace(-1, 1, 5), np.full(5, 2.5)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.save(r"{tmp_path}/start.keras")
        rng = np.random.default_rng(1)
        x = rng.standard_normal((8, 6)) * 3; y = rng.integers(0, 3, 8)
        np.save(r"{tmp_path}/x.npy", x); np.save(r"{tmp_path}/y.npy", y)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        np.savez(r"{tmp_path}/after.npz", *model.get_weights())
    """)
    try:
        subprocess.run([KERAS_PYTHON, "-c", script], check=True, capture_output=True, timeout=240)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"Keras did not run here: {getattr(error, 'stderr', b'')[-300:]!r}")
    net = models.load_model(str(tmp_path / "start.keras"))
    assert net.get_layer("bn").trainable is False
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    net.optimizer.learning_rate = 0.1
    x, y = np.load(tmp_path / "x.npy").astype(np.float32), np.load(tmp_path / "y.npy")
    net.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after = np.load(tmp_path / "after.npz")
    keras_weights = [after[f"arr_{i}"] for i in range(len(after.files))]
    ours = net.get_weights()
    assert len(ours) == len(keras_weights)
    for a, b in zip(ours, keras_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def base_and_head(freeze="nested"):
    """A pretrained-style base (Conv -> BN) nested in a Net with a trainable head; ``freeze`` says
    what is frozen: the nested network, a Residual block holding the BN, or the whole network."""
    from modularcnn.layers import Residual

    base = Net(input_shape=(7, 5, 3), seed=4, dtype="float64", name="base")
    base.add(Convolutional(4, 3, pad=1))
    if freeze == "residual":
        base.add(Residual([Convolutional(4, 3, pad=1), BatchNormalization(momentum=0.5, name="bn")],
                          trainable=False, name="block"))
    else:
        base.add(BatchNormalization(momentum=0.5, name="bn"))
    net = Net(input_shape=(7, 5, 3), seed=6, dtype="float64")
    net.add(base)
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if freeze == "nested":
        base.trainable = False  # Keras's fine-tuning recipe: freeze the base after building
    elif freeze == "whole":
        net.trainable = False
    return net, base


def moving(base):
    bn = next(layer for layer in _leaves(base.layers) if isinstance(layer, BatchNormalization))
    return bn.params["moving_mean"].copy(), bn.params["moving_variance"].copy()


def _leaves(layers):
    for layer in layers:
        yield layer
        yield from _leaves(layer.sublayers)


@pytest.mark.parametrize("freeze", ["nested", "residual", "whole"])
def test_a_batch_norm_inside_a_frozen_network_or_block_is_frozen_too(freeze):
    net, base = base_and_head(freeze)
    before = moving(base)
    x, y = data(12)
    net.fit(x, y, epochs=1, batch_size=4, verbose=0)
    net.train_on_batch(x, y)
    for a, b in zip(moving(base), before):
        np.testing.assert_array_equal(a, b)
    # in training it computes what inference computes
    np.testing.assert_array_equal(net.forward(x, training=True), net.forward(x, training=False))


def flat_net(freeze):
    """Conv -> (a frozen Residual of Conv, BN) or (BN, the whole network frozen) -> Dense."""
    from modularcnn.layers import Residual

    net = Net(input_shape=(7, 5, 3), seed=4, dtype="float64")
    net.add(Convolutional(4, 3, pad=1))
    if freeze == "residual":
        net.add(Residual([Convolutional(4, 3, pad=1), BatchNormalization(momentum=0.5)],
                         trainable=False))
    else:
        net.add(BatchNormalization(momentum=0.5))
    net.add(BatchNormalization(momentum=0.6, name="free"))  # synchronised across the workers
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if freeze == "whole":
        net.trainable = False
    return net


@pytest.mark.parametrize("freeze", ["residual", "whole"])
def test_a_frozen_block_or_network_trains_with_two_workers_as_in_one_process(freeze):
    # (a nested network holding a batch norm trains in one process only, frozen or not)
    x, y = data(24)
    results = []
    for workers in (1, 2):
        net = flat_net(freeze)
        bns = [layer for layer in _leaves(net.layers) if isinstance(layer, BatchNormalization)]
        before = [layer.params["moving_mean"].copy() for layer in bns]
        net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=workers, shuffle=False)
        frozen_bn, free_bn = bns[0], bns[1]
        np.testing.assert_array_equal(frozen_bn.params["moving_mean"], before[0])
        # the free one learns unless the whole network is frozen
        assert np.array_equal(free_bn.params["moving_mean"], before[1]) == (freeze == "whole")
        results.append(net)
    for a, b in zip(results[0].get_weights(), results[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    strategies.close_pool(results[1])

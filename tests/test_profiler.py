"""The per-layer profiler: a row per layer plus loss and optimizer, and the model left untouched."""

import numpy as np

from modularcnn import Net, reference_kernels
from modularcnn.execution import step_layers
from modularcnn.layers import Convolutional, Dense, Dropout, Flatten, MaxPooling


def test_profile_reports_every_layer_and_restores_the_model():
    net = Net(input_shape=(10, 10, 1), seed=0)
    net.add(Convolutional(4, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dropout(0.2))
    net.add(Dense(3, activation="softmax"))
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 10, 10, 1)).astype(np.float32), rng.integers(0, 3, 40)
    before = net.get_weights()
    rng_state = net.rng.bit_generator.state
    lines = []
    rows = net.profile(x, y, batches=3, batch_size=8, print_fn=lines.append)

    # One row per step of the plan fit runs: the fused conv + pool step is one row.
    assert [r["type"] for r in rows[:2]] == ["PatchConvReluPool", "Flatten"]
    assert [r["layers"] for r in rows[:-2]] == [[layer.name for layer in step_layers(step)]
                                                for step in net.plan()]
    assert rows[0]["name"] == "convolutional + max_pooling" and "patch" in rows[0]["kernel"]
    assert all(r["forward_ms"] >= 0 and r["backward_ms"] >= 0 for r in rows)
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9
    table = "\n".join(lines)
    assert "convolutional" in table and "Backward ms" in table and "100.0%" in table
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert net.rng.bit_generator.state == rng_state
    assert net.optimizer.iterations == 0


def test_with_the_reference_kernels_every_layer_is_a_row():
    net = Net(input_shape=(10, 10, 1), seed=0)
    net.add(Convolutional(4, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 10, 10, 1)).astype(np.float32), rng.integers(0, 3, 40)
    lines = []
    with reference_kernels():
        rows = net.profile(x, y, batches=2, batch_size=8, print_fn=lines.append)
    assert [r["name"] for r in rows] == [layer.name for layer in net.layers] + ["loss", "optimizer"]
    assert all("reference" in r["kernel"] for r in rows[:-2])
    assert "reference kernels" in lines[0] and "would train in this process" in lines[1]

"""Hardening of models, model files and data (issue 14 items 2, 3, 7, 9, 15, 16, 17): declared shapes
checked before anything is read, configs built without drawing weights, a layer in one network only,
IDX gzip bombs refused from the header, explicit dataset paths used or refused, inputs that train to
NaN named, frozen batch norm frozen, confusion matrices of uint8 labels."""

import numpy as np
import pytest

from modularcnn import metrics


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.uint64, np.bool_])
def test_confusion_matrix_of_small_unsigned_labels(dtype):
    # item 17: mnist.load_data() returns uint8 labels; .max(initial=-1) overflowed, i * K + j wrapped
    y_true = np.array([0, 1, 1, 0, 1], dtype=dtype)
    y_pred = np.array([0, 1, 0, 0, 1], dtype=np.int64)
    cm = metrics.confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64 and cm.tolist() == [[2, 0], [1, 2]]


def test_confusion_matrix_with_many_classes_in_uint8_does_not_wrap():
    # 30 classes: 29 * 30 + 29 = 899 does not fit uint8
    y = np.arange(30, dtype=np.uint8)
    cm = metrics.confusion_matrix(y, y.astype(np.int8))
    np.testing.assert_array_equal(cm, np.eye(30, dtype=np.int64))
    cm = metrics.confusion_matrix(y, y[::-1].copy(), num_classes=30)
    assert cm.sum() == 30 and cm[0, 29] == 1


def test_readme_plotting_block_with_uint8_labels(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from modularcnn import Net, plot_confusion_matrix
    from modularcnn.layers import Dense
    net = Net(input_shape=(4,), seed=0)
    net.add(Dense(3, activation="softmax"))
    net.compile()
    x = np.random.default_rng(0).random((12, 4)).astype(np.float32)
    y_test = (np.arange(12) % 3).astype(np.uint8)
    figure = plot_confusion_matrix(metrics.confusion_matrix(y_test, net.predict_classes(x)))
    assert figure is not None


def test_confusion_matrix_refuses_infinite_float_ids():
    with pytest.raises(ValueError, match="finite integer class ids"):
        metrics.confusion_matrix(np.array([0.0, np.inf]), np.array([0, 1]))

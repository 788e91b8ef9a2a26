"""Keras's "Simple MNIST convnet" example (keras.io/examples/vision/mnist_convnet), run as Keras
publishes it with only its import lines changed, on the first 3,000 real MNIST training images.

The script (tests/keras_scripts/mnist_convnet.py) uses ``keras.datasets.mnist.load_data()``,
``keras.utils.to_categorical``, ``keras.Sequential([keras.Input(...), ...])``, Conv2D/MaxPooling2D/
Flatten/Dropout/Dense from ``layers``, ``compile(loss="categorical_crossentropy", optimizer="adam",
metrics=["accuracy"])``, ``fit(batch_size=128, epochs=15, validation_split=0.1)`` and
``score = model.evaluate(x_test, y_test, verbose=0)`` read as ``score[0]``, ``score[1]``.

To fit a test's time, ``load_data`` gives 3,000 training and 1,000 test images (the first ones of the
real files) and ``epochs = 15`` becomes 3: both are budget, not code, and the substitutions are
checked to be the only ones made.
"""

from pathlib import Path

import numpy as np

import modularcnn
from modularcnn.datasets import mnist

SCRIPT = Path(__file__).parent / "keras_scripts" / "mnist_convnet.py"
KERAS_IMPORTS = "import keras\nfrom keras import layers\n"
OUR_IMPORTS = "from modularcnn import keras\nfrom modularcnn.keras import layers\n"


def test_keras_mnist_convnet_runs_with_only_its_imports_changed(mnist_dir, monkeypatch, capsys):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=mnist_dir)
    subset = ((x_train[:3000], y_train[:3000]), (x_test[:1000], y_test[:1000]))
    monkeypatch.setattr(mnist, "load_data", lambda path=None: subset)
    text = SCRIPT.read_text()
    assert text.count(KERAS_IMPORTS) == 1 and text.count("epochs = 15\n") == 1
    ported = text.replace(KERAS_IMPORTS, OUR_IMPORTS).replace("epochs = 15\n", "epochs = 3\n")
    modularcnn.utils.set_random_seed(0)
    namespace = {"__name__": "__main__"}
    exec(compile(ported, str(SCRIPT), "exec"), namespace)

    model, score = namespace["model"], namespace["score"]
    assert isinstance(model, modularcnn.Net)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"]
    assert model.count_params() == 34_826  # as Keras's summary of this model reports
    assert isinstance(score, list) and len(score) == 2  # [loss, accuracy], as Keras returns
    out = capsys.readouterr().out
    assert "x_train shape: (3000, 28, 28, 1)" in out and "Total params: 34,826" in out
    assert f"Test loss: {score[0]}" in out and f"Test accuracy: {score[1]}" in out
    assert score[1] > 0.6  # chance is 0.1
    probabilities = model.predict(namespace["x_test"])
    assert score[1] == np.mean(probabilities.argmax(1) == y_test[:1000])
    assert np.isfinite(score[0]) and score[0] < np.log(10)  # below a uniform guess's loss

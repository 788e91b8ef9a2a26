"""Write the Keras fixtures under tests/data/keras: small models saved by real Keras, and what Keras
predicted for a fixed input, so that the tests check our Keras reader without Keras installed.

Needs Keras 3 (``pip install keras torch==2.13.0``; it runs on the torch backend)::

    KERAS_BACKEND=torch python scripts/make_keras_fixtures.py

Every model gets random weights with non-trivial biases and batch-norm statistics (a model fresh from
its initialisers has zero biases, unit variances and would hide mistakes in the copying). For each
model ``NAME`` it writes ``NAME.keras`` (Keras 3 archive), ``NAME.h5`` (Keras's HDF5 model format),
``NAME.weights.h5`` (weights only) and ``NAME.npz`` (``x`` and Keras's ``y``). With ``--keras2`` it
uses tf-keras instead (``pip install tf-keras``, which brings TensorFlow) and writes Keras 2 HDF5
files ``NAME.keras2.h5`` with ``NAME.keras2.npz``.

Models of the layers added for issue 15 (:func:`new_layer_models`, Keras 3 only) go to
``tests/data/keras/keras3/`` with a random stream of their own; the Keras 2 run skips them.
Functional models (:func:`functional_models`: merges, branches, two inputs and outputs, shared and
nested layers) go to ``tests/data/keras/functional/`` with a stream of their own; their ``NAME.npz``
holds the inputs as ``x0, x1, ...`` and Keras's outputs as ``y0, y1, ...``.
"""

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "keras"


def leaky_relu(L, slope):
    """Keras 3 names the slope negative_slope, Keras 2 alpha."""
    try:
        return L.LeakyReLU(negative_slope=slope)
    except TypeError:
        return L.LeakyReLU(alpha=slope)


def models(keras):
    """``{name: model}``: together they use every Keras layer and option the reader supports."""
    L = keras.layers
    return {
        "conv2d_stack": keras.Sequential([
            keras.Input((9, 8, 3)),
            L.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            L.BatchNormalization(),
            L.MaxPooling2D(),
            L.Conv2D(5, (2, 3), strides=(1, 2), activation="tanh"),
            L.AveragePooling2D(pool_size=2, strides=1, padding="same"),
            L.Flatten(),
            L.Dropout(0.3),
            L.Dense(6, activation="sigmoid"),
            L.Dense(3, activation="softmax"),
        ], name="conv2d_stack"),
        "strided_same": keras.Sequential([
            keras.Input((11, 10, 2)),
            L.Conv2D(3, 4, strides=2, padding="same"),
            leaky_relu(L, 0.15),
            L.ZeroPadding2D(((1, 2), (2, 1))),
            L.Conv2D(4, 3, strides=(2, 1), activation="elu"),
            L.MaxPooling2D(pool_size=3, strides=2, padding="same"),
            L.GlobalAveragePooling2D(),
            L.Dense(4),
            L.Softmax(),
        ]),
        "activations": keras.Sequential([
            keras.Input((7, 5, 2)),
            L.Conv2D(3, 1),
            L.ReLU(),
            L.Conv2D(3, 2, activation="leaky_relu"),
            L.ELU(alpha=0.7),
            L.Activation("tanh"),
            L.GlobalMaxPooling2D(),
            L.Dense(2, activation="sigmoid", use_bias=False),
        ]),
        "transpose_upsample": keras.Sequential([
            keras.Input((5, 4, 3)),
            L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),
            L.UpSampling2D(size=(1, 2)),
            L.Conv2DTranspose(2, 2, strides=1, padding="valid"),
            L.Reshape((-1,)),
            L.Dense(3),
        ]),
        "conv1d": keras.Sequential([
            keras.Input((16, 3)),
            L.Conv1D(4, 3, padding="same", activation="relu"),
            L.MaxPooling1D(2),
            L.Conv1D(5, 3, strides=2),
            L.BatchNormalization(),
            L.UpSampling1D(2),
            L.AveragePooling1D(2),
            L.Flatten(),
            L.Dense(2),
        ]),
        "conv3d": keras.Sequential([
            keras.Input((6, 5, 4, 2)),
            L.Conv3D(3, 2, padding="same", activation="relu"),
            L.MaxPooling3D(2),
            L.Conv3D(2, (1, 2, 2)),
            L.Flatten(),
            L.Dense(3),
        ]),
        "mlp": keras.Sequential([
            keras.Input((12,)),
            L.Dense(8, activation="relu"),
            L.BatchNormalization(momentum=0.9, epsilon=1e-2),
            L.Dense(5, activation="tanh"),
            L.Dense(4),
            L.Activation("softmax"),
        ]),
    }


def keras3_models(keras):
    """Models of layers and activations that only Keras 3 has (or names this way)."""
    L = keras.layers
    return {
        "keras3_activations": keras.Sequential([
            keras.Input((9, 8, 4)),
            L.Conv2D(4, (3, 2), dilation_rate=(2, 1), groups=2, padding="same", activation="gelu"),
            L.Conv2D(4, 2, activation="silu"),
            L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2),
            L.PReLU(shared_axes=[1, 2]),
            L.Activation("selu"),
            L.Conv2D(3, 1, activation="hard_sigmoid"),
            L.Softmax(axis=1),
            L.Activation("softplus"),
            L.Conv2D(3, 2, strides=2, activation="relu6"),
            L.Activation("softsign"),
            L.Flatten(),
            L.Dense(5, activation="hard_silu"),
            L.PReLU(),
            L.Dense(3, activation="exponential"),
        ]),
        "dilated_conv1d": keras.Sequential([
            keras.Input((17, 4)),
            L.Conv1D(4, 3, dilation_rate=3, groups=4, activation="swish"),
            L.Conv1D(2, 2, dilation_rate=2, padding="same", activation="leaky_relu"),
            L.Flatten(),
            L.Dense(2),
        ]),
    }


def new_layer_models(keras):
    """``{name: model}`` of Keras 3 layers and options added for issue 15, written to ``keras3/``."""
    L = keras.layers
    return {
        "depthwise_separable": keras.Sequential([
            keras.Input((9, 8, 3)),
            L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu"),
            L.SeparableConv2D(4, (3, 2), padding="same", depth_multiplier=2, activation="gelu"),
            L.Conv2D(4, 3, dilation_rate=2, groups=2, padding="same", activation="silu"),
            L.ZeroPadding2D(((1, 0), (0, 1))),
            L.DepthwiseConv2D(2, dilation_rate=2, use_bias=False),
            L.GlobalAveragePooling2D(keepdims=True),
            L.Flatten(),
            L.Dense(3, activation="selu"),
        ]),
        "normalisation_shapes": keras.Sequential([
            keras.Input((6, 5, 4)),
            L.LayerNormalization(axis=[1, 3]),
            L.GroupNormalization(2),
            L.BatchNormalization(axis=1, center=False),
            L.Cropping2D(((1, 0), (0, 1))),
            L.Permute((2, 1, 3)),
            L.Rescaling(0.5, 0.1),
            L.UpSampling2D((2, 3), interpolation="bilinear"),
            L.SpatialDropout2D(0.3),
            L.GaussianNoise(0.1),
            L.GaussianDropout(0.2),
            L.Dropout(0.2, seed=3),
            L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2),
            L.PReLU(shared_axes=[1, 2]),
            L.Softmax(axis=1),
            L.Flatten(),
            L.Dense(2, activation="hard_sigmoid"),
        ]),
        "sequences": keras.Sequential([
            keras.Input((14, 3)),
            L.Conv1D(4, 3, dilation_rate=2, activation="hard_silu"),
            L.ZeroPadding1D((1, 2)),
            L.Cropping1D((2, 1)),
            L.DepthwiseConv1D(3, depth_multiplier=2),
            L.SeparableConv1D(3, 3, padding="same", activation="softplus"),
            L.LayerNormalization(scale=False),
            L.GlobalMaxPooling1D(keepdims=True),
            L.Flatten(),
            L.Dense(2, activation="relu6"),
        ]),
        "volumes": keras.Sequential([
            keras.Input((4, 5, 4, 2)),
            L.ZeroPadding3D(1),
            L.Conv3D(2, 2, dilation_rate=(1, 2, 1)),
            L.Cropping3D(((1, 0), (0, 1), (1, 1))),
            L.SpatialDropout3D(0.2),
            L.GlobalAveragePooling3D(),
            L.Dense(2, activation="softsign"),
        ]),
    }


def functional_models(keras):
    """``{name: model}`` of functional Keras models (``keras.Model(inputs, outputs)``), written to
    ``functional/``: merges, branches, several inputs and outputs, shared and nested layers."""
    L = keras.layers
    models = {}

    x = keras.Input((8, 7, 3), name="image")
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    h = L.BatchNormalization()(h)
    h = L.Conv2D(4, 3, padding="same")(h)
    shortcut = L.Conv2D(4, 1, name="shortcut")(x)
    h = L.ReLU()(L.Add()([h, shortcut]))
    models["residual"] = keras.Model(x, L.Dense(3)(L.GlobalAveragePooling2D()(h)), name="residual")

    x = keras.Input((9, 9, 3))
    one = L.Conv2D(2, 1, activation="relu")(x)
    three = L.Conv2D(3, 3, padding="same", activation="relu")(L.Conv2D(2, 1)(x))
    pool = L.Conv2D(2, 1)(L.MaxPooling2D(3, strides=1, padding="same")(x))
    h = L.Concatenate()([one, three, pool])
    h = L.BatchNormalization(momentum=0.9)(h)
    h = L.Concatenate(axis=1)([h, L.AveragePooling2D(1)(h)])
    models["inception"] = keras.Model(x, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(h)))

    image = keras.Input((6, 6, 2), name="image")
    vector = keras.Input((5,), name="vector")
    a = L.Dense(4, activation="tanh")(L.Flatten()(L.Conv2D(3, 3, activation="relu")(image)))
    b = L.Dense(4)(vector)
    merged = L.Concatenate()([a, b])
    label = L.Dense(3, activation="softmax", name="label")(merged)
    mixed = L.Average()([L.Multiply()([a, b]), L.Subtract()([a, b]), L.Maximum()([a, b]),
                         L.Minimum()([a, b])])
    score = L.Dense(1, name="score")(L.Concatenate()([mixed, L.Dot(axes=1)([a, b])]))
    models["two_in_two_out"] = keras.Model([image, vector], [label, score], name="two_in_two_out")

    left = keras.Input((6,), name="left")
    right = keras.Input((6,), name="right")
    shared = L.Dense(6, activation="relu", name="shared")
    twice = L.Dense(6, activation="tanh", name="twice")
    l, r = shared(left), shared(right)
    h = L.Subtract()([twice(twice(l)), r])  # "twice" called on its own output: node indexes 0 and 1
    out = L.Dense(2)(L.Concatenate()([h, L.Add()([l, r])]))
    models["shared_layers"] = keras.Model([left, right], out, name="shared_layers")

    block = keras.Sequential([
        keras.Input((8, 8, 2)),
        L.Conv2D(3, 3, padding="same"),
        L.BatchNormalization(),
        L.ReLU(),
    ], name="block")
    inner_in = keras.Input((4, 4, 3))
    inner = keras.Model(inner_in, L.Add()([L.Conv2D(3, 1)(inner_in), inner_in]), name="inner")
    x = keras.Input((8, 8, 2))
    h = block(x)
    h = inner(L.MaxPooling2D()(h))
    models["nested"] = keras.Model(x, L.Dense(2)(L.Flatten()(h)), name="nested")
    return models


def randomise(model, rng):
    """Random weights everywhere; batch-norm variances positive."""
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if "variance" in getattr(variable, "path", variable.name):
                values.append(rng.uniform(0.5, 2.0, shape).astype("float32"))
            else:
                values.append(rng.normal(0, 0.5, shape).astype("float32"))
        if values:
            layer.set_weights(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keras2", action="store_true",
                        help="write NAME.keras2.h5 with tf-keras (Keras 2, needs TensorFlow) instead")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="write only these models (the others' random draws are still made, so "
                             "every file is what a full run writes)")
    args = parser.parse_args()
    if args.keras2:
        import tf_keras as keras
    else:
        import keras

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    every = models(keras) if args.keras2 else {**models(keras), **keras3_models(keras)}
    for name, model in every.items():
        randomise(model, rng)
        x = rng.normal(0, 1, (3, *model.input_shape[1:])).astype("float32")
        y = np.asarray(model.predict(x, verbose=0))
        if args.only and name not in args.only:
            continue
        if args.keras2:
            model.save(args.out / f"{name}.keras2.h5", save_format="h5")
            np.savez(args.out / f"{name}.keras2.npz", x=x, y=y)
            print(f"{name}: Keras 2 file, keras {keras.__version__}")
            continue
        save(model, name, x, y, args.out, keras)
    if args.keras2:
        return
    # The layers of issue 15 live in keras3/ with a random stream of their own, so adding them
    # changed none of the files above.
    out = args.out / "keras3"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for name, model in new_layer_models(keras).items():
        randomise(model, rng)
        x = rng.normal(0, 1, (3, *model.input_shape[1:])).astype("float32")
        y = np.asarray(model.predict(x, verbose=0))
        if args.only and name not in args.only:
            continue
        save(model, name, x, y, out, keras)
    # Functional models: their own folder and random stream.
    out = args.out / "functional"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    for name, model in functional_models(keras).items():
        randomise(model, rng)
        xs = [rng.normal(0, 1, (3, *shape[1:])).astype("float32") for shape in input_shapes(model)]
        ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        ys = [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
        if args.only and name not in args.only:
            continue
        save_functional(model, name, xs, ys, out, keras)


def input_shapes(model):
    shapes = model.input_shape
    return shapes if isinstance(shapes, list) else [shapes]


def save_functional(model, name, xs, ys, out, keras):
    """As :func:`save`, with the inputs as ``x0, x1, ...`` and the outputs as ``y0, y1, ...``."""
    model.save(out / f"{name}.keras")
    model.save(out / f"{name}.h5")
    model.save_weights(out / f"{name}.weights.h5")
    np.savez(out / f"{name}.npz", **{f"x{k}": x for k, x in enumerate(xs)},
             **{f"y{k}": y for k, y in enumerate(ys)})
    print(f"{name}: {len(model.layers)} layers, outputs {[y.shape for y in ys]}, "
          f"keras {keras.__version__}")


def save(model, name, x, y, out, keras):
    """``NAME.keras``, ``NAME.h5``, ``NAME.weights.h5`` and ``NAME.npz`` (input and Keras's output)."""
    model.save(out / f"{name}.keras")
    model.save(out / f"{name}.h5")
    model.save_weights(out / f"{name}.weights.h5")
    np.savez(out / f"{name}.npz", x=x, y=y)
    print(f"{name}: {len(model.layers)} layers, output {y.shape}, keras {keras.__version__}")


if __name__ == "__main__":
    main()

"""The ``modularcnn`` command: ``train``, ``evaluate``, ``predict`` and ``summary``.

A thin argparse layer over the library; every command is a few library calls::

    modularcnn train --epochs 3 --save lenet.h5       # LeNet-5 on MNIST, saved after every epoch
    modularcnn evaluate lenet.h5                       # loss, accuracy, per-class accuracy, confusion
    modularcnn predict lenet.h5 digits.npy             # class and probability per image
    modularcnn summary lenet.h5

Data are scaled to [0, 1] float32 (uint8 pixel levels divided by 255) and labels are class ids.
Errors print one line, ``modularcnn: error: ...``, to stderr: exit status 2 for a bad command line,
1 for anything else (missing or damaged file, unknown dataset, images of the wrong shape), 130 after
Ctrl-C.
"""

import argparse
import os
import signal
import sys
import time

import numpy as np

from . import models

DATASETS = ("mnist", "fashion_mnist", "cifar10")
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
CSV_TEST_FRACTION = 0.1
EXIT_INTERRUPTED = 130


# -- argument types: each turns one command-line string into a checked value ---------------------


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(
                f"expected a value {' and '.join(p for p in (lo, hi) if p)}, got {text}")
        return value
    return parse


def dataset_spec(text):
    """``"mnist"`` -> ``("mnist", ())``; ``"csv:a.csv,b.csv"`` -> ``("csv", ("a.csv", "b.csv"))``."""
    if text.startswith("csv:"):
        paths = tuple(p for p in text[4:].split(",") if p)
        if not 1 <= len(paths) <= 2:
            raise argparse.ArgumentTypeError(
                f"expected csv:TRAIN.csv or csv:TRAIN.csv,TEST.csv, got {text!r}")
        return ("csv", paths)
    name = text.strip().lower().replace("-", "_")
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {text!r}; choose one of {', '.join(DATASETS)} or csv:PATH")
    return (name, ())


def model_spec(text):
    """A preset name or the path of a JSON architecture file."""
    if text in models.PRESETS or text == "lenet5" or text.lower().endswith(".json"):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; choose one of {', '.join(models.PRESETS)} or give PATH.json")


# -- data -----------------------------------------------------------------------------------------


def scale_images(x):
    """Integer pixel levels 0..255 -> float32 in [0, 1]; float arrays are taken as already scaled.

    Values outside those documented ranges (an int16 -1 or 300, a float 2.0, NaN) are refused: the
    model was trained on [0, 1] and would print confident nonsense for them.
    """
    x = np.asarray(x)
    if x.dtype.kind in "iu":
        _check_range(x, 0, 255, "integer pixel levels")
        return np.multiply(x, np.float32(1 / 255), dtype=np.float32)
    if x.dtype.kind == "f":
        _check_range(x, 0.0, 1.0, "float pixel values")
        return x.astype(np.float32, copy=False)
    raise ValueError(f"images must be integer pixel levels or floats, got dtype {x.dtype}")


def _check_range(x, low, high, what):
    if x.size == 0:
        return
    bad = ~((x >= low) & (x <= high))  # NaN fails both comparisons
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} must lie in [{low}, {high}], got {x[position].item()!r} at index "
                         f"{position}")


def _load_npy(path):
    """A numeric array from a ``.npy`` file, never unpickled; damaged or object files are refused."""
    try:
        x = np.load(path, allow_pickle=False)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (ValueError, OSError, EOFError) as error:
        # NumPy's own message for pickled content proposes allow_pickle=True: never repeat that.
        reason = "holds Python objects" if "pickle" in str(error) else "its header is damaged"
        raise ValueError(f"{path}: not a .npy file of numbers ({reason}); save images with "
                         "np.save(path, array) from an integer or float array") from None
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{path}: expected one array, got {type(x).__name__}")
    return x


def _square_image_shape(pixels, path):
    """(H, W, C) of a flattened square image with ``pixels`` values: grey first, then RGB."""
    for channels in (1, 3):
        side = int(round((pixels / channels) ** 0.5))
        if side * side * channels == pixels:
            return (side, side, channels)
    raise ValueError(f"{path}: rows have {pixels} pixel values, which is not a square grey "
                     "(S*S) or colour (S*S*3) image")


def _read_csv(path, image_shape=None):
    from .datasets import load_csv
    x, y = load_csv(path, label_column=0)
    shape = tuple(image_shape) if image_shape else _square_image_shape(x.shape[1], path)
    if int(np.prod(shape)) != x.shape[1]:
        raise ValueError(f"{path}: rows have {x.shape[1]} pixel values, but the model expects "
                         f"images of shape {shape} ({int(np.prod(shape))} values)")
    return x.reshape((len(x),) + shape), y


def load_dataset(spec, image_shape=None, seed=0):
    """``((x_train, y_train), (x_test, y_test), class_names)`` with images scaled to [0, 1].

    ``csv:TRAIN[,TEST]``: CSV rows of a label then 0..255 pixel levels (``load_csv``'s format);
    without TEST, a seeded random 10% of TRAIN is held out as the test set.
    """
    name, paths = spec
    if name == "csv":
        x, y = _read_csv(paths[0], image_shape)
        if len(paths) == 2:
            x_test, y_test = _read_csv(paths[1], x.shape[1:])
        else:
            order = np.random.default_rng(seed).permutation(len(x))
            cut = max(1, int(round(len(x) * CSV_TEST_FRACTION)))
            x, y, x_test, y_test = x[order[cut:]], y[order[cut:]], x[order[:cut]], y[order[:cut]]
        names = None
    else:
        from . import datasets
        module = getattr(datasets, name)
        (x, y), (x_test, y_test) = module.load_data()
        names = getattr(module, "CLASS_NAMES", None)
    return (scale_images(x), y.astype(np.int64)), (scale_images(x_test), y_test.astype(np.int64)), names


def _per_sample_shape(x):
    """(H, W, C) of a batch of images; grey (N, H, W) batches get C = 1."""
    return tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ())


def _split_validation(x, y, args):
    """Hold out ``--val-examples`` images or the ``--val-split`` fraction, chosen at random (seeded)."""
    count = args.val_examples if args.val_examples is not None else int(round(len(x) * args.val_split))
    if count == 0:
        return x, y, None
    if count >= len(x):
        raise ValueError(f"cannot hold out {count} validation images from {len(x)} training images")
    order = np.random.default_rng(args.seed).permutation(len(x))
    val, train = order[:count], order[count:]
    return x[train], y[train], (x[val], y[val])


def load_images(path, input_shape):
    """Images to predict: ``(x, labels or None)`` with x float32 ``(N, *input_shape)`` in [0, 1]."""
    path = str(path)
    if path.lower().endswith(".csv") or path.lower().endswith(".csv.gz"):
        x, labels = _read_csv(path, input_shape)
    elif path.lower().endswith(".npy"):
        x, labels = _load_npy(path), None
    else:
        raise ValueError(f"{path}: expected a .npy or .csv file of images")
    shape = tuple(input_shape)
    grey_shape = shape[:-1] if shape[-1] == 1 else None
    if x.shape in (shape, grey_shape):  # a single image
        x = x[None]
    if tuple(x.shape[1:]) not in (shape, grey_shape):
        accepted = f"(N, {', '.join(map(str, shape))})"
        if grey_shape:
            accepted += f" or (N, {', '.join(map(str, grey_shape))})"
        raise ValueError(f"{path}: holds an array of shape {x.shape}, but the model takes images "
                         f"{accepted}")
    return scale_images(x).reshape((len(x),) + shape), labels


# -- commands -------------------------------------------------------------------------------------


def _make_optimizer(name, learning_rate):
    from . import optimizers
    optimizer = optimizers.get(name)
    if learning_rate is not None:
        optimizer.learning_rate = learning_rate
    return optimizer


def _absorb_ctrl_c():
    """From here on Ctrl-C only sets a flag; returns the list it appends to.

    ``fit`` installs its own handler while it trains and puts this one back afterwards, so there is no
    moment — between the last batch, the final save and the exit — where a press raises instead.
    """
    pressed = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    return pressed


def command_train(args):
    strategy = None
    if args.distributed == "mpi":
        from .training.strategies.mpi import MPIStrategy
        # --workers N: N local worker processes share each rank's rows (default: none).
        strategy = MPIStrategy(local_workers=1 if args.workers == "auto" else args.workers)
    # Under MPI every rank trains; rank 0 alone prints, checkpoints and saves (fit skips the
    # callbacks that write on the other ranks, and their net.save writes nothing).
    chief = strategy is None or strategy.is_chief
    if not chief:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    (x, y), (x_test, y_test), _ = load_dataset(args.dataset, seed=args.seed)
    if args.num_examples is not None:
        x, y = x[:args.num_examples], y[:args.num_examples]
    if args.test_examples is not None:
        x_test, y_test = x_test[:args.test_examples], y_test[:args.test_examples]
    x, y, validation = _split_validation(x, y, args)
    input_shape = _per_sample_shape(x)
    num_classes = int(max(y.max(), y_test.max())) + 1
    if args.model.lower().endswith(".json"):
        net = models.from_json(args.model, input_shape=input_shape, seed=args.seed)
    else:
        net = models.get(args.model, input_shape=input_shape, num_classes=num_classes, seed=args.seed)
    net.compile(optimizer=_make_optimizer(args.optimizer, args.lr), loss="cross_entropy",
                metrics=["accuracy"])
    net.summary()

    from . import callbacks
    hooks = []
    if args.lr_decay != 1:
        base = net.optimizer.current_learning_rate
        hooks.append(callbacks.LearningRateScheduler(
            lambda epoch, lr: base * args.lr_decay ** epoch))
    if args.save:
        hooks.append(callbacks.ModelCheckpoint(args.save))  # run by rank 0 alone under MPI
    augment = None
    if args.augment:
        from .augment import ImageAugmenter
        # Small shifts and rotations keep digits legible; a fresh draw every time an image is used.
        augment = ImageAugmenter(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1,
                                 zoom_range=0.1)
        x, y = np.concatenate([x] * args.augment), np.concatenate([y] * args.augment)
    held_out = 0 if validation is None else len(validation[0])
    print(f"Training on {len(x):,} images ({held_out:,} held out for validation), "
          f"testing on {len(x_test):,}", flush=True)

    started = time.perf_counter()
    previous_handler = signal.getsignal(signal.SIGINT)
    pressed = _absorb_ctrl_c()
    history = net.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=validation,
                      callbacks=hooks, verbose=1, augment=augment,
                      workers=args.workers if strategy is None else "auto",
                      strategy=strategy)
    seconds = time.perf_counter() - started
    # fit returns early, keeping the weights, when Ctrl-C stops it; later presses were absorbed.
    interrupted = history.interrupted or bool(pressed)
    if args.save and chief:
        net.save(args.save)  # a press during the save is absorbed too: the final weights reach the disk
        print(f"Saved the model to {args.save}", flush=True)
    if interrupted:
        # The process is ending: keep absorbing presses until it has exited.
        print(f"Training interrupted after {seconds:.0f}s", flush=True)
        return EXIT_INTERRUPTED
    signal.signal(signal.SIGINT, previous_handler)
    result = net.evaluate(x_test, y_test, return_dict=True)
    print(f"Training took {seconds:.1f}s")
    print(f"Test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(x_test):,} images")
    return 0


def _load_model(path):
    from . import load_model
    return load_model(path)


def command_evaluate(args):
    from tabulate import tabulate

    from .metrics import confusion_matrix
    net = _load_model(args.model)
    _, (x, y), names = load_dataset(args.dataset, image_shape=net.input_shape, seed=0)
    if args.num_examples is not None:
        x, y = x[:args.num_examples], y[:args.num_examples]
    result = net.evaluate(x, y, return_dict=True)
    num_classes = int(net.output_shape[-1])
    predicted = net.predict_classes(x)
    matrix = confusion_matrix(y, predicted, num_classes=num_classes)
    print(f"Evaluated {args.model} on {len(x):,} test images")
    print(" - ".join(f"{key}: {value:.4f}" for key, value in result.items()))
    names = names if names is not None and len(names) == num_classes else None
    rows = []
    for k in range(num_classes):
        total = int(matrix[k].sum())
        rows.append([k] + ([names[k]] if names else []) + [total, int(matrix[k, k]),
                     f"{matrix[k, k] / total:.4f}" if total else "-"])
    headers = ["class"] + (["name"] if names else []) + ["images", "correct", "accuracy"]
    print("\nPer-class accuracy")
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    print("\nConfusion matrix (rows: true class, columns: predicted class)")
    print(tabulate([[k] + list(row) for k, row in enumerate(matrix.tolist())],
                   headers=["true\\pred"] + list(range(num_classes)), tablefmt="simple"))
    return 0


def command_predict(args):
    from tabulate import tabulate
    net = _load_model(args.model)
    x, labels = load_images(args.images, net.input_shape)
    probabilities = net.predict(x)
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities[np.arange(len(x)), predicted]
    rows = [[i, int(c), f"{p:.4f}"] for i, (c, p) in enumerate(zip(predicted, confidence))]
    headers = ["image", "class", "probability"]
    if labels is not None:
        headers.append("true")
        for row, label in zip(rows, labels):
            row.append(int(label))
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    if labels is not None:
        print(f"Accuracy: {np.mean(predicted == labels):.4f} on {len(x):,} images")
    return 0


def command_summary(args):
    _load_model(args.model).summary()
    return 0


def command_convert(args):
    """Any model file we read (ours, or Keras's) -> ours (``.h5``) or a Keras 3 archive (``.keras``)."""
    net = _load_model(args.model)
    net.save(args.output)
    print(f"Wrote {args.output} ({net.count_params():,} parameters, {len(net.layers)} layers)")
    return 0


def command_export(args):
    """A model file -> an ONNX model (needs the ``onnx`` extra)."""
    net = _load_model(args.model)
    net.export_onnx(args.output, opset=args.opset)
    if hasattr(net, "graph"):  # a graph Model: ONNX inputs named as the model's
        shapes = ", ".join(f"{name} (batch, {', '.join(map(str, shape))})"
                           for name, shape in zip(net.input_names, net.input_shapes))
        print(f"Wrote {args.output} (ONNX opset {args.opset}, inputs {shapes} channels-last, "
              f"outputs {', '.join(net.output_names)})")
        return 0
    print(f"Wrote {args.output} (ONNX opset {args.opset}, input (batch, "
          f"{', '.join(map(str, net.input_shape))}) channels-last)")
    return 0


# -- the parser -----------------------------------------------------------------------------------


def _workers(text):
    if text == "auto":
        return text
    try:
        return _number(int, 1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``modularcnn: error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(2, f"modularcnn: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    """The argument parser of the ``modularcnn`` command."""
    parser = _Parser(prog="modularcnn", description="Train and use modularcnn networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a network and report its test accuracy",
        description="Train a network on an image dataset: prints the summary, a progress bar per "
                    "epoch with validation figures, and the final test accuracy. With --save the "
                    "model file is rewritten (atomically) after every epoch and when training ends, "
                    "so Ctrl-C at any time leaves a usable model.")
    dataset_help = ("mnist, fashion_mnist, cifar10, or csv:TRAIN.csv[,TEST.csv] (rows: label, then "
                    "0..255 pixels of a square image; without TEST, 10%% of TRAIN is the test set). "
                    "Files are found in $MODULARCNN_DATA/<name>/ or the download cache")
    train.add_argument("--dataset", type=dataset_spec, default=dataset_spec("mnist"),
                       metavar="NAME", help=dataset_help + " (default: mnist)")
    train.add_argument("--model", type=model_spec, default="lenet", metavar="MODEL",
                       help="lenet, simple, deep, best, or an architecture file PATH.json holding "
                            "Net.get_config() (default: lenet)")
    train.add_argument("--epochs", type=_number(int, 1), default=3, help="default: 3")
    train.add_argument("--batch-size", type=_number(int, 1), default=64, help="default: 64")
    train.add_argument("--lr", type=_number(float, 0, low_open=True), default=None,
                       help="learning rate (default: the optimizer's, 0.001 for adam)")
    train.add_argument("--lr-decay", type=_number(float, 0, low_open=True), default=1.0,
                       metavar="FACTOR", help="multiply the learning rate by FACTOR after every "
                                              "epoch (default: 1, constant)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    train.add_argument("--num-examples", type=_number(int, 1), default=None, metavar="N",
                       help="use only the first N training images (before the validation split)")
    train.add_argument("--test-examples", type=_number(int, 1), default=None, metavar="N",
                       help="compute the final test accuracy on the first N test images only")
    held_out = train.add_mutually_exclusive_group()
    held_out.add_argument("--val-examples", type=_number(int, 0), default=None, metavar="N",
                          help="hold out N random training images for validation")
    held_out.add_argument("--val-split", type=_number(float, 0, 1, high_open=True), default=0.1,
                          metavar="FRACTION", help="hold out this fraction of the training images "
                                                   "for validation (default: 0.1)")
    train.add_argument("--augment", type=_number(int, 0), default=0, metavar="N",
                       help="train on N randomly shifted (up to 10%%), rotated (up to 10 degrees) "
                            "and zoomed (up to 10%%) copies of every image per epoch, drawn afresh "
                            "each epoch; an epoch is then N times longer (default: 0, off)")
    train.add_argument("--save", metavar="PATH.h5", default=None,
                       help="save the model here after every epoch and at the end")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds weights, shuffling, validation split and augmentation (default: 0)")
    train.add_argument("--workers", type=_workers, default="auto", metavar="N",
                       help="processes sharing each batch, one per core by default for runs of 100+ "
                            "batches ('auto'); 1 trains in one process. With --distributed mpi: "
                            "worker processes per rank (default: none, the rank computes its rows)")
    train.add_argument("--distributed", choices=["mpi"], default=None,
                       help="train data-parallel across MPI ranks (run under mpirun; needs "
                            "pip install modularcnn[mpi]); rank 0 prints and saves")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser(
        "evaluate", help="loss, accuracy, per-class accuracy and confusion matrix on a test set",
        description="Evaluate a saved model on a dataset's test images.")
    evaluate.add_argument("model", metavar="MODEL.h5")
    evaluate.add_argument("--dataset", type=dataset_spec, default=dataset_spec("mnist"),
                          metavar="NAME", help=dataset_help.replace("TRAIN.csv[,TEST.csv]", "FILE.csv")
                          .replace("without TEST, 10%% of TRAIN is the test set", "all rows are used")
                          + " (default: mnist)")
    evaluate.add_argument("--num-examples", type=_number(int, 1), default=None, metavar="N",
                          help="use only the first N test images")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser(
        "predict", help="predicted class and its probability for each image in a file",
        description="Predict the class of each image. IMAGES.npy: an array (N, H, W) or "
                    "(N, H, W, C) (or one image), uint8 pixel levels (divided by 255) or floats "
                    "in [0, 1]. IMAGES.csv: rows of a label then 0..255 pixels (load_csv's format, "
                    "as for training); the labels are shown beside the predictions with the accuracy.")
    predict.add_argument("model", metavar="MODEL.h5")
    predict.add_argument("images", metavar="IMAGES")
    predict.set_defaults(handler=command_predict)

    summary = commands.add_parser("summary", help="print a saved model's layers and parameter counts",
                                  description="Print the summary table of a saved model.")
    summary.add_argument("model", metavar="MODEL.h5")
    summary.set_defaults(handler=command_summary)

    convert = commands.add_parser(
        "convert", help="convert a model file (ours or Keras's) to ours (.h5) or to Keras (.keras)",
        description="Read MODEL (a modularcnn .h5, a Keras .keras archive or a Keras .h5 file, "
                    "recognised by content) and write it to OUTPUT: a Keras 3 archive if OUTPUT ends "
                    "in .keras, a modularcnn HDF5 file otherwise.")
    convert.add_argument("model", metavar="MODEL")
    convert.add_argument("output", metavar="OUTPUT")
    convert.set_defaults(handler=command_convert)

    export = commands.add_parser(
        "export", help="export a model file to ONNX (pip install modularcnn[onnx])",
        description="Write MODEL as an ONNX model with a dynamic batch axis and channels-last "
                    "input, as modularcnn takes it.")
    export.add_argument("model", metavar="MODEL")
    export.add_argument("output", metavar="OUTPUT.onnx")
    export.add_argument("--opset", type=_number(int, 13), default=17, help="default: 17")
    export.set_defaults(handler=command_export)
    return parser


def _one_line(error):
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("modularcnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as error:  # ModelFileError and DatasetError are ValueErrors
        print(f"modularcnn: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

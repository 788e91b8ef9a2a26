#!/usr/bin/env python
"""Side-by-side CPU benchmark of modularcnn and PyTorch on MNIST.

Trains LeNet-5 and the Keras MNIST example CNN ("cnn32": conv 32@3x3 same, pool, conv 64@3x3 same, pool,
dense 128, dense 10) for one epoch in each framework with the same architecture, Glorot-uniform weights
and zero biases, Adam 1e-3, batch 64, a seeded reshuffle every epoch, and the same number of threads
T (``--threads``, default: every core): PyTorch gets ``torch.set_num_threads(T)``; modularcnn trains with
``fit(workers=T)``, T worker processes with a one-thread BLAS each, and predicts in one process with a
T-thread BLAS. Then times ``predict`` on the 10,000 test images (batch 1,000) and single-image latency.
Each (framework, model) pair runs in a fresh subprocess, so peak memory (the workers' included) and
thread settings are its own.

    python scripts/benchmark.py                 # both models, both frameworks (torch if installed)
    python scripts/benchmark.py --json out.json
    python scripts/benchmark.py --repeat 3       # medians of 3 runs each, the frameworks taking turns
    python scripts/benchmark.py --models lenet --train-samples 6400   # a quick look

PyTorch is optional (``pip install -e ".[bench]"``); without it only modularcnn is measured.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = ("lenet", "cnn32")
FRAMEWORKS = ("modularcnn", "torch")
BATCH_SIZE = 64
PREDICT_BATCH = 1000
LATENCY_CALLS = 200


# --------------------------------------------------------------------------------------------------
# One measurement, in a child process
# --------------------------------------------------------------------------------------------------

def load_mnist(train_samples):
    import numpy as np

    from modularcnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    scale = np.float32(1 / 255)
    x_train = (x_train[:train_samples] * scale)[..., None]
    x_test = (x_test * scale)[..., None]
    return (x_train, y_train[:train_samples].astype(np.int64)), (x_test, y_test.astype(np.int64))


def modularcnn_model(name, seed):
    from modularcnn import Net
    from modularcnn.layers import Conv2D, Dense, Flatten, MaxPooling2D

    net = Net(input_shape=(28, 28, 1), seed=seed)
    if name == "lenet":
        layers = [Conv2D(6, 5, padding=2, activation="relu"), MaxPooling2D(2),
                  Conv2D(16, 5, activation="relu"), MaxPooling2D(2), Flatten(),
                  Dense(120, activation="relu"), Dense(84, activation="relu"),
                  Dense(10, activation="softmax")]
    else:
        layers = [Conv2D(32, 3, padding="same", activation="relu"), MaxPooling2D(2),
                  Conv2D(64, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten(),
                  Dense(128, activation="relu"), Dense(10, activation="softmax")]
    for layer in layers:
        net.add(layer)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def torch_model(name, seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if name == "lenet":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    for module in model.modules():  # the same initial-weight scheme as modularcnn's default
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


class PeakMemory:
    """Peak resident memory of this process plus the peaks of its child processes (training workers).

    ``ru_maxrss`` of the children would count each worker at this process's size: a child's peak
    includes the moment it was forked, before ``exec`` replaced it with a fresh interpreter. So on Linux
    a thread reads each child's own high-water mark (``VmHWM``) while they run.
    """

    def __init__(self):
        import threading

        self.children = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._stop.wait(0.1):
            for pid in self._child_pids():
                try:
                    with open(f"/proc/{pid}/status") as status:
                        for line in status:
                            if line.startswith("VmHWM:"):
                                kb = int(line.split()[1])
                                self.children[pid] = max(self.children.get(pid, 0), kb)
                except OSError:
                    pass  # it has just exited

    @staticmethod
    def _child_pids():
        pids = []
        try:
            for task in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{task}/children") as children:
                    pids += children.read().split()
        except OSError:
            pass
        return pids

    def total_mb(self):
        import resource

        self._stop.set()
        own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
        return (own_kb + sum(self.children.values())) / 1024


def median_latency_ms(call, sample):
    calls = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        call(sample)
        calls.append(time.perf_counter() - start)
    calls.sort()
    return 1e3 * calls[len(calls) // 2]


def measure_modularcnn(model_name, data, epochs, seed, threads):
    import numpy as np

    (x_train, y_train), (x_test, y_test) = data
    net = modularcnn_model(model_name, seed)
    start = time.perf_counter()
    # One worker process per thread, each with a one-thread BLAS: the threads PyTorch gets.
    net.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0,
            workers=threads)
    train_s = (time.perf_counter() - start) / epochs
    start = time.perf_counter()
    probabilities = net.predict(x_test, batch_size=PREDICT_BATCH)
    predict_s = time.perf_counter() - start
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
    latency = median_latency_ms(lambda image: net.predict(image, batch_size=1), x_test[:1])
    return train_s, predict_s, latency, accuracy


def measure_torch(model_name, data, epochs, seed, threads):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    (x_train, y_train), (x_test, y_test) = data
    x_train = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
    x_test = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
    y_train = torch.from_numpy(y_train)
    model = torch_model(model_name, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x_train)))
        for begin in range(0, len(x_train), BATCH_SIZE):
            index = order[begin:begin + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
    train_s = (time.perf_counter() - start) / epochs
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        outputs = [torch.softmax(model(x_test[i:i + PREDICT_BATCH]), dim=1)
                   for i in range(0, len(x_test), PREDICT_BATCH)]
        predict_s = time.perf_counter() - start
        accuracy = float((torch.cat(outputs).argmax(dim=1).numpy() == y_test).mean())
        latency = median_latency_ms(lambda image: torch.softmax(model(image), dim=1), x_test[:1])
    return train_s, predict_s, latency, accuracy


def blas_description():
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - show_config's layout differs across numpy versions
        name = "unknown"
    try:
        from threadpoolctl import threadpool_info

        threads = max((pool["num_threads"] for pool in threadpool_info()
                       if pool.get("user_api") == "blas"), default=None)
    except ImportError:
        threads = None
    return name, threads


def child(framework, model_name, threads, train_samples, epochs, seed):
    memory = PeakMemory()
    data = load_mnist(train_samples)
    if framework == "modularcnn":
        figures = measure_modularcnn(model_name, data, epochs, seed, threads)
        blas, blas_threads = blas_description()
        workers = threads if threads > 1 else 0
        if workers:  # the training ran in the workers, each with a one-thread BLAS
            blas_threads = 1
    else:
        figures = measure_torch(model_name, data, epochs, seed, threads)
        import torch

        blas, blas_threads = f"torch {torch.__version__.split('+')[0]} intra-op", torch.get_num_threads()
        workers = 0
    train_s, predict_s, latency_ms, accuracy = figures
    print(json.dumps({
        "framework": framework, "model": model_name, "train_s_per_epoch": train_s,
        "predict_s": predict_s, "latency_ms": latency_ms, "peak_rss_mb": memory.total_mb(),
        "test_accuracy": accuracy, "blas": blas, "blas_threads": blas_threads or threads,
        "train_workers": workers,
        "threads": threads, "train_samples": len(data[0][0]), "epochs": epochs,
    }))


# --------------------------------------------------------------------------------------------------
# The parent: run every pair, then print the table
# --------------------------------------------------------------------------------------------------

def torch_available():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except ImportError:
        return False


def run_pair(framework, model_name, args):
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--child", framework, model_name,
               "--threads", str(args.threads), "--train-samples", str(args.train_samples),
               "--epochs", str(args.epochs), "--seed", str(args.seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{framework} {model_name} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of_runs(runs):
    """One result per (framework, model): the median of each time over the repeated runs, the largest
    memory peak; accuracy and settings come from the first run (seeded runs train identically)."""
    merged = {}
    for run in runs:
        merged.setdefault((run["framework"], run["model"]), []).append(run)
    results = []
    for same in merged.values():
        result = dict(same[0], repeats=len(same))
        for key in ("train_s_per_epoch", "predict_s", "latency_ms"):
            result[key] = statistics.median(r[key] for r in same)
            result[f"{key}_runs"] = [r[key] for r in same]
        result["peak_rss_mb"] = max(r["peak_rss_mb"] for r in same)
        results.append(result)
    return results


def add_ratios(results):
    baseline = {r["model"]: r for r in results if r["framework"] == "torch"}
    for result in results:
        torch_result = baseline.get(result["model"])
        for key in ("train_s_per_epoch", "predict_s", "latency_ms", "peak_rss_mb"):
            ratio = result[key] / torch_result[key] if torch_result else None
            result[f"{key}_ratio"] = ratio


def print_table(results):
    from tabulate import tabulate

    def ratio(value):
        return "" if value is None else f"{value:.2f}"

    rows = [[r["framework"], r["model"], f"{r['train_s_per_epoch']:.1f}", ratio(r["train_s_per_epoch_ratio"]),
             f"{r['predict_s']:.2f}", ratio(r["predict_s_ratio"]), f"{r['latency_ms']:.2f}",
             ratio(r["latency_ms_ratio"]), f"{r['peak_rss_mb']:.0f}", f"{100 * r['test_accuracy']:.2f}%",
             f"{r['blas']} ×{r['blas_threads']}"
             + (f" in each of {r['train_workers']} workers" if r.get("train_workers") else "")]
            for r in results]
    headers = ["framework", "model", "train s/epoch", "ratio", "predict s", "ratio", "latency ms",
               "ratio", "peak RSS MB", "test acc", "BLAS × threads"]
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    first = results[0]
    print(f"\n{first['train_samples']:,} training images, {first['epochs']} epoch(s), batch {BATCH_SIZE}, "
          f"Adam 1e-3; predict: 10,000 images, batch {PREDICT_BATCH}; latency: median of "
          f"{LATENCY_CALLS} single-image calls; ratio = modularcnn / PyTorch (below 1 is faster).")
    if first["repeats"] > 1:
        print(f"Times are medians of {first['repeats']} runs, the frameworks taking turns; peak RSS is "
              "the largest of them.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: lenet,cnn32")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma-separated: modularcnn,torch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--train-samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every pair N times, the frameworks taking turns, and report medians "
                             "(this machine's speed drifts by tens of percent over minutes)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.threads, args.train_samples, args.epochs, args.seed)
        return
    models = [m for m in args.models.split(",") if m]
    frameworks = [f for f in args.frameworks.split(",") if f]
    for name, allowed, given in (("model", MODELS, models), ("framework", FRAMEWORKS, frameworks)):
        unknown = set(given) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}(s) {sorted(unknown)}; choose from {list(allowed)}")
    if "torch" in frameworks and not torch_available():
        print("PyTorch is not installed (pip install -e '.[bench]'): measuring modularcnn only.")
        frameworks.remove("torch")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    runs = [run_pair(framework, model, args)
            for model in models for _ in range(args.repeat) for framework in frameworks]
    results = median_of_runs(runs)
    add_ratios(results)
    if args.json == "-":
        print(json.dumps(results, indent=2))
        return
    print_table(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()

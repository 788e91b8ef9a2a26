#!/usr/bin/env python
"""Side-by-side CPU benchmark of modularcnn and PyTorch: the default suite on MNIST, or the model zoo.

The default suite trains LeNet-5 and the Keras MNIST example CNN ("cnn32": conv 32@3x3 same, pool, conv
64@3x3 same, pool, dense 128, dense 10) for one epoch of MNIST. ``--suite zoo`` runs every model of
``scripts/benchmark_zoo.py`` (both spellings of LeNet-5 and cnn32, the ``best`` preset, the small
ResNet, a CIFAR-style net, a strided net, LeNet with tanh and average pooling, an MLP, a DCGAN step,
a Conv1D net) on fits of 313 batches (``--batches``). Each framework gets the same architecture,
Glorot-uniform weights and zero biases, Adam 1e-3, batch 64, a seeded reshuffle every epoch, and the
same number of threads T (``--threads``, default: every core): PyTorch gets ``torch.set_num_threads(T)``;
modularcnn trains with ``fit(workers=T)``, T worker processes with a one-thread BLAS each, and predicts
in one process with a T-thread BLAS. Then both time ``predict`` on 10,000 test samples (batch 1,000)
and single-image latency, each after one warm-up call (PyTorch's first call with a new batch size
includes one-time set-up). Each (framework, model) pair runs in a fresh subprocess, so peak memory (the
workers' included) and thread settings are its own; with ``--repeat`` the frameworks take turns. After
the table come the worst and the median ratio over the models, and the load average. Before it
starts, the script byte-compiles modularcnn (:func:`byte_compile_modularcnn`).

    python scripts/benchmark.py                 # both models, both frameworks (torch if installed)
    python scripts/benchmark.py --suite zoo --repeat 3 --json zoo.json
    python scripts/benchmark.py --models lenet_seed,cifar --batches 50   # a quick look

PyTorch is optional (``pip install -e ".[bench]"``); without it only modularcnn is measured (asking
for ``--frameworks torch`` alone is an error naming that extra).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_zoo import SUITES, ZOO  # noqa: E402 - the models live beside this script

FRAMEWORKS = ("modularcnn", "torch")
BATCH_SIZE = 64
PREDICT_BATCH = 1000
LATENCY_CALLS = 200


# --------------------------------------------------------------------------------------------------
# One measurement, in a child process
# --------------------------------------------------------------------------------------------------

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
    call(sample)  # warm-up: a first call with a new batch size sets things up (PyTorch's kernels)
    calls = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        call(sample)
        calls.append(time.perf_counter() - start)
    calls.sort()
    return 1e3 * calls[len(calls) // 2]


def accuracy(outputs, y):
    """Share of right answers: the largest of several outputs, or one sigmoid output against 0.5."""
    import numpy as np

    if outputs.shape[-1] == 1:
        return float(np.mean((outputs > 0.5) == (y > 0.5)))
    return float(np.mean(outputs.argmax(axis=1) == y))


def measure_modularcnn(spec, data, epochs, seed, threads):
    (x_train, y_train), (x_test, y_test) = data
    net = spec.ours(seed)
    start = time.perf_counter()
    # One worker process per thread, each with a one-thread BLAS: the threads PyTorch gets.
    net.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0,
            workers=threads)
    train_s = (time.perf_counter() - start) / epochs
    net.predict(x_test[:PREDICT_BATCH], batch_size=PREDICT_BATCH)  # warm-up, as for PyTorch
    start = time.perf_counter()
    outputs = net.predict(x_test, batch_size=PREDICT_BATCH)
    predict_s = time.perf_counter() - start
    latency = median_latency_ms(lambda image: net.predict(image, batch_size=1), x_test[:1])
    return train_s, predict_s, latency, accuracy(outputs, y_test)


def measure_torch(spec, data, epochs, seed, threads):
    import numpy as np
    import torch

    from benchmark_zoo import torch_layout

    torch.set_num_threads(threads)
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = torch_layout(x_train), torch_layout(x_test)
    y_train = torch.from_numpy(y_train)
    torch.manual_seed(seed)
    model = spec.theirs()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # On logits, as modularcnn fuses its softmax (sigmoid) with the cross-entropy.
    binary = spec.loss == "binary"
    loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
    squash = torch.sigmoid if binary else (lambda logits: torch.softmax(logits, dim=1))
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
        squash(model(x_test[:PREDICT_BATCH]))  # warm-up: one-time set-up for this batch size
        start = time.perf_counter()
        outputs = [squash(model(x_test[i:i + PREDICT_BATCH]))
                   for i in range(0, len(x_test), PREDICT_BATCH)]
        predict_s = time.perf_counter() - start
        latency = median_latency_ms(lambda image: squash(model(image)), x_test[:1])
    return train_s, predict_s, latency, accuracy(torch.cat(outputs).numpy(), y_test)


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


def child(framework, model_name, threads, train_samples, epochs, seed, predict_samples):
    from benchmark_zoo import ZOO, load_data

    memory = PeakMemory()
    spec = ZOO[model_name]
    data = load_data(spec.data, train_samples, predict_samples)
    if framework == "modularcnn":
        figures = measure_modularcnn(spec, data, epochs, seed, threads)
        blas, blas_threads = blas_description()
        workers = threads if threads > 1 else 0
        if workers:  # the training ran in the workers, each with a one-thread BLAS
            blas_threads = 1
    else:
        figures = measure_torch(spec, data, epochs, seed, threads)
        import torch

        blas, blas_threads = f"torch {torch.__version__.split('+')[0]} intra-op", torch.get_num_threads()
        workers = 0
    train_s, predict_s, latency_ms, accuracy = figures
    print(json.dumps({
        "framework": framework, "model": model_name, "train_s_per_epoch": train_s,
        "predict_s": predict_s, "latency_ms": latency_ms, "peak_rss_mb": memory.total_mb(),
        "test_accuracy": accuracy, "blas": blas, "blas_threads": blas_threads or threads,
        "train_workers": workers,
        "threads": threads, "train_samples": len(data[0][0]), "predict_samples": len(data[1][0]),
        "epochs": epochs,
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


def byte_compile_modularcnn():
    """Write the ``.pyc`` files of the modularcnn being measured, as ``pip install`` does (PyTorch's
    are in site-packages already). Without them every process compiles the sources it imports, and
    a ``fit``'s first worker start-up is in its training time: on this project's machine, where
    ``PYTHONDONTWRITEBYTECODE=1`` is set and a fresh checkout has none, a worker took 0.50 s to be
    ready instead of 0.28 s."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("modularcnn")
    for folder in spec.submodule_search_locations or ():
        compileall.compile_dir(folder, quiet=1)


def run_pair(framework, model_name, args):
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--child", framework, model_name,
               "--threads", str(args.threads), "--train-samples", str(args.train_samples),
               "--epochs", str(args.epochs), "--seed", str(args.seed),
               "--predict-samples", str(args.predict_samples)]
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

    rows = [[r["framework"], r["model"], f"{r['train_s_per_epoch']:.2f}", ratio(r["train_s_per_epoch_ratio"]),
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
          f"Adam 1e-3; predict: {first['predict_samples']:,} samples, batch {PREDICT_BATCH}; latency: median of "
          f"{LATENCY_CALLS} single-image calls; ratio = modularcnn / PyTorch (below 1 is faster).")
    if first["repeats"] > 1:
        print(f"Times are medians of {first['repeats']} runs, the frameworks taking turns; peak RSS is "
              "the largest of them.")


RATIO_KEYS = (("train_s_per_epoch", "train"), ("predict_s", "predict"), ("latency_ms", "latency"),
              ("peak_rss_mb", "peak RSS"))


def summarize(results):
    """For each ratio (train, predict, latency, peak RSS): the worst model and ratio, and the median
    ratio over the models, of modularcnn against PyTorch; empty without PyTorch's results."""
    ours = [r for r in results if r["framework"] == "modularcnn" and r.get("train_s_per_epoch_ratio")]
    summary = {}
    for key, label in RATIO_KEYS:
        ratios = {r["model"]: r[f"{key}_ratio"] for r in ours}
        if ratios:
            worst = max(ratios, key=ratios.get)
            summary[label] = {"worst_model": worst, "worst": ratios[worst],
                              "median": statistics.median(ratios.values())}
    return summary


def print_summary(summary):
    if not summary:
        return
    print("\nmodularcnn / PyTorch over the models: "
          + "; ".join(f"{label} worst {entry['worst']:.2f} ({entry['worst_model']}), median "
                      f"{entry['median']:.2f}" for label, entry in summary.items()))


def machine_description(load_before):
    return {"cpus": os.cpu_count(), "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()), "python": sys.version.split()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="zoo models: " + ", ".join(ZOO))
    parser.add_argument("--suite", choices=sorted(SUITES), default="default",
                        help="default: lenet and cnn32 on full MNIST epochs; zoo: every model of "
                             "scripts/benchmark_zoo.py on fits of 313 batches")
    parser.add_argument("--models", help="comma-separated models (default: the suite's); any of the zoo")
    parser.add_argument("--frameworks", help="comma-separated: modularcnn,torch (default: both)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--train-samples", type=int,
                        help="training samples per epoch (default: 60,000; the zoo: 313 batches)")
    parser.add_argument("--batches", type=int, metavar="N",
                        help=f"training batches per epoch ({BATCH_SIZE} samples each) instead of "
                             "--train-samples")
    parser.add_argument("--predict-samples", type=int, default=10_000,
                        help="test samples that predict runs on (default 10,000; fewer for a smoke test)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every pair N times, the frameworks taking turns, and report medians "
                             "(this machine's speed drifts by tens of percent over minutes)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write {results, summary, machine} as JSON ('-' for stdout only)")
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.threads, args.train_samples, args.epochs, args.seed,
              args.predict_samples)
        return
    if args.batches is not None and args.train_samples is not None:
        parser.error("give --batches or --train-samples, not both")
    for option in ("batches", "train_samples", "predict_samples", "repeat", "epochs", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.batches is not None:
        args.train_samples = args.batches * BATCH_SIZE
    elif args.train_samples is None:
        args.train_samples = 313 * BATCH_SIZE if args.suite == "zoo" else 60000
    models = [m for m in args.models.split(",") if m] if args.models else list(SUITES[args.suite])
    frameworks = [f for f in (args.frameworks or ",".join(FRAMEWORKS)).split(",") if f]
    for name, allowed, given in (("model", tuple(ZOO), models), ("framework", FRAMEWORKS, frameworks)):
        unknown = set(given) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}(s) {sorted(unknown)}; choose from {list(allowed)}")
    if "torch" in frameworks and not torch_available():
        if frameworks == ["torch"]:
            parser.error("PyTorch is not installed: pip install -e '.[bench]' (the bench extra)")
        print("PyTorch is not installed (pip install -e '.[bench]'): measuring modularcnn only.",
              file=sys.stderr)
        frameworks.remove("torch")
    if "modularcnn" in frameworks:
        byte_compile_modularcnn()
    load_before = os.getloadavg()
    runs = []
    for model in models:
        for repeat in range(args.repeat):
            # Turns: the framework that went second goes first next time (the machine drifts).
            order = frameworks if repeat % 2 == 0 else frameworks[::-1]
            runs += [run_pair(framework, model, args) for framework in order]
    results = median_of_runs(runs)
    add_ratios(results)
    summary = summarize(results)
    report = {"results": results, "summary": summary, "machine": machine_description(load_before)}
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return
    print_table(results)
    print_summary(summary)
    machine = report["machine"]
    print(f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in machine['load_average_before'])}; "
          f"after: {', '.join(f'{v:.2f}' for v in machine['load_average_after'])} on {machine['cpus']} CPUs.")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()

"""scripts/benchmark.py runs end to end (on a tiny subset) and reports every column; no timing asserts."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"


@pytest.mark.slow
def test_benchmark_script_reports_both_models(mnist_dir, tmp_path):
    env = dict(os.environ, MODULARCNN_DATA=str(mnist_dir.parent))
    has_torch = importlib.util.find_spec("torch") is not None
    frameworks = "modularcnn,torch" if has_torch else "modularcnn"
    done = subprocess.run([sys.executable, str(SCRIPT), "--train-samples", "256", "--threads", "1",
                           "--frameworks", frameworks, "--json", "-"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert {(r["framework"], r["model"]) for r in results} >= {("modularcnn", "lenet"),
                                                               ("modularcnn", "cnn32")}
    for result in results:
        assert result["train_samples"] == 256 and 0 <= result["test_accuracy"] <= 1
        assert result["train_s_per_epoch"] > 0 and result["peak_rss_mb"] > 0
        if "torch" in frameworks:
            assert result["train_s_per_epoch_ratio"] > 0


@pytest.mark.slow
def test_benchmark_repeats_and_trains_with_one_worker_per_thread(mnist_dir):
    env = dict(os.environ, MODULARCNN_DATA=str(mnist_dir.parent))
    done = subprocess.run([sys.executable, str(SCRIPT), "--train-samples", "256", "--threads", "2",
                           "--models", "lenet", "--frameworks", "modularcnn", "--repeat", "2"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "×1 in each of 2 workers" in done.stdout
    assert "Times are medians of 2 runs" in done.stdout
    done = subprocess.run([sys.executable, str(SCRIPT), "--repeat", "0"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--repeat must be at least 1, got 0" in done.stderr


def _zoo_models():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from benchmark_zoo import SUITES
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return SUITES["zoo"]


@pytest.mark.slow
def test_zoo_suite_runs_every_model_on_a_few_batches(mnist_dir):
    """Every zoo model trains, predicts and answers one image in both frameworks (ours alone when
    torch is not importable), and the summary names the worst and median ratios."""
    env = dict(os.environ, MODULARCNN_DATA=str(mnist_dir.parent))
    has_torch = importlib.util.find_spec("torch") is not None
    frameworks = ["modularcnn", "torch"] if has_torch else ["modularcnn"]
    done = subprocess.run([sys.executable, str(SCRIPT), "--suite", "zoo", "--batches", "2",
                           "--predict-samples", "50", "--threads", "1",
                           "--frameworks", ",".join(frameworks), "--json", "-"],
                          env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    models = _zoo_models()
    assert {"lenet", "lenet_seed", "cnn32", "cnn32_seed", "best", "resnet", "cifar", "strided",
            "lenet_tanh_avg", "mlp", "dcgan", "conv1d"} <= set(models)
    assert {(r["framework"], r["model"]) for r in report["results"]} == {
        (framework, model) for framework in frameworks for model in models}
    for result in report["results"]:
        assert result["train_samples"] == 128 and result["predict_samples"] == 50
        assert result["train_s_per_epoch"] > 0 and result["predict_s"] > 0
        assert result["latency_ms"] > 0 and result["peak_rss_mb"] > 0
        assert 0 <= result["test_accuracy"] <= 1
    assert len(report["machine"]["load_average_before"]) == 3
    if has_torch:
        assert set(report["summary"]) == {"train", "predict", "latency", "peak RSS"}
        for entry in report["summary"].values():
            assert entry["worst_model"] in models and entry["worst"] >= entry["median"] > 0
    else:
        assert report["summary"] == {}


def test_benchmark_refuses_bad_options_before_running_anything():
    for arguments, message in ((["--models", "nope"], "unknown model(s) ['nope']"),
                               (["--batches", "0"], "--batches must be at least 1, got 0"),
                               (["--batches", "2", "--train-samples", "64"], "not both")):
        done = subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2 and message in done.stderr, (arguments, done.stderr)

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
    results = json.loads(done.stdout)
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

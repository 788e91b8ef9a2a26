"""README's ``### Safety`` section states the library's bounds: each number there is read from the
constant that enforces it, so the text cannot drift from the code (issue 14, "What it must show")."""

import os
import re

import pytest

from modularcnn import initializers, stateful_metrics, summary, validation
from modularcnn.datasets import _download, idx
from modularcnn.saving import hdf5_format, keras_format, keras_functional
from modularcnn.training import transport
from modularcnn.training.strategies import policy
from tests import test_fuzz

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
MIB, GIB = 2**20, 2**30


def safety_section():
    text = open(README, encoding="utf-8").read()
    match = re.search(r"^### Safety\n(.*?)(?=^#{1,3} )", text, re.S | re.M)
    assert match, "README.md has no '### Safety' section"
    return " ".join(match.group(1).split())  # line breaks as spaces, so phrases match across lines


def seconds(value):
    return f"{value:g} s"


# (phrase the section must contain, built from the constant that enforces it)
PHRASES = [
    f"more than {validation.MAX_ARRAY_ELEMENTS:,} elements",
    f"at most {hdf5_format.MAX_EXPANSION_RATIO:,} bytes per byte it stores, "
    f"plus {hdf5_format.STORAGE_SLACK_BYTES // MIB} MiB",
    f"`config.json` may be at most {keras_format.MAX_CONFIG_BYTES // MIB} MiB",
    f"`model.weights.h5` at most {keras_format.MAX_WEIGHTS_BYTES // GIB} GiB",
    f"at most {keras_functional.MAX_LAYERS:,} layers, {keras_functional.MAX_CALLS:,} layer calls "
    f"and {keras_functional.MAX_DEPTH} levels",
    f"drawn {initializers.DRAW_PIECE:,} float64 values at a time",
    f"plus {initializers.DRAW_PIECE * 8 // MIB} MiB",
    f"at most {idx.MAX_IDX_DIMENSIONS} dimensions and {idx.MAX_IDX_ELEMENTS:,} elements",
    f"at most {idx.MAX_GZIP_EXPANSION:,} times its size",
    f"waits at most {seconds(_download.TIMEOUT_S)} on a mirror",
    f"more than {policy.MAX_WORKERS_PER_CORE} workers per CPU core",
    f"alive every {seconds(transport.HEARTBEAT_SECONDS)}",
    f"nothing for {seconds(transport.SILENCE_SECONDS)}",
    f"not ready {seconds(transport.START_SECONDS)} after",
    f"within {seconds(transport.INTERRUPT_GRACE_SECONDS)}",
    "NonFiniteLossError",
    f"at most {stateful_metrics.MAX_THRESHOLDS:,} thresholds",
    f"at most {summary.MAX_LINE:,} characters wide",
    f"under {test_fuzz.MEMORY_HEADROOM // GIB} GiB of extra address space and a "
    f"{test_fuzz.WATCHDOG_SECONDS} s watchdog",
]


@pytest.mark.parametrize("phrase", PHRASES)
def test_the_safety_section_states_the_bound_the_code_enforces(phrase):
    assert phrase in safety_section()


def test_the_stated_element_bound_is_eight_gib_of_float32():
    assert validation.MAX_ARRAY_ELEMENTS == 2**31 and "2³¹, 8 GiB of float32" in safety_section()

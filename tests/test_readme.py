"""Every ```python and ```bash block of README.md runs as written, in order, on a small MNIST subset.

How the README is read (README.md, section "Tests", says the same for its readers):

- **Chains.** The blocks of one ``##`` section (its ``###`` subsections included) form a chain: its
  Python blocks share one namespace, in one fresh Python process, and every block of the chain runs
  in one scratch folder, so a block may use what the blocks above it in its section defined or wrote.
  A block preceded by ``<!-- readme-test: continue -->`` continues the previous chain instead (a
  section that goes on with the model of the one before).
- **Bash blocks** run in ``bash -e`` as real subprocesses: ``modularcnn`` is this checkout's command
  line (``python -m modularcnn.cli``) and ``python`` is the interpreter running the tests; ``scripts/``
  and ``tests/data/`` are the repository's (a reader runs the README's commands in a checkout). A block written as a shell session (``$ command`` lines followed by output)
  runs command by command, and each command's output is compared with the lines under it.
- **Expected output.** A ```text block that follows a block directly (only blank lines between) is
  what that block prints; it is compared with :mod:`doctest`'s rules with ELLIPSIS (``...`` stands
  for any text, so figures that change between runs are written as ``...``).
- **Markers** (an HTML comment on the line before the block, invisible on GitHub):
  ``<!-- readme-test: skip (why) -->`` never runs the block (installing packages, say), and
  ``<!-- readme-test: file NAME -->`` writes the block to ``NAME`` for the next block to run. Any
  other ``readme-test`` comment is an error, so a misspelt marker cannot hide a block.
- **Optional extras.** A block that needs an optional package that is not installed (onnxruntime,
  matplotlib, mpirun, ...) is skipped with that reason, with the rest of its chain.
- **Small and fast.** ``MODULARCNN_DATA`` points at a copy of the first ``TRAIN_IMAGES`` training and
  ``TEST_IMAGES`` test images of the real MNIST, so ``mnist.load_data()``, ``modularcnn train`` and
  the scripts all see the subset, and ``MODULARCNN_README_EPOCHS`` caps every ``fit`` at ``EPOCHS``
  epochs past its ``initial_epoch`` (``tests/readme/sitecustomize.py``, imported by every Python
  process the blocks start). The blocks' text is never changed.
"""

import doctest
import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.readme import run_blocks

README = REPO_ROOT / "README.md"
HELPERS = REPO_ROOT / "tests" / "readme"
RUNNER = HELPERS / "run_blocks.py"
TRAIN_IMAGES = 2000
TEST_IMAGES = 500
EPOCHS = 2
CHAIN_TIMEOUT = 600  # seconds; the whole README takes about a minute

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
RUN_KINDS = ("python", "bash")
OUTPUT_KINDS = ("text",)


@dataclass
class Block:
    kind: str            # the fence's language: "python", "bash", "text", "" ...
    source: str
    line: int            # README line of the block's first line of code
    section: str         # the "##" heading it is under
    marker: str = ""     # the readme-test marker before it, if any
    expected: "Block" = None   # the ```text block that shows its output
    follows_directly: bool = False  # only blank lines between the previous block and this one


@dataclass
class Chain:
    name: str
    blocks: list = field(default_factory=list)


def parse_readme(text):
    """The README's fenced blocks, in order, each with its section, marker and expected output."""
    blocks, section, marker, fence, since_block = [], "(top)", "", None, None
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.startswith("```"):
                blocks.append(Block(fence[0], "\n".join(fence[2]) + "\n", fence[1], section,
                                    fence[3], follows_directly=fence[4]))
                fence, since_block = None, []
            else:
                fence[2].append(line)
            continue
        opened = FENCE.match(line)
        if opened:
            direct = since_block is not None and all(not s.strip() for s in since_block)
            fence = (opened.group(1), number + 1, [], marker, direct)
            marker = ""
            continue
        found = MARKER.match(line)
        if found:
            marker = found.group(1)
        elif line.strip():
            if marker and not line.startswith("<!--"):
                raise ValueError(f"README.md:{number}: the readme-test marker {marker!r} is not "
                                 "followed by a code block")
            if line.startswith("## "):
                section = line[3:].strip()
        if since_block is not None:
            since_block.append(line)
    if fence is not None:
        raise ValueError(f"README.md:{fence[1] - 1}: code block never closed")
    for previous, block in zip(blocks, blocks[1:]):
        if (block.kind in OUTPUT_KINDS and block.follows_directly and previous.kind in RUN_KINDS
                and not previous.marker.startswith("skip")):
            previous.expected = block
    return blocks


def check_marker(block):
    """The marker's meaning, ``(action, argument)``; unknown markers are errors."""
    if not block.marker:
        return "run", None
    skip = re.fullmatch(r"skip \((.+)\)", block.marker)
    if skip:
        return "skip", skip.group(1)
    named = re.fullmatch(r"file (\S+)", block.marker)
    if named and block.kind == "python":
        return "file", named.group(1)
    if block.marker == "continue" and block.kind in RUN_KINDS:
        return "continue", None
    raise ValueError(f"README.md:{block.line - 2}: unknown readme-test marker {block.marker!r} "
                     f"before a {block.kind or 'plain'} block (use 'skip (reason)', "
                     "'file NAME' or 'continue')")


def chains_of(blocks):
    """The runnable blocks grouped into chains (see the module docstring)."""
    chains = []
    for block in blocks:
        if block.kind not in RUN_KINDS:
            continue
        action, _ = check_marker(block)
        if action == "skip":
            continue
        if action == "continue" and chains:
            chains[-1].name += f" + {block.section}"
        elif not chains or chains[-1].blocks[-1].section != block.section:
            chains.append(Chain(block.section))
        chains[-1].blocks.append(block)
    return chains


try:  # a malformed README fails test_every_code_block_runs_or_says_why_not, not the collection
    BLOCKS = parse_readme(README.read_text(encoding="utf-8"))
    CHAINS, README_ERROR = chains_of(BLOCKS), None
except ValueError as error:
    BLOCKS, CHAINS, README_ERROR = [], [], error


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


# --------------------------------------------------------------------------------------------------
# The environment the blocks run in
# --------------------------------------------------------------------------------------------------

def write_idx(path, array):
    """``array`` (uint8) as an IDX file: magic (0, 0, 8 = ubyte, rank), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def readme_env(mnist_dir, tmp_path_factory):
    """Environment variables for the blocks: the MNIST subset, the epoch cap, this checkout."""
    from modularcnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=mnist_dir)
    data = tmp_path_factory.mktemp("readme-data")
    (data / "mnist").mkdir()
    write_idx(data / "mnist" / "train-images-idx3-ubyte", x_train[:TRAIN_IMAGES])
    write_idx(data / "mnist" / "train-labels-idx1-ubyte", y_train[:TRAIN_IMAGES])
    write_idx(data / "mnist" / "t10k-images-idx3-ubyte", x_test[:TEST_IMAGES])
    write_idx(data / "mnist" / "t10k-labels-idx1-ubyte", y_test[:TEST_IMAGES])

    bin_dir = tmp_path_factory.mktemp("readme-bin")
    for name, command in (("python", f'exec "{sys.executable}" "$@"'),
                          ("modularcnn", f'exec "{sys.executable}" -m modularcnn.cli "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{command}\n")
        (bin_dir / name).chmod(0o755)

    env = dict(os.environ)
    env.update({
        "PATH": os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO_ROOT)]),
        "MODULARCNN_DATA": str(data),
        "MODULARCNN_OFFLINE": "1",
        "MODULARCNN_README_EPOCHS": str(EPOCHS),
        "MPLBACKEND": "Agg",
        "KERAS_BACKEND": "torch",
        "PYTHONUNBUFFERED": "1",
        # On a loaded machine OpenBLAS's threads spin against each other (README, "Performance").
        "OPENBLAS_NUM_THREADS": "1",
    })
    return env


def run_chain(chain, folder, env, readme=README):
    """Run ``chain`` in ``folder``; returns the runner's results, one per block."""
    (folder / "scripts").symlink_to(REPO_ROOT / "scripts")
    (folder / "tests").mkdir()  # the Keras fixtures the README opens, as in a checkout
    (folder / "tests" / "data").symlink_to(REPO_ROOT / "tests" / "data")
    blocks = []
    for block in chain.blocks:
        action, argument = check_marker(block)
        kind = "file" if action == "file" else block.kind
        blocks.append({"kind": kind, "source": block.source, "line": block.line, "name": argument})
    (folder / "chain.json").write_text(json.dumps(blocks))
    done = subprocess.run([sys.executable, str(RUNNER), "chain.json", "results.json", str(readme)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=CHAIN_TIMEOUT)
    results_file = folder / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    assert done.returncode == 0 and len(results) == len(blocks), (
        f"the block runner stopped (exit status {done.returncode}) after {len(results)} of "
        f"{len(blocks)} blocks\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    return results


def output_mismatch(expected, got):
    """A message when ``got`` does not match the README's ``expected`` output, else None."""
    want = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines()) + "\n"
    have = "\n".join(line.rstrip() for line in got.strip("\n").splitlines()) + "\n"
    if doctest.OutputChecker().check_output(want, have, doctest.ELLIPSIS):
        return None
    return f"README shows:\n{want}it printed:\n{have}"


def check_outputs(block, result):
    """Mismatches between what ``block`` printed and the output the README shows for it."""
    problems = []
    if block.kind == "bash" and isinstance(result.get("output"), list):
        for (command, expected), got in zip(run_blocks.session_commands(block.source), result["output"]):
            mismatch = output_mismatch(expected, got) if expected.strip() else None
            if mismatch:
                problems.append(f"README.md:{block.line} `$ {command}`: {mismatch}")
    if block.expected is not None:
        mismatch = output_mismatch(block.expected.source, result.get("output") or "")
        if mismatch:
            problems.append(f"README.md:{block.line} (output shown at line "
                            f"{block.expected.line}): {mismatch}")
    return problems


@pytest.mark.parametrize("chain", CHAINS, ids=[slug(chain.name) for chain in CHAINS])
def test_readme_blocks_run(chain, readme_env, tmp_path):
    results = run_chain(chain, tmp_path, readme_env)
    failures = [f"README.md:{block.line} ({block.kind} block) failed:\n{result['error']}"
                for block, result in zip(chain.blocks, results) if result["status"] == "failed"]
    assert not failures, "\n\n".join(failures)
    problems = [problem for block, result in zip(chain.blocks, results)
                if result["status"] == "passed" for problem in check_outputs(block, result)]
    assert not problems, "\n\n".join(problems)
    skipped = [f"README.md:{block.line}: {result['reason']}"
               for block, result in zip(chain.blocks, results) if result["status"] == "skipped"]
    if skipped:
        pytest.skip("; ".join(skipped))


# --------------------------------------------------------------------------------------------------
# The reader of the README itself
# --------------------------------------------------------------------------------------------------

def test_every_code_block_runs_or_says_why_not():
    """Each python/bash block runs, or carries a skip marker with a reason; there are few of those."""
    if README_ERROR is not None:
        raise README_ERROR
    runnable = [block for block in BLOCKS if block.kind in RUN_KINDS]
    skipped = [(block.line, check_marker(block)[1]) for block in runnable
               if check_marker(block)[0] == "skip"]
    ran = sum(len(chain.blocks) for chain in CHAINS)
    assert ran + len(skipped) == len(runnable)
    assert ran >= 28 and len(skipped) <= 3, (ran, skipped)
    # The outputs the README shows are checked: a ```text turned back into a plain fence, or moved
    # away from its block, would silently stop being compared.
    compared = [block.line for chain in CHAINS for block in chain.blocks
                if block.expected is not None or run_blocks.session_commands(block.source)]
    assert len(compared) >= 18, compared
    for block in BLOCKS:  # an output-looking block with a language we do not know is a typo
        assert block.kind in RUN_KINDS + OUTPUT_KINDS + ("",), f"README.md:{block.line}: {block.kind!r}"


def test_parser_reads_markers_chains_and_outputs():
    text = "\n".join([
        "## One", "```python", "a = 1", "```", "", "```text", "1", "```",
        "<!-- readme-test: skip (installs packages) -->", "```bash", "pip install x", "```",
        "## Two", "<!-- readme-test: continue -->", "```python", "print(a)", "```",
        "## Three", "```bash", "$ echo hi", "hi", "```", "Prose.", "```text", "not an output", "```",
    ])
    blocks = parse_readme(text)
    assert [b.kind for b in blocks] == ["python", "text", "bash", "python", "bash", "text"]
    assert blocks[0].expected is blocks[1] and blocks[4].expected is None
    assert check_marker(blocks[2]) == ("skip", "installs packages")
    chains = chains_of(blocks)
    assert [c.name for c in chains] == ["One + Two", "Three"]
    assert [b.line for b in chains[0].blocks] == [3, 16]
    with pytest.raises(ValueError, match="unknown readme-test marker"):
        check_marker(Block("python", "", 5, "x", marker="skp (typo)"))
    with pytest.raises(ValueError, match="not followed by a code block"):
        parse_readme("<!-- readme-test: skip (x) -->\nProse.\n")


def test_a_broken_block_fails_with_its_readme_line(tmp_path, readme_env):
    """The runner reports an undefined name, a failing command and a wrong output, by README line."""
    text = "\n".join([
        "## Broken", "```python", "import numpy as np", "x = np.zeros(3)", "print(undefined_net)", "```",
        "```python", "print('never runs')", "```",
        "## Wrong output", "```python", "print(41 + 1)", "```", "```text", "43", "```",
        "## Failing command", "```bash", "modularcnn summary missing.h5", "```",
    ]) + "\n"
    (tmp_path / "README.md").write_text(text)
    chains = chains_of(parse_readme(text))
    folders = [tmp_path / name for name in "abc"]
    for folder in folders:
        folder.mkdir()
    broken = run_chain(chains[0], folders[0], readme_env, tmp_path / "README.md")
    assert broken[0]["status"] == "failed" and "NameError" in broken[0]["error"]
    assert 'README.md", line 5' in broken[0]["error"] and "print(undefined_net)" in broken[0]["error"]
    assert broken[1]["status"] == "skipped"
    wrong = run_chain(chains[1], folders[1], readme_env)
    assert wrong[0]["status"] == "passed" and check_outputs(chains[1].blocks[0], wrong[0])
    failing = run_chain(chains[2], folders[2], readme_env)
    assert failing[0]["status"] == "failed" and "exit status 1" in failing[0]["error"]


def test_epoch_cap_applies_in_the_blocks_processes(tmp_path, readme_env):
    """``MODULARCNN_README_EPOCHS`` caps fit in the block's process and in a ``python`` it starts."""
    script = ("import numpy as np\nfrom modularcnn import Net\nfrom modularcnn.layers import Dense\n"
              "net = Net(input_shape=(3,), seed=0)\nnet.add(Dense(2, activation='softmax'))\n"
              "x, y = np.ones((8, 3), np.float32), np.arange(8) % 2\n"
              "print(len(net.fit(x, y, epochs=9, verbose=0).history['loss']),\n"
              "      len(net.fit(x, y, epochs=9, initial_epoch=5, verbose=0).history['loss']))\n")
    (tmp_path / "fit.py").write_text(script)
    blocks = parse_readme("## Cap\n```python\n" + script + "```\n```text\n2 2\n```\n"
                          "```bash\n$ python fit.py\n2 2\n```\n")
    results = run_chain(chains_of(blocks)[0], tmp_path, readme_env)
    assert [r["status"] for r in results] == ["passed", "passed"]
    assert not check_outputs(blocks[0], results[0]) and not check_outputs(blocks[2], results[1])

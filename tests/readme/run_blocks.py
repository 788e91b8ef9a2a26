"""Runs one chain of README blocks in order, as a reader would in one fresh Python session.

Usage: ``python run_blocks.py CHAIN.json RESULTS.json`` with the working directory set to the
chain's scratch folder (tests/test_readme.py does this). ``CHAIN.json`` is a list of blocks,
``{"kind": "python" | "bash" | "file", "source": str, "line": int, "name": str}``:

- ``python`` blocks run with ``exec`` in one namespace shared by the whole chain, compiled with the
  README's own line numbers, so a traceback points at the line of README.md that failed;
- ``bash`` blocks run in ``bash -e -o pipefail``; a block written as a shell session (lines starting
  with ``$ ``) runs each command on its own and keeps its output for the caller to compare;
- ``file`` blocks are written to the file they name (a script the next block runs).

``RESULTS.json`` gets one entry per block: ``{"status": "passed" | "failed" | "skipped",
"output": str or list of str, "error": str, "reason": str}``. Once a block fails or is skipped for
a missing optional package, the rest of the chain is skipped: they continue it.
"""

import contextlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import traceback

README = sys.argv[3] if len(sys.argv) > 3 else "README.md"

# Packages the README's blocks may use that are optional extras, with the extra that installs them.
OPTIONAL = {"onnx": "onnx", "onnxruntime": "dev", "matplotlib": "plot", "torch": "bench",
            "keras": "keras", "mpi4py": "mpi", "PIL": "images", "nbformat": "notebook"}
# Commands some bash blocks start that come with an optional extra (or a cluster).
OPTIONAL_COMMANDS = {"mpirun": "mpi", "mpiexec": "mpi", "srun": "a Slurm cluster"}
EXTRA_HINT = re.compile(r"pip install (?:-e )?[\"']?(?:modularcnn|\.)\[(\w+)\]")
BASH_TIMEOUT = 300


def missing_optional(error):
    """The optional top-level package an ImportError is about, or None."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    if name in OPTIONAL and importlib.util.find_spec(name) is None:
        return f"needs {name} (pip install modularcnn[{OPTIONAL[name]}]), which is not installed"
    return None


def run_python(block, namespace):
    out = io.StringIO()
    try:
        code = compile("\n" * (block["line"] - 1) + block["source"], README, "exec")
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    except ImportError as error:
        reason = missing_optional(error)
        if reason:
            return {"status": "skipped", "reason": reason, "output": out.getvalue()}
        return {"status": "failed", "error": traceback.format_exc(), "output": out.getvalue()}
    except BaseException:  # a SystemExit or KeyboardInterrupt from a block is a failure too
        return {"status": "failed", "error": traceback.format_exc(), "output": out.getvalue()}
    return {"status": "passed", "output": out.getvalue()}


def session_commands(source):
    """``[(command, expected output)]`` of a shell-session block (``$ command`` lines)."""
    commands = []
    for line in source.splitlines():
        if line.startswith("$ "):
            commands.append([line[2:], []])
        elif commands:
            commands[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in commands]


def skip_reason_for_commands(source):
    for word in re.findall(r"(?:^|[;&|(]\s*|\s)(mpirun|mpiexec|srun)\s", source, re.M):
        if shutil.which(word) is None:
            return f"needs {word} ({OPTIONAL_COMMANDS[word]}), which is not installed"
    return None


def run_shell(script):
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=BASH_TIMEOUT)
    return done.returncode, done.stdout, done.stderr


def skip_for_missing_extra(text):
    """A reason to skip when a failed command asked for an optional extra that is not installed."""
    for extra in EXTRA_HINT.findall(text):
        modules = [name for name, wanted in OPTIONAL.items() if wanted == extra]
        if any(importlib.util.find_spec(name) is None for name in modules):
            return f"needs the [{extra}] extra, which is not installed"
    return None


def run_bash(block):
    reason = skip_reason_for_commands(block["source"])
    if reason:
        return {"status": "skipped", "reason": reason}
    session = session_commands(block["source"])
    scripts = [command for command, _ in session] if session else [block["source"]]
    outputs = []
    for script in scripts:
        sys.stdout.flush()
        code, stdout, stderr = run_shell(script)
        outputs.append(stdout)
        if code != 0:
            reason = skip_for_missing_extra(stdout + stderr)
            if reason:
                return {"status": "skipped", "reason": reason, "output": outputs}
            return {"status": "failed", "output": outputs,
                    "error": f"$ {script}\nexit status {code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"}
    return {"status": "passed", "output": outputs if session else stdout}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        blocks = json.load(f)
    namespace = {"__name__": "__main__"}
    results, stopped = [], None
    for block in blocks:
        if stopped:
            result = {"status": "skipped", "reason": f"continues a block that {stopped}"}
        elif block["kind"] == "file":
            with open(block["name"], "w", encoding="utf-8") as f:
                f.write(block["source"])
            result = {"status": "passed"}
        elif block["kind"] == "python":
            result = run_python(block, namespace)
        else:
            result = run_bash(block)
        results.append(result)
        if result["status"] != "passed" and not stopped:
            stopped = f"{result['status']} (README.md line {block['line']})"
        with open(sys.argv[2], "w", encoding="utf-8") as f:  # after every block: a timeout keeps them
            json.dump(results, f)


if __name__ == "__main__":
    main()

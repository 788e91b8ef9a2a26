"""The dependency rule between the package's parts, checked on the import statements themselves.

    kernels    -> NumPy (and each other) only
    helpers    -> each other (activations, initializers, validation, errors, mathutils, catalog,
                  regularizers, constraints)
    layers     -> kernels, helpers
    execution  -> layers, kernels (the planner: modularcnn.execution and its fused steps,
                  modularcnn.fusion and modularcnn.fast_steps)
    training, saving, Net, ... -> the rest

Every ``import`` counts, also one inside a function: a lazy import is still a dependency.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "modularcnn"

#: Modules below layers that layers may use: argument checking and element-wise functions.
FOUNDATION = {"activations", "initializers", "validation", "errors", "mathutils", "catalog",
              "regularizers", "constraints"}
ALLOWED = {
    "kernels": {"kernels"},
    "layers": {"kernels", "layers"} | FOUNDATION,
    "execution": {"kernels", "layers", "execution", "fusion", "fast_steps"} | FOUNDATION,
    "fusion": {"kernels", "layers", "fusion"} | FOUNDATION,
    "fast_steps": {"kernels", "layers", "fusion", "fast_steps"} | FOUNDATION,
    **{helper: FOUNDATION for helper in FOUNDATION},   # the helpers stay below the layers too
}
#: What NumPy-only code may import from outside the package.
KERNEL_THIRD_PARTY = {"numpy"}


def part_of(module):
    """``"kernels"`` for ``modularcnn.kernels.conv``, ``"net"`` for ``modularcnn.net``."""
    return module.split(".")[1] if module.count(".") else "__init__"


def imports_of(path):
    """``(absolute module, line)`` of every import in the file at ``path``, lazy ones included."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:   # from . import a, b: each name may be a module
                    found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                target = node.module
            found.append((target, node.lineno))
    return module, found


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_parser_sees_relative_and_lazy_imports():
    module, found = imports_of(PACKAGE / "layers" / "base.py")
    assert module == "modularcnn.layers.base"
    names = {name for name, _ in found}
    assert {"modularcnn.kernels.windows", "modularcnn.layers.symbolic", "modularcnn.validation",
            "numpy"} <= names


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_the_rule_allows(part):
    broken = []
    for path in modules():
        module, found = imports_of(path)
        if part_of(module) != part:
            continue
        for target, line in found:
            if target.startswith("modularcnn."):
                if part_of(target) not in ALLOWED[part]:
                    broken.append(f"{module}:{line} imports {target}")
            elif part == "kernels" and target.split(".")[0] not in KERNEL_THIRD_PARTY | STDLIB:
                broken.append(f"{module}:{line} imports {target} (kernels use NumPy only)")
    assert not broken, "\n".join(broken)


def test_layers_never_import_the_planner():
    for path in (PACKAGE / "layers").rglob("*.py"):
        _, found = imports_of(path)
        assert not [t for t, _ in found if part_of(t) in ("execution", "fusion", "fast_steps", "net", "training")], path


STDLIB = {"math", "itertools", "functools", "numbers", "collections", "dataclasses", "typing", "re",
          "warnings", "operator"}

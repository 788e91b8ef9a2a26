"""notebooks/mnist_walkthrough.ipynb runs top to bottom (on an MNIST subset) and is committed executed."""

import base64
import os

import pytest

from tests.conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = REPO_ROOT / "notebooks" / "mnist_walkthrough.ipynb"
SUBSET = "2000"  # training and test images used when the test runs it
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def text_of(cell):
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for output in cell.outputs)


def images_of(cell):
    return [base64.b64decode(output["data"]["image/png"]) for output in cell.outputs
            if "image/png" in output.get("data", {})]


def cell_with(notebook, source_fragment):
    matches = [cell for cell in code_cells(notebook) if source_fragment in cell.source]
    assert len(matches) == 1, source_fragment
    return matches[0]


def check_outputs(notebook, subset):
    """What every run must show: summary, one line per epoch, plots, and an identical reload."""
    assert not [output for cell in code_cells(notebook) for output in cell.outputs
                if output.output_type == "error"]
    assert f"the first {int(subset):,} images" in text_of(code_cells(notebook)[0])
    assert "Total params: 61,706" in text_of(cell_with(notebook, "net.summary()"))
    fit_text = text_of(cell_with(notebook, "net.fit("))
    assert fit_text.count("val_accuracy") == 2  # verbose=2: one line per epoch, no progress bars
    assert "\r" not in fit_text
    test_line = text_of(cell_with(notebook, "net.evaluate("))
    accuracy = float(test_line.split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy > 0.8
    for fragment in ("plot_history(", "plot_predictions(net, x_test, y_test", "plot_confusion_matrix(",
                     "cmap=\"gray_r\""):
        images = images_of(cell_with(notebook, fragment))
        assert len(images) == 1 and images[0].startswith(PNG_SIGNATURE), fragment
    assert "reloaded predictions identical: True" in text_of(cell_with(notebook, "load_model(path)"))


def test_notebook_runs_top_to_bottom(mnist_dir, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        cell.outputs = []
    # The kernel inherits this environment: the data, a small subset, and the library of this checkout.
    monkeypatch.setenv("MODULARCNN_NOTEBOOK_SUBSET", SUBSET)
    monkeypatch.setenv("MODULARCNN_DATA", str(mnist_dir.parent))
    monkeypatch.setenv("MODULARCNN_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # CI's Agg would hide the inline figures
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    check_outputs(notebook, SUBSET)


def test_committed_notebook_is_valid_and_executed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    subset = text_of(cells[0]).split("the first ")[1].split(" images")[0].replace(",", "")
    check_outputs(notebook, subset)


GAN_NOTEBOOK = REPO_ROOT / "notebooks" / "dcgan_mnist.ipynb"


def test_gan_notebook_runs_and_the_committed_one_shows_samples(mnist_dir, monkeypatch):
    committed = nbformat.read(GAN_NOTEBOOK, as_version=4)
    nbformat.validate(committed)
    grid_cell = cell_with(committed, "plt.imshow(grid")
    assert len(images_of(grid_cell)) == 1 and images_of(grid_cell)[0].startswith(PNG_SIGNATURE)
    assert "training took" in text_of(cell_with(committed, "dcgan_mnist.train("))

    notebook = nbformat.read(GAN_NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        cell.outputs = []
    monkeypatch.setenv("MODULARCNN_NOTEBOOK_SUBSET", "256")
    monkeypatch.setenv("MODULARCNN_DATA", str(mnist_dir.parent))
    monkeypatch.setenv("MODULARCNN_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(GAN_NOTEBOOK.parent)}})
    client.execute()
    assert not [o for cell in code_cells(notebook) for o in cell.outputs if o.output_type == "error"]
    assert "the first 256 images" in text_of(code_cells(notebook)[0])
    assert len(images_of(cell_with(notebook, "plt.imshow(grid"))) == 1

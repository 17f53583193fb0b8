"""A real Jupyter kernel for tests: cells run one at a time in one ipykernel session, as a
notebook's user runs them (nbclient drives the kernel over its own protocol).

Usage::

    with Kernel(folder) as k:
        out = k.run("import sweep")          # -> Cell(stdout, stderr, error)
        assert not out.error
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Cell:
    stdout: str
    stderr: str
    error: str  # "" when the cell ran without an exception, else "Name: message"
    outputs: list  # the cell's outputs in arrival order (streams, display data, errors)

    def streams(self) -> list[tuple[str, str]]:
        """(stream name, text) in the order the kernel sent them."""
        return [(o["name"], o["text"]) for o in self.outputs if o.get("output_type") == "stream"]


class Kernel:
    """One kernel (python3, this interpreter) started in `folder`."""

    def __init__(self, folder: Path, timeout: float = 600) -> None:
        import nbformat
        from nbclient import NotebookClient

        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(
            self.nb,
            timeout=timeout,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(folder)}},
        )
        self._context = None

    def __enter__(self) -> Kernel:
        self._context = self.client.setup_kernel()
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    def run(self, source: str) -> Cell:
        import nbformat

        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        text = {"stdout": "", "stderr": ""}
        error = ""
        for o in cell.outputs:
            if o.get("output_type") == "stream":
                text[o["name"]] += o["text"]
            elif o.get("output_type") == "error":
                error = f"{o['ename']}: {o['evalue']}"
        return Cell(text["stdout"], text["stderr"], error, list(cell.outputs))

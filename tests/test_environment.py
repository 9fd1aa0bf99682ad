"""environment.yml and pyproject.toml must agree on the dependencies that matter."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAME = {"torch": "pytorch"}


def _name_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", req.strip())
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("notebooks", "dev", "audio"):
        reqs += project["optional-dependencies"][extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "pytorch" not in env["channels"]
    conda = dict(_name_spec(d) for d in env["dependencies"] if isinstance(d, str))
    for req in reqs:
        name, spec = _name_spec(req)
        cname = CONDA_NAME.get(name, name)
        assert cname in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[cname] == spec, f"{name}: pyproject says {spec!r}, environment.yml {conda[cname]!r}"
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_every_notebook_follows_the_contract():
    import nbformat

    nbs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert nbs, "no notebooks found"
    for path in nbs:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name}: exactly one cell tagged parameters"
        for line in params[0].source.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert re.match(r"^[A-Z_]+ = (None|True|False|-?\d+(\.\d+)?|\"[^\"]*\")\s*(#.*)?$", line), \
                    f"{path.name}: parameters cell must hold plain literals, got {line!r}"
        text = "\n".join(c.source for c in nb.cells)
        for needed in ("tl.resolve_fast(FAST)", "tl.setup_notebook(", "## Exercises", "## Summary"):
            assert needed in text, f"{path.name} lacks {needed!r}"
        for cell in nb.cells:
            if cell.cell_type == "code" and "keep_output" not in cell.metadata.get("tags", []):
                assert not cell.get("outputs"), f"{path.name}: unchecked cell with stored output"

"""environment.yml and pyproject.toml must agree on the dependencies that matter."""

import re
import subprocess
from pathlib import Path

import pytest
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


def _fake_bin(tmp_path: Path, present: list[str], apt: bool = True) -> Path:
    """A PATH of stubs: the commands in `present`, `id` (root) and an `apt-get` that logs its arguments and,
    on install, provides the commands of the packages it was asked for."""
    fake = tmp_path / "bin"
    fake.mkdir()

    def stub(name: str, body: str) -> None:
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)

    for cmd in present:
        stub(cmd, f"echo '{cmd} 1.0'")
    stub("id", "echo 0")
    if apt:
        stub("apt-get", f'echo "$@" >> {tmp_path}/apt.log\n'
                        'for a in "$@"; do case $a in\n'
                        f"  chromium) printf '#!/bin/sh\\necho chromium 1.0\\n' > {fake}/chromium; "
                        f"/bin/chmod +x {fake}/chromium;;\n"
                        f"  chromium-driver) printf '#!/bin/sh\\n' > {fake}/chromedriver; "
                        f"/bin/chmod +x {fake}/chromedriver;;\n"
                        "esac; done")
    return fake


@pytest.mark.parametrize("present, asked", [
    (["chromium", "chromedriver"], None),                        # nothing missing: apt is not called at all
    ([], "install -y -qq chromium chromium-driver"),
    (["chromium"], "install -y -qq chromium-driver"),
    (["chromium", "chromedriver", "node", "npm"], None),
    (["node", "npm"], "install -y -qq chromium chromium-driver"),  # a Node.js with its own npm: never ask for npm
])
def test_system_deps_script_installs_only_what_is_missing(tmp_path, present, asked):
    fake = _fake_bin(tmp_path, present)
    res = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "install-system-deps.sh")], capture_output=True,
                         text=True, env={"PATH": str(fake)})
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "apt.log").read_text().splitlines() if (tmp_path / "apt.log").exists() else []
    if asked is None:
        assert log == [] and "nothing to do" in res.stdout
    else:
        assert log == ["update -qq", asked], log
    assert not any("npm" in line or "nodejs" in line for line in log)


def test_system_deps_script_without_apt_names_what_is_missing(tmp_path):
    fake = _fake_bin(tmp_path, ["chromium"], apt=False)
    res = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "install-system-deps.sh")], capture_output=True,
                         text=True, env={"PATH": str(fake)})
    assert res.returncode == 1 and "missing chromium-driver and no apt-get" in res.stderr


def test_ci_installs_system_deps_with_the_script_only():
    """.ci/run delegates the system install to the script the README names; it never asks apt for npm."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install-system-deps.sh" in ci and "apt-get" not in ci
    assert "scripts/install-system-deps.sh" in (ROOT / "README.md").read_text()

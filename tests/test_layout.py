"""The stage layout: every module of batchrun sits in a layer of the import contract (or is the
server, which has its own), so a new module cannot land outside the rooms unnoticed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import batchrun

PACKAGE = Path(batchrun.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _contract_names() -> set[str]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}


def test_every_top_level_module_is_in_a_layer() -> None:
    names = _contract_names() | {"batchrun.server"}
    found = {
        f"batchrun.{p.stem if p.is_file() else p.name}"
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert found - names == set(), "modules outside every layer of [tool.importlinter]"
    assert names - found == set(), "layers naming modules that do not exist"


def test_package_inits_stay_light() -> None:
    """Stage packages' __init__ files import nothing: `batchrun --help` must not load the client
    stack through a package import (tests/test_cli.py checks the modules loaded)."""
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "server":
            continue  # the server's façade (its own contract keeps it apart)
        if init.parent.name == "api":
            continue  # the public API's façade: tests/test_api.py checks it loads no client stack
        code = [line for line in init.read_text(encoding="utf-8").splitlines() if line.startswith(("import ", "from "))]
        assert code == [], f"{init.relative_to(PACKAGE.parent)} imports {code}"


def test_every_install_recipe_names_this_distribution() -> None:
    """Regression: the README's Actions, nightly and Kubernetes recipes ran `pip install batchrun`,
    which installs another PyPI project (with a `batchrun` script of its own). The distribution
    is `batchrun-fal`; every pip install in the docs names it, or a path of this checkout."""
    from batchrun import DISTRIBUTION

    root = Path(__file__).resolve().parent.parent
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == DISTRIBUTION == "batchrun-fal"
    docs = [root / "README.md", *sorted((root / "docs").glob("*"))]
    installs = [(path.name, m.group(1)) for path in docs
                for m in re.finditer(r"pip install ([^\n`]+)", path.read_text())]
    assert len(installs) >= 6
    for where, args in installs:
        targets = [a for a in args.split() if not a.startswith("-") and a not in ("&&", "pytest")]
        named = [re.fullmatch(rf"{re.escape(DISTRIBUTION)}(\[[\w,-]+\])?", t.strip("'\"")) for t in targets[:1]]
        assert targets and all(n or t.startswith((".", "'.")) for n, t in zip(named, targets[:1], strict=True)), (where, args)

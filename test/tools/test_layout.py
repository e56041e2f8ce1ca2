"""The package layout keeps its promises: one folder per family, dev assets out of the runtime.

- ``decaf_ros.core`` (the runtime library) never imports ``decaf_ros.devtools``, a family's
  development modules (``tiny.py``, ``configs.py``) or rclpy — checked on the source (every
  import statement) and on a process that loads the pipeline and every adapter.
- Every family folder is registered and holds the modules the registry promises; outside its
  folder, only the registry (and families built on it) name a family.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import decaf_ros
from decaf_ros.core.models import registry

PACKAGE = Path(decaf_ros.__file__).resolve().parent  # the installed package
MODELS = PACKAGE / "core" / "models"
FAMILIES = (*registry.MLLM_FAMILIES, registry.SAM2_FAMILY)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module an import statement in ``path`` names (relative ones resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_dev_module(name: str) -> bool:
    parts = name.split(".")
    if parts[:2] == ["decaf_ros", "devtools"]:
        return True
    return (parts[:3] == ["decaf_ros", "core", "models"] and len(parts) >= 5
            and parts[3] in FAMILIES and parts[4] in registry.DEV_MODULES)


def _runtime_files() -> list[Path]:
    return [p for p in sorted((PACKAGE / "core").rglob("*.py")) if not _is_dev_module(_module_name(p))]


def test_runtime_sources_import_no_development_module() -> None:
    files = _runtime_files()
    assert PACKAGE / "core" / "pipeline.py" in files and MODELS / "qwen2_5_vl" / "adapter.py" in files
    offending = {}
    for path in files:
        bad = sorted(n for n in _imports(path) if _is_dev_module(n) or n.split(".")[0] == "rclpy")
        if bad:
            offending[str(path.relative_to(PACKAGE))] = bad
    assert offending == {}


def test_loading_the_runtime_loads_no_development_module() -> None:
    """A process that imports the pipeline and every adapter has no dev module in sys.modules."""
    code = (
        "import json, sys\n"
        "import decaf_ros.core.pipeline\n"
        "from decaf_ros.core.models import supported_model_types\n"
        "supported_model_types()\n"
        "import decaf_ros.core.models.sam2.segmenter\n"
        "print(json.dumps(sorted(sys.modules)))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/", env=env)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "decaf_ros.core.models.internvl.adapter" in loaded  # the check saw the adapters
    assert [m for m in loaded if _is_dev_module(m) or m.split(".")[0] == "rclpy"] == []


def test_every_family_folder_is_registered_and_complete() -> None:
    folders = {p.parent.name for p in MODELS.glob("*/__init__.py")}
    assert folders == set(FAMILIES)
    for family in registry.MLLM_FAMILIES:
        assert registry.family_module(family, "tiny").TINY, family
        assert registry.family_module(family, "configs").PUBLISHED, family
        assert callable(registry.family_module(family, "tiny").real_size_processor), family
        assert (MODELS / family / "adapter.py").is_file(), family
    assert registry.family_module(registry.SAM2_FAMILY, "tiny").TINY
    assert registry.family_module(registry.SAM2_FAMILY, "configs").PUBLISHED
    assert (MODELS / registry.SAM2_FAMILY / "segmenter.py").is_file()


@pytest.mark.parametrize("family", registry.MLLM_FAMILIES)
def test_only_the_registry_names_a_family_outside_its_folder(family: str) -> None:
    """Library sources outside ``core/models/<family>/`` that name the family's folder.

    Allowed: the registry, and other family folders that build on this one (Qwen3-VL's adapter
    extends Qwen2.5-VL's; the InternVL tiny model reuses the Qwen2 special tokens).
    """
    mentions = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        inside = path.is_relative_to(MODELS / family)
        if not inside and family in path.read_text():
            mentions.add(str(path.relative_to(PACKAGE)))
    others = {m for m in mentions if m.startswith("core/models/") and m.split("/")[2] in FAMILIES}
    assert mentions - others == {"core/models/registry.py"}

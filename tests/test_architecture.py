"""The house rules, read from the source: imports point models -> layers -> distarray, only
distarray/comm.py imports mpi4py, only distarray/backend.py imports cupy, no subpackage takes
another's private names, no module is over 500 lines, no folder holds over a third of the code,
and the pure modules import without loading MPI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("distarray", "layers", "models")
ALLOWED = {"distarray": set(), "layers": {"distarray"}, "models": {"layers", "distarray"}}
MAX_LINES = 500
MAX_FOLDER_SHARE = 0.34
#: Modules of pure arithmetic (or optional-device probing) that must import without MPI.
PURE = ("distarray.box", "distarray.layout", "distarray.pattern", "distarray.random", "distarray.backend",
        "distarray.lazy", "layers.geometry", "layers.lc_kernels", "layers.window_kernels", "layers.reference",
        "models.config", "models.analysis.selectivity", "models.analysis.report_html")


def modules() -> list[Path]:
    """Every Python file of the three packages."""
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import statement of ``path``, relative ones
    resolved against the module's package; nested (function-level) imports included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
    return found


def test_the_rules_see_every_module():
    names = {module_name(p) for p in modules()}
    assert {"distarray.comm", "distarray.checkpoint", "layers.window_layer", "models.config",
            "models.training.trainer", "models.analysis.run", "models.planning.planner", "models.data.sources"} <= names
    comm_imports = [target for target, _ in imports(ROOT / "distarray" / "comm.py")]
    assert "mpi4py" in comm_imports and "mpi4py.util" in comm_imports  # the reader finds what is there
    trainer = dict(imports(ROOT / "models" / "training" / "trainer.py"))
    assert "models.build" in trainer and "models.training.checkpoints" in trainer  # relative imports resolved


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    package = module_name(path).split(".")[0]
    for target, _ in imports(path):
        top = target.split(".")[0]
        if top in PACKAGES and top != package:
            assert top in ALLOWED[package], f"{path.relative_to(ROOT)} imports {target}: {package} may import " \
                                            f"only {sorted(ALLOWED[package]) or 'no other package'}"


@pytest.mark.parametrize("library, only", [("mpi4py", "distarray/comm.py"), ("cupy", "distarray/backend.py")])
def test_one_module_imports_each_library(library, only):
    users = sorted(str(p.relative_to(ROOT)) for p in modules()
                   if any(target.split(".")[0] == library for target, _ in imports(p)))
    assert users == [only]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_across_packages(path):
    """A module takes another (sub)package's underscore names only from inside that package."""
    here = module_name(path)
    home = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for target, names in imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and target.split(".")[0] in PACKAGES:
            owner = target.rpartition(".")[0] if (ROOT / Path(*target.split(".")).with_suffix(".py")).exists() \
                else target
            assert home == owner or home.startswith(owner + "."), f"{here} takes {private} from {target}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it by concern"


def test_no_folder_holds_more_than_a_third_of_the_code():
    sizes: dict[Path, int] = {}
    for path in modules():
        sizes[path.parent] = sizes.get(path.parent, 0) + len(path.read_text().splitlines())
    total = sum(sizes.values())
    biggest = max(sizes, key=sizes.get)
    assert sizes[biggest] <= MAX_FOLDER_SHARE * total, \
        f"{biggest.relative_to(ROOT)} holds {sizes[biggest]} of {total} lines"


def test_pure_modules_import_without_mpi():
    code = f"import sys\nimport {', '.join(PURE)}\nprint(sorted(m for m in sys.modules if m.startswith('mpi4py')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing {PURE} loaded {done.stdout.strip()}"


def test_scripts_shadow_no_package_and_leave_sys_path_alone():
    scripts = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))
    assert scripts
    assert not [p.name for p in scripts if p.stem in PACKAGES]
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                pytest.fail(f"{path.relative_to(ROOT)} touches sys.path (line {node.lineno})")

"""The package as users get it: import contracts hold, --help loads no torch, a built wheel ships the templates."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "sklearn", "matplotlib", "scipy")


def test_import_contracts_hold():
    """Layers run one way, only promptrec.lm imports the torch stack, nothing imports promptrec.cli."""
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_the_command_line_imports_no_heavy_library_until_a_command_needs_it():
    code = f"import sys, promptrec.cli.main; print([m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_promptrec_import_inside_a_function():
    """Imports of promptrec modules sit at the top of each module, where the contracts can see them."""
    import ast

    hidden = []
    for path in sorted((ROOT / "promptrec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("promptrec"):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert hidden == []


def test_the_eval_scripts_import_what_exists():
    """The benchmark scripts (eval/*.py, and the Python inside eval/*.sh) name promptrec modules that exist:
    a module moved by a refactor must not leave a README command broken at its last step."""
    import importlib
    import re

    wrong = []
    for path in sorted((ROOT / "eval").glob("*.sh")) + sorted((ROOT / "eval").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"\s*from (promptrec[\w.]*) import (.+)$", line)
            if not match:
                continue
            try:
                module = importlib.import_module(match.group(1))
            except ImportError:
                wrong.append(f"{path.name}:{number} {match.group(1)}")
                continue
            names = [n.strip().split(" as ")[0] for n in match.group(2).strip("()").split(",") if n.strip()]
            wrong += [f"{path.name}:{number} {match.group(1)}.{n}" for n in names if not hasattr(module, n)]
    assert wrong == []


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The wheel built from this checkout, installed (without dependencies) into a fresh target dir."""
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    wheel = next(out.glob("promptrec-*.whl"))
    target = out / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, text=True)
    return target


def test_a_wheel_install_lists_the_shipped_templates(installed_wheel, tmp_path):
    env = {"PYTHONPATH": str(installed_wheel), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(
        [sys.executable, "-c", "import promptrec.templates.template as t; print(t.__file__); print(t.PROMPTS_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed_wheel) for p in where), where
    listed = subprocess.run(
        [sys.executable, "-m", "promptrec", "prompts", "list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    shipped = sorted(p.stem for p in (ROOT / "prompts").rglob("*.j2"))
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == shipped


def test_a_wheel_install_ships_the_playground_page(installed_wheel):
    static = installed_wheel / "promptrec" / "serve_static"
    assert sorted(p.name for p in static.iterdir()) == ["playground.css", "playground.html", "playground.js"]

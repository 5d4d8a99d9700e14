# SPDX-License-Identifier: GPL-3.0-or-later
"""The tree's shape: one import name for the core (gnuradio.hqarf), no sys.path edits in the
packages, no import cycle between the project's modules, no module above 500 lines."""
import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"python/hqarf": "gnuradio.hqarf", "training": "training"}
MAX_LINES = 500


def project_modules() -> dict:
    """Module name -> path of every Python file under python/hqarf and training."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imported_modules(name: str, path: Path, modules: dict) -> set:
    """Project modules `name` imports anywhere in its file (function bodies included, so an import
    moved into a function to dodge a cycle still counts)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from X import y`: the submodule X.y when there is one, else X itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_every_module_is_at_most_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in project_modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules above {MAX_LINES} lines: {long}"


def test_no_import_cycle_between_project_modules():
    modules = project_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert "training.presets" in graph["training.train"]  # the graph sees the imports at all
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_packages_do_not_edit_sys_path():
    edits = []
    for path in project_modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                edits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not edits, f"sys.path used in {edits}"


def test_importing_training_gives_one_copy_of_the_core():
    """Every training module imports the core as gnuradio.hqarf: no second, top-level `hqarf`."""
    names = [n for n in project_modules() if n.startswith("training") and not n.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "from gnuradio.hqarf import codec, weights\n"
            "import training.coreset.experiment as experiment\n"
            "assert 'hqarf' not in sys.modules, 'a second copy of the core: hqarf'\n"
            "core = [m for m in sys.modules if m.split('.')[0] == 'hqarf' or m.startswith('python.hqarf')]\n"
            "assert not core, core\n"
            "assert experiment.to_iq.__module__ == 'gnuradio.hqarf.frames'\n"
            "print(len(sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shim"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(names) > 10 and int(result.stdout.split()[-1]) > len(names)

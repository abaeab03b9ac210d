"""The structure the code keeps (issue 9): layers that point down, no import cycles, small modules.

Read from the source with `ast`, so a violation fails here before it confuses anyone elsewhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("services", "scripts")
#: Imports inside a function that are there for speed, not to dodge a cycle: setup imports the
#: models in a thread while the server starts (services/environments/setup.py).
_LAZY_FOR_SPEED = {("services.environments.setup", "services.database.models")}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {"tasks": REPO / "tasks.py"}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, *, module_level: bool) -> set[str]:
    """Return the project modules path imports (at module level, or only inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if module_level:
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # for type checkers only: never imported at run time
            nodes.extend(ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node])
    else:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nodes.extend(ast.walk(node))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path, module_level=True) - {name} for name, path in MODULES.items()}


def test_no_module_imports_another_in_a_circle() -> None:
    # Importing a package runs its __init__, so a module's package counts as imported too.
    def edges(name: str) -> set[str]:
        targets = set(GRAPH[name])
        for target in list(targets):
            parent = target.rsplit(".", 1)[0]
            if parent in MODULES and parent != name and not name.startswith(parent + "."):
                targets.add(parent)
        return targets

    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges(name)):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [name, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("services")))
def test_services_never_reach_up_to_the_command_layer(name: str) -> None:
    imported = _imports(MODULES[name], module_level=True) | _imports(MODULES[name], module_level=False)
    assert not {m for m in imported if m == "tasks" or m.startswith("scripts")}
    source = MODULES[name].read_text(encoding="utf-8")
    assert "import invoke" not in source and "from invoke" not in source
    assert "sys.exit(" not in source and "input(" not in source


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("services.database")))
def test_the_database_layer_imports_nothing_of_services_but_the_errors(name: str) -> None:
    imported = _imports(MODULES[name], module_level=True) | _imports(MODULES[name], module_level=False)
    outside = {m for m in imported if not m.startswith("services.database") and m != "services.errors"}
    assert outside == set(), f"{name} reaches up to {sorted(outside)}: hand it explicit settings instead"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_project_import_hides_inside_a_function(name: str) -> None:
    hidden = {(name, m) for m in _imports(MODULES[name], module_level=False)} - _LAZY_FOR_SPEED
    assert hidden == set(), "import it at the top; if that makes a cycle, the code is in the wrong module"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines; split it by concern"


def test_every_script_and_task_is_one_declared_command() -> None:
    import tasks
    from scripts import _cli, _commands

    scripts = sorted(p.stem for p in (REPO / "scripts").glob("*.py") if not p.stem.startswith("_"))
    declared = {}
    for stem in scripts:
        command = __import__(f"scripts.{stem}", fromlist=["COMMAND"]).COMMAND
        assert isinstance(command, _cli.Command) and command.script == stem
        declared[command.name] = command
    names = set(tasks.ns.task_names)
    assert set(declared) <= names  # every script is a task too, under its command's name
    for command in _commands.ALL:
        assert callable(command.function()), f"{command.name}: run names no function"
    for name in names:
        task = tasks.ns[name]
        assert task.help and all(task.help.values()), f"{name}: every flag has its help"

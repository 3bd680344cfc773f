"""The core stays pure, and the layers stay apart.

The layer rules (app above cli/devtools, above channels | storage, above web, above core; the
core imports no framework, database or SDK; storage imports no use case; channels and web no
database library) are import-linter contracts in pyproject.toml, run here and in CI. What the
import graph cannot show is checked here by reading core/: no clock, environment, randomness or
I/O from the standard library (`now` is passed in).
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"

# Standard-library modules that read the clock, the environment or the outside world.
FORBIDDEN_STDLIB = {"os", "time", "random", "secrets", "threading", "asyncio", "subprocess",
                    "socket", "sqlite3", "urllib", "http", "logging.handlers"}
# Calls that read the clock or the environment, by their dotted name.
FORBIDDEN_CALLS = {"datetime.now", "datetime.utcnow", "datetime.today", "date.today",
                   "time.time", "time.monotonic", "os.getenv", "os.environ.get", "open"}
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())", "--no-cache"]


def core_files():
    return sorted(CORE.rglob("*.py"))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_the_layer_contracts_hold():
    done = subprocess.run(LINT, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_contracts_catch_a_core_that_imports_a_framework(tmp_path):
    """The same contracts on a two-module project whose core imports flask: broken."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    pure = next(c for c in contracts["contracts"]
                if c["type"] == "forbidden" and c["source_modules"] == ["core"])
    for package, text in (("core", "import flask\n"), ("storage", "import core\n")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(text)
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_packages =\n    core\n    storage\ninclude_external_packages = True\n"
        "[importlinter:contract:pure]\nname = pure\ntype = forbidden\nsource_modules =\n"
        "    core\nforbidden_modules =\n" + "".join(f"    {m}\n" for m in pure["forbidden_modules"]))
    assert "flask" in pure["forbidden_modules"]
    done = subprocess.run(LINT, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "core is not allowed to import flask" in done.stdout


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_module_imports_no_clock_environment_or_io_module(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            assert name not in FORBIDDEN_STDLIB and name.split(".")[0] not in FORBIDDEN_STDLIB, \
                f"{path.name}:{node.lineno} imports {name}"


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_module_reads_neither_clock_nor_environment(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
        if isinstance(node, ast.Attribute):
            assert dotted(node) != "os.environ", f"{path.name}:{node.lineno} reads os.environ"


def test_the_purity_check_catches_a_clock_read():
    bad = ast.parse("import time\nfrom datetime import datetime\nx = datetime.now()")
    imports = [a.name for n in ast.walk(bad) if isinstance(n, ast.Import) for a in n.names]
    calls = [dotted(n.func) for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert "time" in imports and "datetime.now" in calls


# Where a database session or transaction may be opened: the unit of work, the outbox's
# dispatcher, and the schema migrations. Everything else gets a unit of work.
# The audit trail too: an event is written in a transaction of its own, after the request's
# (a denial or a failure is recorded though the request's own work rolled back).
# And the scheduler's lock: a session-level lock on a connection of its own, held while it runs.
# And pull mode's source reader (the operator's database, not ours) with its cursor table, which
# is written right after a page's unit of work commits (cli/pull.py).
SESSION_HOMES = {"storage/uow.py", "storage/outbox.py", "storage/migrate.py", "storage/audit.py",
                 "storage/scheduler_lock.py", "storage/usage_sources.py"}
SESSION_CALLS = {"Session", "sessionmaker", "begin", "connect", "begin_nested"}


def _session_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = dotted(node.func).split(".")[-1]
            if name in SESSION_CALLS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {dotted(node.func)}()")
    return found


def test_sessions_and_transactions_are_opened_only_by_the_unit_of_work_and_the_outbox():
    found = [hit for package in ("core", "storage", "channels", "web", "devtools", "cli")
             for path in sorted((ROOT / package).rglob("*.py"))
             if "migrations" not in path.parts
             and str(path.relative_to(ROOT)) not in SESSION_HOMES
             for hit in _session_calls(path)]
    assert found == []
    assert _session_calls(ROOT / "storage" / "uow.py")  # the check sees them where they are

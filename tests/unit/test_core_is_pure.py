"""The core stays pure: no framework, database, SDK, environment or clock inside core/."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"

FORBIDDEN_MODULES = {
    "flask", "werkzeug", "sqlalchemy", "alembic", "psycopg", "sqlite3", "twilio", "slack_bolt",
    "slack_sdk", "apscheduler", "requests", "httpx", "urllib", "http", "socket", "subprocess",
    "os", "time", "random", "secrets", "threading", "asyncio", "logging.handlers", "app",
    "storage", "channels",
}
# Calls that read the clock or the environment, by their dotted name.
FORBIDDEN_CALLS = {"datetime.now", "datetime.utcnow", "datetime.today", "date.today",
                   "time.time", "time.monotonic", "os.getenv", "os.environ.get", "open"}


def core_files():
    return sorted(CORE.rglob("*.py"))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_module_imports_no_framework_database_sdk_or_os(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            assert name not in FORBIDDEN_MODULES and top not in FORBIDDEN_MODULES, \
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


def test_the_purity_check_catches_a_forbidden_import(tmp_path):
    bad = ast.parse("import sqlalchemy\nfrom datetime import datetime\nx = datetime.now()")
    imports = [a.name for n in ast.walk(bad) if isinstance(n, ast.Import) for a in n.names]
    calls = [dotted(n.func) for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert "sqlalchemy" in imports and "datetime.now" in calls

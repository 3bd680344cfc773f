"""The README's console screenshot (docs/img/console-figures.png), on a simulated population:

    .venv/bin/flask --app app simulate --accounts 2000 --days 90 --true-lift 0.08 --seed 3 \
        --database-url sqlite:////tmp/simdb.sqlite3 --report /tmp/sim3.json
    .venv/bin/python scripts/console_screenshot.py 2027-05-04T12:00:00+00:00 \
        "from=2027-01-04&to=2027-04-04&by=channel"

(the first argument: the simulation's last day, as the console's clock; the second: the
console's query, the report's window). It serves the app on the simulation's database, signs
in a throwaway operator and takes the page with the figures broken down by channel."""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import create_app
from core import operators
from core.errors import DomainError
from web.passwords import WerkzeugHasher
from tests.support.browser import chromium, serving
from datetime import datetime, timezone
d = tempfile.mkdtemp()
app = create_app({"INSTANCE_PATH": d, "API_KEY": "k"*32, "DATABASE_URL": "sqlite:////tmp/simdb.sqlite3",
                  "AUTO_MIGRATE": False, "SECRET_KEY": "shot", "CONTROL_SALT": "simulation-3",
                  "CLOCK": (lambda: datetime.fromisoformat(sys.argv[1]))})
rt = app.extensions["upgrade_chat"]
try:
    operators.create_operator(rt.uow(), WerkzeugHasher(), email="ops@example.com", name="Ops",
                              role="admin", password="a long console password", now=rt.now())
except DomainError:
    pass  # made by an earlier run on this database

with serving(app) as base, chromium() as browser:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/console/sign-in")
    page.fill("input[name=email]", "ops@example.com"); page.fill("input[name=password]", "a long console password")
    page.click("button[type=submit]")
    page.wait_for_url("**/console**")
    page.goto(base + f"/console?{sys.argv[2]}")
    page.screenshot(path=str(Path(__file__).resolve().parents[1] / "docs" / "img" / "console-figures.png"), full_page=True)
    print(page.locator("#figures .tiles").inner_text())

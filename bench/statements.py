"""Count the SQL statements and CPU time of one inbound SMS reply, through the signed webhook.

In process (Flask's test client, an SQLite file), so it measures the code, not the network:
N accounts, each with a billing contact on SMS and an offered thread; then every contact asks a
question by SMS (a signed `POST /twilio/messaging`), and the statements the app's engine runs
for each are counted. Run from the repository root, or point PYTHONPATH at another checkout to
compare (it only uses the public HTTP interface and `create_app`):

    .venv/bin/python bench/statements.py --messages 300
    PYTHONPATH=/tmp/old .venv/bin/python bench/statements.py --messages 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: a checkout given there wins

from sqlalchemy import event  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

import app as app_module  # noqa: E402

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
QUESTIONS = ("how much would it cost?", "what does growth add?", "what would I pay today?")


def build(folder: Path, accounts: int):
    app = app_module.create_app({
        "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}", "API_KEY": "bench-key",
        "TWILIO_AUTH_TOKEN": "bench-token",
        "INSTANCE_PATH": str(folder / "instance"), "DEMO": False, "AUTO_MIGRATE": True,
        "CLOCK": lambda: NOW})
    if hasattr(app_module, "start"):  # the explicit start step, where there is one
        app_module.start(app, demo=False)
    api = app.test_client()
    headers = {"Authorization": "Bearer bench-key"}
    phones = []
    for n in range(accounts):
        phone = f"+1312555{n:04d}"
        account_id = f"bench-{n}"
        body = {"name": f"Bench {n}", "plan": "starter", "vertical": "generic",
                "timezone": "America/Chicago", "billing_day": 5,
                "contacts": [{"external_id": f"c-{n}", "role": "billing", "phone": phone}]}
        assert api.put(f"/api/v1/accounts/{account_id}", json=body,
                       headers=headers).status_code in (200, 201)
        events = [{"id": f"{account_id}-{d}", "account": account_id, "metric": "messages",
                   "quantity": 600, "at": (NOW - timedelta(days=d + 1)).isoformat()}
                  for d in range(8)]
        assert api.post("/api/v1/usage", json={"events": events},
                        headers=headers).status_code == 200
        phones.append(phone)
    return app, phones


def post(app, client, phone: str, text: str):
    params = {"AccountSid": "AC" + "0" * 32, "MessageSid": "SM" + uuid.uuid4().hex,
              "From": phone, "To": "+15005550006", "Body": text, "NumMedia": "0"}
    url = app.config["PUBLIC_BASE_URL"].rstrip("/") + "/twilio/messaging"
    signature = RequestValidator(app.config["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
    response = client.post("/twilio/messaging", data=params,
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200 and b"<Message>" in response.data, response.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, phones = build(Path(tmp), args.accounts)
        engine = app.extensions["upgrade_chat"].engine
        client = app.test_client()
        for phone in phones[:10]:  # warm up: statement caches, the model, the first thread reads
            post(app, client, phone, QUESTIONS[0])
        counts, cpu = [], []
        seen: list[int] = [0]

        def count(*_args) -> None:
            seen[0] += 1

        event.listen(engine, "before_cursor_execute", count)
        for i in range(args.messages):
            seen[0] = 0
            started = time.process_time()
            post(app, client, phones[i % len(phones)], QUESTIONS[i % len(QUESTIONS)])
            cpu.append(time.process_time() - started)
            counts.append(seen[0])
        event.remove(engine, "before_cursor_execute", count)
    print(f"code: {Path(app_module.__file__).resolve().parent}")
    print(f"statements per inbound reply: median {statistics.median(counts):g}, "
          f"min {min(counts)}, max {max(counts)}")
    print(f"CPU per inbound reply (ms): median {statistics.median(cpu) * 1000:.2f}, "
          f"p90 {sorted(cpu)[int(len(cpu) * 0.9)] * 1000:.2f}")


if __name__ == "__main__":
    main()

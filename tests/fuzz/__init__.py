"""Fuzzing: schemathesis against channels/openapi.json and hypothesis against every parser
(Twilio forms, Slack payloads, the API's and the widget's JSON bodies), in process against the
real app on real databases. Budgets: tests/fuzz/conftest.py; docs/architecture.md, "Fuzzing"."""

"""The Upgrade Chat domain: pure, with no framework, database, SDK, environment or clock inside."""

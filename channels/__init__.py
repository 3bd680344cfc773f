"""Edges: the HTTP API, the operator CLI and demo data now; messaging channels in later issues."""

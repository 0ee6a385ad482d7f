"""Test plugins: real Postgres (system or embedded) and real devchain servers."""

pytest_plugins = ["tests.fixtures_db", "tests.fixtures_chain"]

"""docker-compose.yml stays valid (no Docker engine here to run it): parse it and check its wiring."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_wires_postgres_api_workers_and_devchain() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "devchain", "api", "worker", "migrate", "monitor", "deliver"} <= set(services)
    for name in ("api", "worker", "migrate", "monitor", "deliver"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://")
        for dep in services[name].get("depends_on", {}):
            assert dep in services
    assert services["worker"]["command"][0] == "worker"
    assert services["api"]["command"][0] == "serve"
    assert services["devchain"]["command"][0] == "devchain"
    assert services["monitor"]["command"][0] == "monitor"
    assert services["deliver"]["command"][:2] == ["alerts", "deliver"]
    assert (ROOT / "Dockerfile").exists()

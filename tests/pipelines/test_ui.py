"""``geodesic ui --prefect --port N`` on a port other than Prefect's default: the UI's own
settings endpoint names this server's API, which answers (slow: a real Prefect server)."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipelines.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_prefect_ui_calls_the_api_of_the_server_on_the_chosen_port(tmp_path):
    port, elsewhere = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # a user whose shell points flows at another server still gets a UI that talks to this one
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{elsewhere}/api")
    with open(tmp_path / "ui.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "pipelines", "ui", "--prefect",
                                   "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api/health", server, timeout=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
            api = json.load(r)["api_url"]
        assert api == f"http://127.0.0.1:{port}/api"
        with urllib.request.urlopen(f"{api}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

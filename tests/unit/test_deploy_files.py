"""deploy/ is what an operator runs with Docker Compose; Docker cannot run on this machine, so these tests hold the
files to what tests/scaleout runs with Debian's packages: the settings they set exist, the replicas' baimo.yaml is
valid, nginx balances the compose services on the port they serve, and nginx accepts the deployed config."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from baimo.config import BaimoConfig, Settings
from tests.support.nginx import DEPLOY_CONF, deployed_proxy_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def baimo_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if "baimo" in " ".join(svc.get("command", []))}


def test_compose_has_the_tested_topology() -> None:
    doc = compose()
    services = doc["services"]
    replicas = baimo_services(doc)
    assert len(replicas) >= 2, "at least two Baimo replicas"
    assert {"nginx", "postgres", "redis", "llm"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    for name, svc in replicas.items():
        assert svc["command"][:2] == ["baimo", "serve"] and "--workers" in svc["command"], name
        assert {"postgres", "redis"} <= set(svc["depends_on"]), name


def test_every_baimo_variable_in_compose_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    for name, svc in baimo_services(compose()).items():
        env = svc["environment"]
        unknown = [k for k in env if not (k.startswith("BAIMO_") and k.removeprefix("BAIMO_").lower() in fields)]
        assert not unknown, f"{name}: {unknown} are not Baimo settings"
        for var in ("BAIMO_DATABASE_URL", "BAIMO_VECTOR_URL", "BAIMO_REDIS_URL", "BAIMO_UPLOAD_DIR"):
            assert var in env, f"{name}: replicas must share {var}"
        assert env["BAIMO_DATABASE_URL"].startswith("postgresql+psycopg://"), name


def test_the_replicas_config_is_valid_and_names_the_compose_model_server() -> None:
    config = BaimoConfig.model_validate(yaml.safe_load((DEPLOY / "baimo.yaml").read_text()))
    assert config.default_model in {m.id for m in config.models}
    hosts = {re.match(r"https?://([^:/]+)", m.base_url or "").group(1) for m in config.models if m.base_url}
    assert hosts <= set(compose()["services"]), hosts


def test_nginx_balances_the_replicas_on_the_port_they_serve() -> None:
    doc = compose()
    text = DEPLOY_CONF.read_text()
    servers = re.findall(r"^\s*server ([\w.-]+):(\d+)", text, re.M)
    replicas = baimo_services(doc)
    assert {h for h, _ in servers} == set(replicas)
    for name, svc in replicas.items():
        port = svc["command"][svc["command"].index("--port") + 1]
        assert (name, port) in servers
    body_size, location = deployed_proxy_settings(text)
    assert "proxy_buffering off" in location and "proxy_pass http://baimo" in location


def test_pyproject_has_the_extra_the_image_installs() -> None:
    extras = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = re.findall(r"'\.\[([\w,]+)\]'", (DEPLOY / "Dockerfile").read_text())
    assert wanted and all(e in extras for group in wanted for e in group.split(","))


@pytest.mark.skipif(not (Path("/usr/sbin/nginx").exists() or shutil.which("nginx")), reason="nginx not installed")
def test_nginx_accepts_the_deployed_config(tmp_path: Path) -> None:
    """`nginx -t` on deploy/nginx.conf with the compose host names mapped to loopback (they do not resolve here)."""
    text = DEPLOY_CONF.read_text()
    for name in baimo_services(compose()):
        text = text.replace(f"server {name}:", "server 127.0.0.1:")
    text = text.replace("listen 80;", "listen 127.0.0.1:1;")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n" + text)
    nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr

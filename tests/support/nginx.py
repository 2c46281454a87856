"""A throwaway nginx (Debian's package) load-balancing Baimo replicas round robin, on a free loopback port.

Its `location /` block and body size limit are read from deploy/nginx.conf, so the tests run the deployed proxy
settings (streaming-friendly: no buffering, long read timeouts, HTTP/1.1 keep-alive to the replicas, a request
retried on the next replica only when the first could not be reached), plus an `x-upstream` response header naming
the replica that answered, so tests can see both serve.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.daemon import LoopbackDaemon

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def deployed_proxy_settings(text: str | None = None) -> tuple[str, str]:
    """(the `client_max_body_size` line, the directives inside `location / { ... }`) of deploy/nginx.conf."""
    text = DEPLOY_CONF.read_text() if text is None else text
    body = re.search(r"^\s*client_max_body_size [^;]+;", text, re.M)
    location = re.search(r"location / \{\n(.*?)\n\s*\}", text, re.S)
    if not body or not location:
        raise ValueError(f"{DEPLOY_CONF}: no client_max_body_size or location / block")
    return body.group(0).strip(), location.group(1)


HEAD = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
"""

BALANCER = """
  upstream baimo {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    {body_size}
    location / {{
{location}
      add_header x-upstream $upstream_addr always;
    }}
  }}
"""


class NginxDaemon(LoopbackDaemon):
    """nginx (one worker process) in the foreground in its own directory, on a free loopback port, serving
    `http_block` (the inside of its `http { }` after the temp paths; `{port}` and `{dir}` are filled in)."""

    name = "nginx"
    package = "nginx"

    def __init__(self, http_block: str, connections: int = 1024) -> None:
        super().__init__("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx")
        Path(self.dir, "nginx.conf").write_text(HEAD.format(dir=self.dir, connections=connections)
                                               + http_block.replace("{port}", str(self.port))
                                               .replace("{dir}", self.dir) + "}\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-p", self.dir, "-c", f"{self.dir}/nginx.conf"]

    def failure(self) -> str:
        log = Path(self.dir, "error.log")
        return log.read_text(errors="replace") if log.exists() else ""


class TempNginx(NginxDaemon):
    """nginx balancing `backends` ("host:port") round robin with deploy/nginx.conf's proxy settings; `url` is its
    address."""

    def __init__(self, backends: list[str]) -> None:
        servers = "\n".join(f"    server {b} max_fails=1 fail_timeout=2s;" for b in backends)
        body_size, location = deployed_proxy_settings()
        super().__init__(BALANCER.format(servers=servers, port="{port}", body_size=body_size, location=location))

    def start(self, timeout: float = 15) -> TempNginx:
        return super().start(timeout)

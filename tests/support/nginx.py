"""A throwaway nginx (Debian's package) load-balancing Baimo replicas round robin, on a free loopback port.

The generated config is the one deploy/nginx.conf uses (streaming-friendly: no buffering, long read timeouts,
HTTP/1.1 keep-alive to the replicas, a request retried on the next replica only when the first could not be
reached), plus an `x-upstream` response header naming the replica that answered, so tests can see both serve.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.daemon import LoopbackDaemon

CONFIG = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream baimo {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 256m;
    location / {{
      proxy_pass http://baimo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
      add_header x-upstream $upstream_addr always;
    }}
  }}
}}
"""


class TempNginx(LoopbackDaemon):
    """nginx in the foreground in its own directory, balancing `backends` ("host:port"); `url` is its address."""

    name = "nginx"
    package = "nginx"

    def __init__(self, backends: list[str]) -> None:
        super().__init__("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx")
        servers = "\n".join(f"    server {b} max_fails=1 fail_timeout=2s;" for b in backends)
        Path(self.dir, "nginx.conf").write_text(CONFIG.format(dir=self.dir, servers=servers, port=self.port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-p", self.dir, "-c", f"{self.dir}/nginx.conf"]

    def failure(self) -> str:
        log = Path(self.dir, "error.log")
        return log.read_text(errors="replace") if log.exists() else ""

    def start(self, timeout: float = 15) -> TempNginx:
        return super().start(timeout)

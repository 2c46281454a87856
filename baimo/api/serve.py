"""`baimo serve --workers N`: N server processes on one port, sharing one engine supervisor.

uvicorn's multi-process mode: its supervisor (this process) binds the port and starts N worker processes
(multiprocessing *spawn*), each building the app with `create_app()` from the environment (BAIMO_* variables), so
everything chosen on the command line is put into the environment first. Before the workers start, this process
does the work that must happen once:

- schema migrations (each worker's `Database` then finds the schema at head and changes nothing), and the admin
  key bootstrap (BAIMO_ADMIN_KEY; with `auth: required` the first admin key, printed once);
- PROMETHEUS_MULTIPROC_DIR, a fresh folder under BAIMO_HOME/run unless set, so /metrics sums every worker;
- the local models' llama-server workers: one `EngineHost` (baimo/engine/host.py) owns them and the server workers
  reach it through BAIMO_ENGINE_URL, so each model is loaded once, not once per worker.

With one worker nothing of this applies: the app runs in this process as before.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from baimo.config import Settings, load_config

HEALTHCHECK_S = 30


def serve_workers(settings: Settings, *, host: str, port: int, workers: int, log_level: str,
                  uvicorn_options: dict[str, Any]) -> None:
    """Run `workers` (>= 2) server processes on host:port until uvicorn's supervisor is stopped (SIGINT/SIGTERM);
    `uvicorn_options` are passed to `uvicorn.run` as they are (log config, graceful shutdown...)."""
    import uvicorn

    from baimo.metering.keys import start_keys
    from baimo.store.database import Database

    db = Database(settings.db_url)  # migrations, once, before any worker opens the database
    # the first admin key of `auth: required` too: made (and printed) here once, not raced by the workers
    start_keys(db, required=load_config(settings).auth.mode == "required", env_admin_key=settings.admin_key)
    db.close()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = settings.home / "run" / "prometheus"
        shutil.rmtree(folder, ignore_errors=True)  # values of processes from an earlier run must not be summed
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.environ["BAIMO_HOME"] = str(settings.home)
    if settings.load_models_at_start:
        os.environ["BAIMO_LOAD_MODELS_AT_START"] = "true"
    engine = None
    if any(m.kind == "llamacpp" for m in load_config(settings).models):
        from baimo.engine.host import EngineHost

        engine = EngineHost(settings).start()
        os.environ["BAIMO_ENGINE_URL"] = engine.url
    try:
        # uvicorn pings each worker and replaces one that does not answer within timeout_worker_healthcheck
        # seconds (default 5): a worker still importing on a busy machine would be killed over and over
        uvicorn.run("baimo.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, timeout_worker_healthcheck=HEALTHCHECK_S, **uvicorn_options)
    finally:
        if engine is not None:
            engine.stop()

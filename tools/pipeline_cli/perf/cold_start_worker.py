"""`python -m pipeline_cli.perf.cold_start_worker CODE_URI HANDLER ENV_JSON`: one cold start, timed.

Imports the function's app.py and creates its clients, in this fresh interpreter; prints
{"import_ms", "clients_ms"}. The harness (this module) is imported before the clock starts.
"""

from __future__ import annotations

import json
import sys
import time

from pipeline_cli.twin.runtime import load_handler


def main(code_uri: str, handler_name: str, env_json: str) -> None:
    started = time.perf_counter()
    handler = load_handler(code_uri, handler_name, json.loads(env_json))
    imported = time.perf_counter()
    clients = sys.modules[handler.__module__].clients
    for name in ("s3", "dynamodb", "sns"):
        getattr(clients, name)
    done = time.perf_counter()
    print(json.dumps({"import_ms": (imported - started) * 1000, "clients_ms": (done - imported) * 1000}))


if __name__ == "__main__":
    main(*sys.argv[1:4])

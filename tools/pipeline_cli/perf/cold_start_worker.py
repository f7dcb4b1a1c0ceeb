"""`python -m pipeline_cli.perf.cold_start_worker CODE_URI HANDLER ENV_JSON MODE`: one cold start, timed.

Imports the function's app.py and creates its clients, in this fresh interpreter; prints
{"import_ms", "clients_ms"}. The harness (this module) is imported before the clock starts.
MODE "snapstart": the before-snapshot hooks run after the import, as Lambda runs them once per
published version; the clock restarts at the "restore", so "import_ms" is the after-restore hooks.
MODE "sdk": the SDK's share alone: "import_ms" imports image_pipeline.clients (boto3) instead of
the handler, then the same three clients are created; what no change to the handler can take away.
"""

from __future__ import annotations

import json
import sys
import time

from pipeline_cli.twin.runtime import load_handler


def main(code_uri: str, handler_name: str, env_json: str, mode: str) -> None:
    started = time.perf_counter()
    if mode == "sdk":
        from image_pipeline.clients import AwsClients

        clients = AwsClients()
    else:
        handler = load_handler(code_uri, handler_name, json.loads(env_json))
        if mode == "snapstart":
            from snapshot_restore_py import get_after_restore, get_before_snapshot

            for hook, args, kwargs in get_before_snapshot():
                hook(*args, **kwargs)
            started = time.perf_counter()  # the snapshot: later environments start from here
            for hook, args, kwargs in get_after_restore():
                hook(*args, **kwargs)
        clients = sys.modules[handler.__module__].clients
    imported = time.perf_counter()
    for name in ("s3", "dynamodb", "sns"):
        getattr(clients, name)
    done = time.perf_counter()
    print(json.dumps({"import_ms": (imported - started) * 1000, "clients_ms": (done - imported) * 1000}))


if __name__ == "__main__":
    main(*sys.argv[1:5])

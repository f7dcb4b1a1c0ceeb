"""`python -m pipeline_cli.perf.tune_worker CGROUP REPEATS JSON`: ThumbnailFunction's renditions, timed.

Joins the cgroup (when given) before it imports anything, so the whole process runs under the
CPU quota; then loads the handler as Lambda does, creates its clients, and times the handler's
own make_renditions call on each input. Prints median wall and CPU ms per input and peak RSS.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(cgroup: str, repeats: int, options: dict[str, object]) -> None:
    if cgroup:
        Path(cgroup, "cgroup.procs").write_text(str(os.getpid()), encoding="ascii")
    from image_pipeline.imaging import make_renditions
    from pipeline_cli.perf.memory import high_water_mb
    from pipeline_cli.twin.runtime import load_handler

    handler = load_handler(str(options["code_uri"]), str(options["handler"]), options["env"])  # type: ignore[arg-type]
    app = sys.modules[handler.__module__]
    spec = app.build_thumbnailer(app.clients).spec()  # creates the clients, as the first invocation does
    wall, cpu = {}, {}
    for path in options["inputs"]:  # type: ignore[attr-defined]
        data = Path(path).read_bytes()
        make_renditions(data, spec)  # warm: the first call pays for plugin and codec setup
        walls, cpus = [], []
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            make_renditions(data, spec)
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - started_cpu) * 1000)
        wall[Path(path).name] = sorted(walls)[len(walls) // 2]
        cpu[Path(path).name] = sorted(cpus)[len(cpus) // 2]
    print(json.dumps({"wall_ms": wall, "cpu_ms": cpu, "peak_rss_mb": high_water_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))

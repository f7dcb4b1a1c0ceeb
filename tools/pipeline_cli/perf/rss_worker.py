"""`python -m pipeline_cli.perf.rss_worker VARIANT FILE JSON`: run one variant once, print peak RSS (MB).

A fresh interpreter per measurement, so the figure is the whole process's, as on Lambda;
"handler" loads ThumbnailFunction (JSON: code_uri, handler, env) and makes its renditions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from image_pipeline.imaging import RenditionSpec, make_renditions
from pipeline_cli.perf.memory import high_water_mb
from pipeline_cli.twin.runtime import load_handler


def main(variant: str, path: str, payload: str) -> None:
    data, options = Path(path).read_bytes(), json.loads(payload)
    if variant == "handler":
        handler = load_handler(options["code_uri"], options["handler"], options["env"])
        module = sys.modules[handler.__module__]
        make_renditions(data, module.build_thumbnailer(module.clients).spec())  # creates the clients
    else:
        from pipeline_cli.perf.variants import RUNNERS  # only here: the handler's process imports what Lambda's does

        RUNNERS[variant](data, RenditionSpec(**{**options, "sizes": tuple(options["sizes"])}))
    print(high_water_mb())


if __name__ == "__main__":
    main(*sys.argv[1:4])

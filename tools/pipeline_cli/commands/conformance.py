"""`pipeline conformance`: the thumbnailer on ~1,100 real-world files nobody here made.

Verdicts per file come from pipeline_cli.conformance (the cached corpus, a worker process per
file, the independent reference). Then the whole corpus goes through the local pipeline (as
`pipeline demo --images` does) for the HTML contact sheet, with each file's verdict in its trail.
docs/conformance.md explains the rules.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from pipeline_cli.conformance import (
    Verdict,
    corpus_files,
    default_cache,
    fetch,
    print_summary,
    run_checks,
    summary,
)

# -- the contact sheet ---------------------------------------------------------------------------


def contact_sheet(files: dict[str, Path], verdicts: dict[str, Verdict], report: Path) -> None:
    """The corpus through the local pipeline (real handler, moto), written as the demo's report."""
    from rich.console import Console

    from pipeline_cli.commands.demo import process_with_progress
    from pipeline_cli.commands.demo_report import image_rows, write_html
    from pipeline_cli.twin.session import local_pipeline

    prefix = "uploads/conformance/"
    uploads = {prefix + name: path.read_bytes() for name, path in files.items() if verdicts[name].outcome != "HANG"}
    with local_pipeline({}, log_dir=report.parent / "logs") as pipeline:
        process_with_progress(Console(stderr=True), pipeline, uploads)
        rows = image_rows(pipeline, uploads)
        for row in rows:
            verdict = verdicts[row.key.removeprefix(prefix)]
            row.trail.append(f"conformance: {'ok' if verdict.ok else 'WRONG'}, {verdict.why}")
        write_html(pipeline, rows, pipeline.router.queue_stats.values(), report)
    unfinished = [row.key for row in rows if row.status not in ("SUCCEEDED", "FAILED")]
    if unfinished:
        raise SystemExit(f"not SUCCEEDED or FAILED in the pipeline: {', '.join(unfinished)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache(), help="downloaded sdists and extracted files")
    parser.add_argument("--images", type=Path, help="check this folder instead of the downloaded corpus")
    parser.add_argument("--match", default="", help="only files whose name matches this regular expression")
    parser.add_argument("--timeout", type=float, default=600.0, help="wall seconds before a file counts as a hang")
    parser.add_argument("--out", type=Path, default=Path("build/conformance"), help="report.html, verdicts.json")
    parser.add_argument("--no-sheet", action="store_true", help="verdicts only, no pipeline run for the report")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # Pillow on odd files; verdicts say what matters
    folder = args.images if args.images is not None else fetch(args.cache)
    paths = corpus_files(folder)
    files = {path.relative_to(folder).as_posix(): path for path in paths}
    if args.match:
        files = {name: path for name, path in files.items() if re.search(args.match, name)}
    print(f"checking {len(files)} files from {folder} ...", file=sys.stderr, flush=True)
    done = Counter[str]()

    def tick() -> None:
        done["files"] += 1
        if done["files"] % 100 == 0:
            print(f"  {done['files']}/{len(files)} checked", file=sys.stderr, flush=True)

    verdicts = {verdict.name: verdict for verdict in run_checks(files, args.timeout, tick)}
    result = summary(list(verdicts.values()))
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"summary": result, "verdicts": [asdict(v) for v in verdicts.values()]}
    (args.out / "verdicts.json").write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    print_summary(result)
    if not args.no_sheet:
        contact_sheet(files, verdicts, args.out / "report.html")
        print(f"HTML contact sheet: {(args.out / 'report.html').resolve()}", file=sys.stderr)
    print(f"verdicts: {(args.out / 'verdicts.json').resolve()}", file=sys.stderr)
    return 0 if not result["wrong"] else 1

"""What happened in a local run: per image and per queue, as console tables and an HTML report."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from rich.console import Console
from rich.table import Table

from pipeline_cli.twin.delivery import QueueStats
from pipeline_cli.twin.runtime import Invocation
from pipeline_cli.twin.session import LocalPipeline
from pipeline_cli.webhook_receiver import ReceivedRequest

BROWSER_FORMATS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif"}


@dataclass
class ImageRow:
    key: str
    status: str = "NOT PROCESSED"
    reason: str = ""
    detail: str = ""
    width: int | None = None
    height: int | None = None
    renditions: list[dict[str, Any]] = field(default_factory=list)
    format: str = ""
    frames: int = 1
    processing_ms: float = 0.0
    trail: list[str] = field(default_factory=list)

    @property
    def rendition_bytes(self) -> int:
        """Bytes stored: sizes that share an object (a source smaller than them) count once."""
        return sum({rendition["key"]: int(rendition["bytes"]) for rendition in self.renditions}.values())

    @property
    def frames_note(self) -> str:
        """What the renditions show of a multi-frame source ("" for a still image)."""
        if self.status != "SUCCEEDED" or self.frames <= 1:
            return ""
        if self.format == "HEIF":
            return f"primary image of {self.frames} (sequence or burst)"
        return f"first frame of an animation of {self.frames}"


def _keys_of(invocation: Invocation) -> list[str]:
    """The object keys a thumbnailer invocation was about."""
    event = invocation.event
    if isinstance(event, dict) and "Records" in event:
        return [unquote_plus(record["s3"]["object"]["key"]) for record in event["Records"] if "s3" in record]
    if isinstance(event, dict) and "key" in event:
        return [str(event["key"])]
    return []


def _outcome(invocation: Invocation, key: str) -> str:
    if invocation.failed:
        return f"error {invocation.error_type}: {invocation.error_message}"
    for result in (invocation.result or {}).get("results", []):
        if result.get("key") == key:
            reason = (result.get("error") or {}).get("reason")
            return str(result.get("outcome", "")) + (f" ({reason})" if reason else "")
    return "done"


def image_rows(
    pipeline: LocalPipeline, uploaded: Iterable[str], webhook_requests: list[ReceivedRequest] | None = None
) -> list[ImageRow]:
    """One row per uploaded key: the item as stored, and the trail of what touched it."""
    rows = {
        key: ImageRow(key=key, trail=[f"uploaded to s3://{pipeline.output('IngestBucketName')}/{key}"])
        for key in uploaded
    }
    items = {item["key"]: item for item in pipeline.items()}
    for invocation in pipeline.functions.invocations:
        if invocation.function != "ThumbnailFunction":
            continue
        for key in _keys_of(invocation):
            if key in rows:
                rows[key].processing_ms += invocation.duration_ms
                took = f"{invocation.trigger}, {invocation.duration_ms:.0f} ms"
                rows[key].trail.append(f"ThumbnailFunction ({took}): {_outcome(invocation, key)}")
    image_ids: dict[str, str] = {}
    for key, row in rows.items():
        item = items.get(key)
        if item is None:
            continue
        image_ids[str(item["image_id"])] = key
        row.status = str(item["status"])
        error = item.get("error") or {}
        row.reason, row.detail = str(error.get("reason", "")), str(error.get("detail", ""))
        row.width, row.height = item.get("width"), item.get("height")
        row.renditions = list(item.get("renditions") or [])
        row.format, row.frames = str(item.get("format", "")), int(item.get("frames") or 1)
    event_keys: dict[str, str] = {}  # event id -> uploaded key
    for event in pipeline.archived_events():
        archived_key = image_ids.get(str(event.get("image", {}).get("image_id")))
        if archived_key:
            event_keys[event["event_id"]] = archived_key
            rows[archived_key].trail.append(f"{event['event_type']} {event['event_id'][:12]} archived by AuditFunction")
    for request in webhook_requests or []:
        if key := event_keys.get(request.event_id, ""):
            verified = (
                "signature verified" if request.signature_error is None else f"bad signature: {request.signature_error}"
            )
            rows[key].trail.append(f"webhook POST {request.event_id[:12]} -> HTTP {request.status} ({verified})")
    return list(rows.values())


def print_summary(console: Console, rows: list[ImageRow], queues: Iterable[QueueStats], key_prefix: str = "") -> None:
    images = Table(title=f"Images ({key_prefix}...)" if key_prefix else "Images", title_justify="left")
    # rendition bytes: all renditions of the image together; ms: the thumbnailer's time, retries included
    for column in ("key", "status", "reason / frames", "size", "renditions", "rendition bytes", "ms"):
        images.add_column(column, justify="left" if column in ("key", "status", "reason / frames", "size") else "right")
    for row in rows:
        style = {"SUCCEEDED": "green", "FAILED": "red"}.get(row.status, "yellow")
        size = f"{row.width}x{row.height}" if row.width else ""
        images.add_row(
            row.key.removeprefix(key_prefix),
            f"[{style}]{row.status}[/]",
            row.reason or row.frames_note,
            size,
            str(len(row.renditions)),
            f"{row.rendition_bytes:,}",
            f"{row.processing_ms:.0f}",
        )
    console.print(images)
    table = Table(title="Queues (SNS fan-out -> SQS -> Lambda)", title_justify="left")
    for column in ("consumer", "batches", "delivered", "failed deliveries", "in DLQ"):
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for stats in queues:
        dlq = f"[red]{stats.in_dlq}[/]" if stats.in_dlq else "0"
        table.add_row(stats.source.function, str(stats.batches), str(stats.delivered), str(stats.failed), dlq)
    console.print(table)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
.image { border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin-bottom: 1.5rem; }
.strip { display: flex; gap: 1rem; align-items: flex-end; flex-wrap: wrap; }
figure { margin: 0; text-align: center; font-size: .8rem; }
figure img { max-width: 320px; max-height: 240px; border: 1px solid #ccc;
             background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0/16px 16px; }
.SUCCEEDED { color: #087f23; } .FAILED { color: #b00020; }
ol { font-size: .85rem; } code { font-size: .85rem; }
"""


def write_html(pipeline: LocalPipeline, rows: list[ImageRow], queues: Iterable[QueueStats], path: Path) -> Path:
    """A contact sheet (original next to its renditions) and each image's event trail."""
    files = path.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    sections = []
    for index, row in enumerate(rows):
        figures = []
        suffix = Path(row.key).suffix.lower()
        if row.status != "SUCCEEDED":
            figures.append(f"<figure>(original not shown: {html.escape(row.reason or row.status)})</figure>")
        elif suffix in BROWSER_FORMATS:
            original = files / f"{index}-original{suffix}"
            original.write_bytes(pipeline.read("IngestBucketName", row.key))
            figures.append(_figure(original, path.parent, "original"))
        else:
            figures.append(
                f"<figure>(original {html.escape(suffix or 'without extension')}: not shown by browsers)</figure>"
            )
        for rendition in row.renditions:
            target = files / f"{index}-{rendition['size']}{Path(rendition['key']).suffix}"
            target.write_bytes(pipeline.read("RenditionsBucketName", rendition["key"]))
            figures.append(
                _figure(
                    target, path.parent, f"{rendition['width']}x{rendition['height']}, {int(rendition['bytes']):,} B"
                )
            )
        reason = f" — {html.escape(row.reason)}: {html.escape(row.detail)}" if row.reason else ""
        if row.frames_note:
            reason += f" — renditions show the {html.escape(row.frames_note)}"
        trail = "".join(f"<li>{html.escape(step)}</li>" for step in row.trail)
        sections.append(
            f'<div class="image"><h3><code>{html.escape(row.key)}</code> '
            f'<span class="{html.escape(row.status)}">{html.escape(row.status)}</span>{reason}</h3>'
            f'<div class="strip">{"".join(figures)}</div><ol>{trail}</ol></div>'
        )
    queue_rows = "".join(
        f"<tr><td>{html.escape(stats.source.function)}</td><td>{stats.batches}</td><td>{stats.delivered}</td>"
        f"<td>{stats.failed}</td><td>{stats.in_dlq}</td></tr>"
        for stats in queues
    )
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Image pipeline: local run</title>"
        f"<style>{_STYLE}</style></head><body><h1>Image pipeline: local run</h1>"
        f"<p>Stack <code>{html.escape(pipeline.stack.name)}</code> on {html.escape(pipeline.endpoint.url)}; "
        f"{len(rows)} uploads, {len(pipeline.functions.invocations)} function invocations.</p>"
        f"<h2>Queues</h2><table border=1 cellpadding=4><tr><th>consumer</th><th>batches</th><th>delivered</th>"
        f"<th>failed deliveries</th><th>in DLQ</th></tr>{queue_rows}</table>"
        f"<h2>Images</h2>{''.join(sections)}</body></html>"
    )
    path.write_text(document, encoding="utf-8")
    return path


def _figure(image: Path, base: Path, caption: str) -> str:
    source = html.escape(image.relative_to(base).as_posix())
    return f'<figure><img src="{source}" alt=""><figcaption>{html.escape(caption)}</figcaption></figure>'

"""The one place configuration is read: environment variables set in template.yaml.

Each function has a settings class; `from_env()` validates everything at cold start and
raises ConfigError naming every bad variable at once, so a misconfigured deploy fails on its
first invocation with a clear message instead of half-way through an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from image_pipeline.backoff import Backoff

T = TypeVar("T")

RENDITION_FORMATS = ("JPEG", "WEBP", "AVIF")
# Largest original, in bytes: the thumbnailer's MAX_SOURCE_BYTES and the presigned upload's limit
# (MAX_UPLOAD_BYTES); the template sets both from one parameter, MaxUploadBytes.
DEFAULT_MAX_SOURCE_BYTES = 100_000_000


# Peak memory of one image (docs/reliability.md, "Memory"): the runtime with Pillow loaded, the
# original held in memory (it is read whole), and the decoded pixels with the working copies the
# renditions are made from. The per-pixel figure bounds what the sandboxed test measures for a
# 16-bit RGB PNG, the costliest common decode (5.7 B/px; tests/unit/test_hostile_inputs.py).
RUNTIME_BASELINE_MB = 160
PEAK_BYTES_PER_PIXEL = 10
_MB = 1024 * 1024


def memory_needed_mb(max_pixels: int, max_source_bytes: int) -> int:
    """The MemorySize (MB) ThumbnailFunction needs for the largest image it accepts."""
    return RUNTIME_BASELINE_MB + -(-(max_pixels * PEAK_BYTES_PER_PIXEL + max_source_bytes) // _MB)


class ConfigError(ValueError):
    """One or more environment variables are missing or invalid."""


class _EnvReader:
    """Reads typed values from an environment mapping, collecting every problem."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def _read(self, name: str, parse: Callable[[str], T], default: T | None) -> T:
        raw = self._environ.get(name, "").strip()
        if not raw:
            if default is None:
                self.problems.append(f"{name} is required")
                return None  # type: ignore[return-value]  # never used: raise_if_invalid() raises
            return default
        try:
            return parse(raw)
        except ValueError as error:
            self.problems.append(f"{name}={raw!r}: {error}")
            return None  # type: ignore[return-value]

    def text(self, name: str, default: str | None = None) -> str:
        return self._read(name, str, default)

    def optional_text(self, name: str) -> str:
        return self._read(name, str, "")

    def integer(self, name: str, default: int | None = None, *, minimum: int = 0, maximum: int | None = None) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if value < minimum or (maximum is not None and value > maximum):
                raise ValueError(f"must be between {minimum} and {maximum if maximum is not None else 'inf'}")
            return value

        return self._read(name, parse, default)

    def number(self, name: str, default: float | None = None, *, minimum: float = 0.0) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if value < minimum:
                raise ValueError(f"must be >= {minimum}")
            return value

        return self._read(name, parse, default)

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")

        return self._read(name, parse, default)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        def parse(raw: str) -> str:
            value = raw.upper()
            if value not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return value

        return self._read(name, parse, default)

    def prefix(self, name: str, default: str) -> str:
        """An S3 key prefix: ends with '/', so "uploads" cannot also match "uploads-old/"."""

        def parse(raw: str) -> str:
            if not raw.endswith("/"):
                raise ValueError("must end with '/'")
            return raw

        return self._read(name, parse, default)

    def sizes(self, name: str, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
        return self._read(name, parse_sizes, default)

    def raise_if_invalid(self, settings_name: str) -> None:
        if self.problems:
            raise ConfigError(f"invalid {settings_name}: " + "; ".join(self.problems))


def parse_sizes(raw: str) -> tuple[int, ...]:
    """'1024,512,128' -> (1024, 512, 128): unique, descending, each 16..4096 px."""
    try:
        sizes = {int(part) for part in raw.replace(" ", "").split(",") if part}
    except ValueError:
        raise ValueError("sizes must be comma-separated integers, e.g. 1024,512,128") from None
    if not sizes:
        raise ValueError("must name at least one size")
    if any(size < 16 or size > 4096 for size in sizes):
        raise ValueError("each size must be between 16 and 4096 pixels")
    return tuple(sorted(sizes, reverse=True))


@dataclass(frozen=True)
class ThumbnailSettings:
    ingest_bucket: str  # the only bucket whose events are processed (an allow-list of one)
    renditions_bucket: str
    images_table: str
    events_topic_arn: str
    upload_prefix: str
    rendition_sizes: tuple[int, ...]
    rendition_format: str
    rendition_quality: int
    max_pixels: int
    max_source_bytes: int
    upload_concurrency: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ThumbnailSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            ingest_bucket=env.text("INGEST_BUCKET"),
            renditions_bucket=env.text("RENDITIONS_BUCKET"),
            images_table=env.text("IMAGES_TABLE"),
            events_topic_arn=env.text("EVENTS_TOPIC_ARN"),
            upload_prefix=env.text("UPLOAD_PREFIX", "uploads/"),
            rendition_sizes=env.sizes("RENDITION_SIZES", (1024, 512, 128)),
            rendition_format=env.choice("RENDITION_FORMAT", RENDITION_FORMATS, "JPEG"),
            rendition_quality=env.integer("RENDITION_QUALITY", 82, minimum=1, maximum=100),
            max_pixels=env.integer("MAX_PIXELS", 50_000_000, minimum=1),
            max_source_bytes=env.integer("MAX_SOURCE_BYTES", DEFAULT_MAX_SOURCE_BYTES, minimum=1),
            upload_concurrency=env.integer("UPLOAD_CONCURRENCY", 4, minimum=1, maximum=32),
        )
        # Set by Lambda: a MaxPixels / MaxUploadBytes the function's memory cannot hold would
        # fail only when such an image arrives (out of memory, retried, dead-lettered): say so now.
        memory_mb = env.integer("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0)
        if memory_mb and settings.max_pixels and settings.max_source_bytes:
            needed = memory_needed_mb(settings.max_pixels, settings.max_source_bytes)
            if needed > memory_mb:
                env.problems.append(
                    f"MAX_PIXELS={settings.max_pixels} and MAX_SOURCE_BYTES={settings.max_source_bytes} need about"
                    f" {needed} MB, the function has {memory_mb} MB: raise ThumbnailMemorySize or lower the limits"
                )
        env.raise_if_invalid(cls.__name__)
        return settings


# Idempotency records outlive every copy of an event that can still arrive: the source queues
# keep messages 4 days and their DLQs 14, and a redriven duplicate must still be recognised.
DEFAULT_IDEMPOTENCY_TTL_SECONDS = 15 * 24 * 3600


@dataclass(frozen=True)
class IdempotencySettings:
    table: str
    ttl_seconds: int

    @classmethod
    def read(cls, env: _EnvReader) -> IdempotencySettings:
        return cls(
            table=env.text("IDEMPOTENCY_TABLE"),
            ttl_seconds=env.integer("IDEMPOTENCY_TTL_SECONDS", DEFAULT_IDEMPOTENCY_TTL_SECONDS, minimum=60),
        )


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret_id: str
    timeout_seconds: float  # the whole request, connect to last byte
    secret_max_age_seconds: int
    idempotency: IdempotencySettings
    retry_base_seconds: int = 60  # a failed delivery's first retry delay (doubles, jittered)
    retry_max_seconds: int = 3600  # ... up to this

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.retry_base_seconds, self.retry_max_seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            url=env.text("WEBHOOK_URL"),
            secret_id=env.text("WEBHOOK_SECRET_ARN"),
            timeout_seconds=env.number("WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1),
            # Read once per container, re-read after this age so a rotated secret is picked up.
            secret_max_age_seconds=env.integer("WEBHOOK_SECRET_MAX_AGE_SECONDS", 300, minimum=0),
            idempotency=IdempotencySettings.read(env),
            retry_base_seconds=env.integer("WEBHOOK_RETRY_BASE_SECONDS", 60, minimum=0, maximum=43_200),
            retry_max_seconds=env.integer("WEBHOOK_RETRY_MAX_SECONDS", 3600, minimum=0, maximum=43_200),
        )
        if settings.url:
            parsed = urlsplit(settings.url)
            # http is accepted for local runs; the template only accepts https:// URLs.
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                env.problems.append(f"WEBHOOK_URL={settings.url!r}: must be an http(s) URL with a host")
        env.raise_if_invalid(cls.__name__)
        return settings


@dataclass(frozen=True)
class AuditSettings:
    archive_bucket: str
    archive_prefix: str
    idempotency: IdempotencySettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            archive_bucket=env.text("ARCHIVE_BUCKET"),
            archive_prefix=env.prefix("ARCHIVE_PREFIX", "archive/"),
            idempotency=IdempotencySettings.read(env),
        )
        env.raise_if_invalid(cls.__name__)
        return settings


@dataclass(frozen=True)
class CleanupSettings:
    images_table: str
    renditions_bucket: str
    stuck_after_minutes: int  # PROCESSING for longer than this: the attempt died
    orphan_grace_minutes: int  # renditions younger than this may belong to an attempt in flight
    max_items_per_run: int  # items checked plus rendition objects listed, per run
    dry_run: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CleanupSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            images_table=env.text("IMAGES_TABLE"),
            renditions_bucket=env.text("RENDITIONS_BUCKET"),
            stuck_after_minutes=env.integer("STUCK_AFTER_MINUTES", 30, minimum=1),
            orphan_grace_minutes=env.integer("ORPHAN_GRACE_MINUTES", 30, minimum=0),
            max_items_per_run=env.integer("CLEANUP_MAX_ITEMS_PER_RUN", 5000, minimum=1),
            dry_run=env.flag("CLEANUP_DRY_RUN", False),
        )
        env.raise_if_invalid(cls.__name__)
        return settings


@dataclass(frozen=True)
class ReprocessSettings:
    images_table: str
    page_size: int  # items per DynamoDB Query/Scan page while selecting a run's images
    results_bucket: str  # where a run's manifest of selected images goes (under backfill/selected/)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReprocessSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            images_table=env.text("IMAGES_TABLE"),
            page_size=env.integer("REPROCESS_PAGE_SIZE", 200, minimum=1, maximum=1000),
            results_bucket=env.text("RESULTS_BUCKET"),
        )
        env.raise_if_invalid(cls.__name__)
        return settings


@dataclass(frozen=True)
class UploadUrlSettings:
    ingest_bucket: str
    upload_prefix: str
    max_upload_bytes: int  # the thumbnailer's MAX_SOURCE_BYTES: larger uploads would only fail there
    url_expiry_seconds: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UploadUrlSettings:
        env = _EnvReader(os.environ if environ is None else environ)
        settings = cls(
            ingest_bucket=env.text("INGEST_BUCKET"),
            upload_prefix=env.prefix("UPLOAD_PREFIX", "uploads/"),
            # S3 takes at most 5 GB in one POST.
            max_upload_bytes=env.integer("MAX_UPLOAD_BYTES", DEFAULT_MAX_SOURCE_BYTES, minimum=1, maximum=5 * 10**9),
            url_expiry_seconds=env.integer("UPLOAD_URL_EXPIRY_SECONDS", 300, minimum=1, maximum=3600),
        )
        env.raise_if_invalid(cls.__name__)
        return settings

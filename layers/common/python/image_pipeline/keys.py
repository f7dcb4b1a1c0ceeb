"""Identifiers and object keys: one definition, used by the handler, cleanup and the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

RENDITIONS_PREFIX = "renditions/"
_SEQUENCER_WIDTH = 32


def image_id_for(bucket: str, key: str) -> str:
    """Stable id of the image at bucket/key: every version of one key is the same image."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]


def rendition_key(image_id: str, source_etag: str, spec_version: str, size: int, extension: str) -> str:
    """renditions/{image_id}/{etag}/{spec version}/{size}.{ext}.

    The source etag in the path makes each rendition immutable (cacheable forever) and means a
    late writer for an older version can never overwrite the newer version's files; the spec
    version (imaging.RenditionSpec.version) does the same for a re-render with other settings.
    """
    return f"{RENDITIONS_PREFIX}{image_id}/{source_etag}/{spec_version}/{size}.{extension}"


def image_id_from_rendition_key(key: str) -> str | None:
    if not key.startswith(RENDITIONS_PREFIX):
        return None
    image_id, _, _ = key[len(RENDITIONS_PREFIX) :].partition("/")
    return image_id or None


def normalize_sequencer(sequencer: str) -> str:
    """S3 sequencers are hex strings of varying length: left-pad to compare them as strings."""
    return sequencer.strip().upper().rjust(_SEQUENCER_WIDTH, "0")


@dataclass(frozen=True)
class ObjectRef:
    """One version of one uploaded object, as an S3 event (or a reprocess request) names it."""

    bucket: str
    key: str
    etag: str
    sequencer: str
    version_id: str | None = None
    size: int | None = None

    @property
    def image_id(self) -> str:
        return image_id_for(self.bucket, self.key)

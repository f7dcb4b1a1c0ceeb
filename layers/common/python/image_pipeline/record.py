"""The ImagesTable item, typed: one ImageRecord per image (per bucket/key).

The item is flat in DynamoDB (its attribute names are also the event payload's, and the
reprocess state machine writes `status`, `error` and `updated_at` directly):

    image_id, bucket, key, status (PROCESSING|SUCCEEDED|FAILED), created_at, updated_at,
    attempts, source_etag, source_sequencer, source_version_id?,
    width?, height?, format?, frames?, bytes?, sha256?   what the decoder found, once SUCCEEDED
    renditions? [{size, width, height, key, bytes, content_type}]   one per size, largest first
    rendition_spec?                                 the spec version that made the renditions
    error? {reason, detail, cause?}                 why it FAILED

Timestamps are ISO-8601 UTC strings with milliseconds ("2026-11-25T10:00:00.000Z"): they sort
as strings, which is what the "by-status" index (status, updated_at) and the cleanup compare.
frames > 1: the renditions show the first frame of an animation (for HEIF, the primary image
of a sequence or burst); absent on items written before it was recorded. Sizes whose
renditions are byte-identical (every size larger than the source, which is never upscaled) share
one key: one object, named after the smallest of those sizes. Readers find a size by "size",
never by key; rendition_keys (a set) are the objects to keep or delete.
rendition_spec is imaging.RenditionSpec.version (a short hash of sizes, format, quality, renderer
revision and Pillow's version): a re-render at another spec writes new keys (the version is in
them) and a backfill skips an item already at the current one; items rendered before specs had
versions have none.
A later version keeps the earlier version's image fields and renditions until it succeeds
(the thumbnailer deletes the superseded renditions then).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, Self

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ImageStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class InvalidRecord(ValueError):
    """A stored item that is not an image record (a missing or mistyped attribute)."""


def to_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values -> DynamoDB attribute values (for items, keys and expression values)."""
    return {name: _serializer.serialize(value) for name, value in values.items()}


def from_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values -> plain values (every number we store is an integer)."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in attributes.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "as_integer_ratio") and not isinstance(value, bool | int | float):
        return int(value)  # Decimal
    return value


def _field(values: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in values:
        raise InvalidRecord(f"{where}: no {name!r}")
    value = values[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRecord(f"{where}: {name!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _optional(values: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    return _field(values, name, kind, where) if values.get(name) is not None else None


@dataclass(frozen=True)
class SourceVersion:
    """The object version the item describes; every write is conditional on it."""

    etag: str
    sequencer: str  # normalized (keys.normalize_sequencer): compares as a string
    version_id: str | None = None


class _Attributes:
    """A part of the item stored as a map (or, for SourceImage, inlined): a dataclass whose int
    and str fields are attributes of the same name, an optional one left out when None."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _KINDS: ClassVar[dict[str, type]] = {"int": int, "str": str}

    def to_dict(self) -> dict[str, Any]:
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str) -> Self:
        parsed = {}
        for spec in fields(cls):
            kind, optional = str(spec.type).removesuffix(" | None"), str(spec.type).endswith(" | None")
            read = _optional if optional else _field
            parsed[spec.name] = read(values, spec.name, cls._KINDS[kind], where)
        return cls(**parsed)


@dataclass(frozen=True)
class SourceImage(_Attributes):
    """What the decoder found in the source, recorded on success."""

    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    frames: int | None = None  # > 1: an animation, sequence or burst (renditions show one frame)


@dataclass(frozen=True)
class StoredRendition(_Attributes):
    """One rendition object in the renditions bucket."""

    size: int  # the requested bounding box (longest side)
    width: int
    height: int
    key: str
    bytes: int
    content_type: str


@dataclass(frozen=True)
class FailureReason(_Attributes):
    """Why an image is FAILED: a stable code (errors.RejectReason, "timed out" from the cleanup,
    "reprocess_failed" from the workflow), a human-readable detail, and the workflow's cause."""

    reason: str
    detail: str
    cause: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    bucket: str
    key: str
    status: ImageStatus
    source: SourceVersion
    created_at: str
    updated_at: str
    attempts: int  # claims of this item, retries and reprocessing included
    image: SourceImage | None = None
    renditions: tuple[StoredRendition, ...] = ()
    error: FailureReason | None = None
    rendition_spec: str | None = None

    @property
    def rendition_keys(self) -> frozenset[str]:
        return frozenset(rendition.key for rendition in self.renditions)

    def to_dict(self) -> dict[str, Any]:
        """The item as plain values, attribute by attribute (absent optional fields left out)."""
        values: dict[str, Any] = {
            "image_id": self.image_id,
            "bucket": self.bucket,
            "key": self.key,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "attempts": self.attempts,
            "source_etag": self.source.etag,
            "source_sequencer": self.source.sequencer,
        }
        if self.source.version_id is not None:
            values["source_version_id"] = self.source.version_id
        if self.image is not None:
            values |= self.image.to_dict()
        if self.rendition_spec is not None:
            values["rendition_spec"] = self.rendition_spec
        if self.renditions:
            values["renditions"] = [rendition.to_dict() for rendition in self.renditions]
        if self.error is not None:
            values["error"] = self.error.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ImageRecord:
        where = f"image item {values.get('image_id')!r}"
        status = _field(values, "status", str, where)
        try:
            image_status = ImageStatus(status)
        except ValueError:
            raise InvalidRecord(f"{where}: status {status!r} is not one of {[s.value for s in ImageStatus]}") from None
        renditions = _optional(values, "renditions", list, where) or []
        error = _optional(values, "error", dict, where)
        return cls(
            image_id=_field(values, "image_id", str, where),
            bucket=_field(values, "bucket", str, where),
            key=_field(values, "key", str, where),
            status=image_status,
            source=SourceVersion(
                etag=_field(values, "source_etag", str, where),
                sequencer=_field(values, "source_sequencer", str, where),
                version_id=_optional(values, "source_version_id", str, where),
            ),
            created_at=_field(values, "created_at", str, where),
            updated_at=_field(values, "updated_at", str, where),
            attempts=_field(values, "attempts", int, where),
            image=SourceImage.from_dict(values, where) if "width" in values else None,
            renditions=tuple(StoredRendition.from_dict(r, f"{where}, rendition") for r in renditions),
            error=FailureReason.from_dict(error, f"{where}, error") if error is not None else None,
            rendition_spec=_optional(values, "rendition_spec", str, where),
        )

    def to_item(self) -> dict[str, Any]:
        """The item in DynamoDB's attribute-value form (PutItem's Item)."""
        return to_attributes(self.to_dict())

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ImageRecord:
        """From DynamoDB's attribute-value form (GetItem's Item, a Query's Items)."""
        return cls.from_dict(from_attributes(item))

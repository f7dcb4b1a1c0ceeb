"""Presigned uploads: check a request for one image upload, then sign an S3 POST for it.

Every caller uploads into a folder of its own, uploads/<caller scope>/ (the scope is derived from
its IAM identity), so no caller can name, and so replace, another's object (an overwrite would
also delete the victim's renditions). Inside its own folder, a key that exists is refused (409).
The POST policy is what keeps an upload within limits, and S3 enforces it, not this code: the
exact key (under the caller's folder), a content-length-range up to the pipeline's size limit (or
the size the caller declared), the declared image Content-Type, and a short expiry. The policy is
signed with the function's credentials, so a caller who edits it invalidates the signature, and
those credentials may only PutObject under the upload prefix.
Importable without Pillow: the upload function stays small and starts fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from image_pipeline.config import UploadUrlSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The image types the thumbnailer decodes (imaging.SUPPORTED_FORMATS), with their file extensions;
# the first extension names generated keys.
ACCEPTED_CONTENT_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "image/jpeg": ("jpg", "jpeg"),
    "image/png": ("png",),
    "image/webp": ("webp",),
    "image/gif": ("gif",),
    "image/tiff": ("tif", "tiff"),
    "image/bmp": ("bmp",),
    "image/avif": ("avif",),
    "image/heic": ("heic",),  # what iPhones send; HEIF with HEVC pictures
    "image/heif": ("heif", "hif"),
}
REQUEST_FIELDS: Final = ("content_type", "size", "name")
SCOPE_LENGTH: Final = 16  # hex digits of the caller's scope: 64 bits, no collisions in practice
MAX_NAME_LENGTH: Final = 512  # S3 allows 1024 bytes of key; leave room for the prefix
# Relative path of segments made of letters, digits, '.', '_', '-', none starting with '.':
# no '..', no hidden files, no leading or doubled '/', no backslashes, spaces or control characters.
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


class UploadRequestError(ValueError):
    """The request cannot be granted; the message says why and is safe to show the caller."""


class UploadConflict(UploadRequestError):
    """The key exists already: uploads never replace an object."""


def caller_scope(caller: str) -> str:
    """The folder of one IAM identity (its principal ARN) below the upload prefix.

    A digest, not the ARN itself: keys stay short and plain, and do not publish account ids or
    role names to whoever reads the bucket; the logs tie each key to its caller."""
    if not caller:
        raise UploadRequestError("the request carries no caller identity (the route must be IAM-authorised)")
    return hashlib.sha256(caller.encode()).hexdigest()[:SCOPE_LENGTH]


@dataclass(frozen=True)
class UploadRequest:
    content_type: str
    size: int | None = None  # declared by the caller: the upload may not be larger
    name: str | None = None  # caller-chosen key below the upload prefix; a random one otherwise

    @classmethod
    def from_body(cls, body: str | None) -> UploadRequest:
        """Parse and validate a JSON request body, e.g. {"content_type": "image/png", "size": 123}."""
        try:
            document = json.loads(body or "")
        except json.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise UploadRequestError('the body must be a JSON object, e.g. {"content_type": "image/jpeg"}')
        if unknown := sorted(set(document) - set(REQUEST_FIELDS)):
            raise UploadRequestError(f"unknown fields: {', '.join(unknown)} (accepted: {', '.join(REQUEST_FIELDS)})")
        content_type = document.get("content_type")
        if not isinstance(content_type, str) or not content_type.strip():
            raise UploadRequestError('content_type is required, e.g. "image/jpeg"')
        size, name = document.get("size"), document.get("name")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise UploadRequestError("size must be a whole number of bytes")
        if name is not None and not isinstance(name, str):
            raise UploadRequestError("name must be a string")
        return cls(content_type=content_type.strip().lower(), size=size, name=name)


@dataclass(frozen=True)
class PresignedUpload:
    """What the caller needs: POST `fields` plus a `file` part, as multipart/form-data, to `url`."""

    url: str
    fields: dict[str, str]
    key: str
    content_type: str
    max_bytes: int
    expires_at: str  # ISO 8601, from the signed policy itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": self.url,
            "fields": self.fields,
            "key": self.key,
            "content_type": self.content_type,
            "max_bytes": self.max_bytes,
            "expires_at": self.expires_at,
        }


def decode_policy(fields: Mapping[str, str]) -> dict[str, Any]:
    """The POST policy document carried, base64-encoded, in a presigned POST's fields."""
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


class UploadSigner:
    def __init__(self, s3: S3Client, settings: UploadUrlSettings) -> None:
        self._s3 = s3
        self._settings = settings

    def _extensions(self, request: UploadRequest) -> tuple[str, ...]:
        extensions = ACCEPTED_CONTENT_TYPES.get(request.content_type)
        if extensions is None:
            raise UploadRequestError(
                f"unsupported content type {request.content_type!r}; accepted: {', '.join(ACCEPTED_CONTENT_TYPES)}"
            )
        return extensions

    def _max_bytes(self, request: UploadRequest) -> int:
        limit = self._settings.max_upload_bytes
        if request.size is None:
            return limit
        if request.size < 1:
            raise UploadRequestError("size must be at least 1 byte")
        if request.size > limit:
            raise UploadRequestError(f"size {request.size} exceeds the {limit} byte upload limit")
        return request.size

    def folder(self, caller: str) -> str:
        return f"{self._settings.upload_prefix}{caller_scope(caller)}/"

    def key_for(self, request: UploadRequest, caller: str) -> str:
        """uploads/<scope>/<name>, or uploads/<scope>/<random uuid>.<ext> when the caller names nothing."""
        extensions = self._extensions(request)
        folder = self.folder(caller)
        if request.name is None:
            return f"{folder}{uuid.uuid4().hex}.{extensions[0]}"
        name = request.name
        if not name or len(name) > MAX_NAME_LENGTH or not _SAFE_NAME.fullmatch(name):
            raise UploadRequestError(
                f"name must be a relative path of at most {MAX_NAME_LENGTH} characters: segments of letters, "
                "digits, '.', '_' and '-' separated by single '/', none starting with '.' (so no '..')"
            )
        file_name = name.rsplit("/", 1)[-1]
        extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
        if extension not in extensions:
            expected = " or ".join(f".{choice}" for choice in extensions)
            raise UploadRequestError(f"name must end in {expected} for content type {request.content_type}")
        return f"{folder}{name}"

    def _exists(self, key: str) -> bool:
        listed = self._s3.list_objects_v2(Bucket=self._settings.ingest_bucket, Prefix=key, MaxKeys=1)
        return any(entry["Key"] == key for entry in listed.get("Contents", []))

    def presign(self, request: UploadRequest, caller: str) -> PresignedUpload:
        key = self.key_for(request, caller)
        max_bytes = self._max_bytes(request)
        # S3's POST uploads take no If-None-Match (conditional writes are PutObject's and
        # CompleteMultipartUpload's): refuse an existing key here; the grant is for one key, short-lived.
        if self._exists(key):
            raise UploadConflict(f"{key} exists already; uploads never replace an object: choose another name")
        post = self._s3.generate_presigned_post(
            Bucket=self._settings.ingest_bucket,
            Key=key,  # boto3 adds the exact-key condition
            Fields={"Content-Type": request.content_type},
            Conditions=[
                ["starts-with", "$key", self.folder(caller)],
                ["content-length-range", 1, max_bytes],
                {"Content-Type": request.content_type},
            ],
            ExpiresIn=self._settings.url_expiry_seconds,
        )
        fields = {name: str(value) for name, value in post["fields"].items()}
        return PresignedUpload(
            url=post["url"],
            fields=fields,
            key=key,
            content_type=request.content_type,
            max_bytes=max_bytes,
            expires_at=str(decode_policy(fields)["expiration"]),
        )

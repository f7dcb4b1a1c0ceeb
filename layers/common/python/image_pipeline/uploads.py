"""Presigned uploads: check a request for one image upload, then sign an S3 PUT for it.

Every caller uploads into a folder of its own, uploads/<caller scope>/ (the scope is derived from
its IAM identity), so no caller can name, and so replace, another's object (an overwrite would
also delete the victim's renditions). Inside its own folder, S3 itself refuses to replace an
object: the grant is a presigned PutObject whose signature covers `If-None-Match: *`, so S3
answers 412 to a second PUT of the same URL and to the loser of a race for the key, and a request
that drops the header no longer matches the signature (403). The signature also covers the exact
key, the declared Content-Length (at most the pipeline's size limit) and Content-Type, and a short
expiry. It is made with the function's credentials, which may only PutObject under the upload
prefix, and only with If-None-Match. A key that exists already is refused early, with 409.
Why PUT and not POST (POST uploads take no If-None-Match): docs/security.md, Presigned uploads.
Importable without Pillow: the upload function stays small and starts fast.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

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
    size: int  # declared by the caller: the signature holds the upload to exactly this many bytes
    name: str | None = None  # caller-chosen key below the upload prefix; a random one otherwise

    @classmethod
    def from_body(cls, body: str | None) -> UploadRequest:
        """Parse and validate a JSON request body, e.g. {"content_type": "image/png", "size": 123}."""
        try:
            document = json.loads(body or "")
        except json.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise UploadRequestError('the body must be a JSON object, e.g. {"content_type": "image/jpeg", "size": 123}')
        if unknown := sorted(set(document) - set(REQUEST_FIELDS)):
            raise UploadRequestError(f"unknown fields: {', '.join(unknown)} (accepted: {', '.join(REQUEST_FIELDS)})")
        content_type = document.get("content_type")
        if not isinstance(content_type, str) or not content_type.strip():
            raise UploadRequestError('content_type is required, e.g. "image/jpeg"')
        size, name = document.get("size"), document.get("name")
        if size is None:
            raise UploadRequestError("size is required: the exact number of bytes you will upload (S3 checks it)")
        if not isinstance(size, int) or isinstance(size, bool):
            raise UploadRequestError("size must be a whole number of bytes")
        if name is not None and not isinstance(name, str):
            raise UploadRequestError("name must be a string")
        return cls(content_type=content_type.strip().lower(), size=size, name=name)


@dataclass(frozen=True)
class PresignedUpload:
    """What the caller needs: PUT the file's bytes to `url` with exactly these `headers`."""

    url: str
    headers: dict[str, str]
    key: str
    content_type: str
    size: int
    expires_at: str  # ISO 8601, from the signed URL itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "PUT",
            "url": self.url,
            "headers": self.headers,
            "key": self.key,
            "content_type": self.content_type,
            "size": self.size,
            "expires_at": self.expires_at,
        }


def signed_query(url: str) -> dict[str, str]:
    """The SigV4 query parameters of a presigned URL (X-Amz-Date, X-Amz-SignedHeaders, ...)."""
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


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

    def _size(self, request: UploadRequest) -> int:
        limit = self._settings.max_upload_bytes
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
        size = self._size(request)
        if self._exists(key):  # S3 would refuse the PUT (412); say so now, before any bytes move
            raise UploadConflict(f"{key} exists already; uploads never replace an object: choose another name")
        # What the upload must carry, and the signature covers: S3 refuses a request that drops or
        # changes one (403), and, for If-None-Match: *, a PUT onto a key that exists (412).
        headers = {"Content-Length": str(size), "Content-Type": request.content_type, "If-None-Match": "*"}
        url = self._s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._settings.ingest_bucket,
                "Key": key,
                "ContentLength": size,
                "ContentType": request.content_type,
                "IfNoneMatch": "*",
            },
            ExpiresIn=self._settings.url_expiry_seconds,
            HttpMethod="PUT",
        )
        query = signed_query(url)
        signed = set(query.get("X-Amz-SignedHeaders", "").split(";"))
        if missing := [name for name in headers if name.lower() not in signed]:
            # Unsigned, a header is the caller's to change or drop: S3 would no longer hold the
            # upload to it. Refuse to hand out such a URL rather than a weaker grant.
            raise RuntimeError(f"the presigned URL does not sign {', '.join(missing)} (needs a SigV4 presigner)")
        issued = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = issued + timedelta(seconds=int(query["X-Amz-Expires"]))
        return PresignedUpload(
            url=url,
            headers=headers,
            key=key,
            content_type=request.content_type,
            size=size,
            expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

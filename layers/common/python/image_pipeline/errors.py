"""Error types that decide what is retried.

ImageRejected: the input can never succeed (bad bytes, too many pixels): recorded as FAILED,
never retried. TransientError: retrying may succeed (throttling, 5xx, a lost race): raised so
Lambda, SQS or Step Functions retry; its name is what the state machine's Retry matches.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    UNENCODABLE = "unencodable"  # decoded, but the rendition format's encoder refused it
    SOURCE_MISSING = "source_missing"
    TOO_LARGE = "too_large"


class ImageRejected(Exception):
    """The image can never be processed; `reason` is a stable code, `detail` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientError(Exception):
    """A failure worth retrying; the state machine's Retry matches this class name."""

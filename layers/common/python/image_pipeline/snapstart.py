"""Lambda SnapStart hooks: what goes into the snapshot, and what must not be shared after it.

With SnapStart (EnableSnapStart=true), Lambda initialises a published version once, runs the
before-snapshot hooks, snapshots the memory, and starts every later environment by restoring
that snapshot. So the hooks load what a cold start would otherwise pay for in each environment
(botocore's service models and endpoint rules, the image codecs' first-use setup), and keep out
of the snapshot what must be unique or secret: no credentials are resolved (the clients made
here are unsigned throwaways; the handler's own clients are created after the restore, with the
environment's credentials) and the random generator is reseeded after each restore (botocore
draws its retry jitter from it: restored copies would otherwise back off in lockstep).
Without SnapStart, Lambda never calls the hooks. docs/performance.md has the measurements.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence

from PIL import Image
from snapshot_restore_py import register_after_restore, register_before_snapshot

from image_pipeline.clients import AwsClients
from image_pipeline.imaging import RenditionSpec, make_renditions

_SAMPLE_FORMATS = ("JPEG", "PNG", "WEBP")  # the common uploads: their decoders' first use


def register_hooks(clients: AwsClients, services: Sequence[str], spec: RenditionSpec) -> None:
    """Called at import by a handler: Lambda runs the hooks only when SnapStart is on."""
    register_before_snapshot(warm, clients, services, spec)
    register_after_restore(reseed)


def warm(clients: AwsClients, services: Sequence[str], spec: RenditionSpec) -> None:
    """Before the snapshot: parse the clients' models and run the imaging path once."""
    clients.load_models(*services)
    sample = Image.linear_gradient("L").convert("RGB")  # 256x256, made here: nothing user-specific
    for fmt in _SAMPLE_FORMATS:
        encoded = io.BytesIO()
        sample.save(encoded, fmt)
        make_renditions(encoded.getvalue(), spec)


def reseed() -> None:
    """After each restore: every restored environment gets its own random sequence."""
    random.seed()

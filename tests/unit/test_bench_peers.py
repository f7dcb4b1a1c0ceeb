"""The peers in `make bench`: what each engine delivers is a real rendition, scored like ours.

The engines run in processes of their own, as in the bench: libvips is never loaded into the
test process (its threads can hold up the interpreter's exit).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from image_pipeline.imaging import RenditionSpec
from pipeline_cli.imagefactory import encode, make_heic, make_jpeg
from pipeline_cli.perf.fidelity import fidelity
from pipeline_cli.perf.peers import Peers, pyvips_peer, sharp_peer, usable_on
from pipeline_cli.perf.timing import time_variants

SPEC = RenditionSpec(sizes=(256, 64), quality=82)


def _formats_and_sizes(files: list[bytes]) -> list[tuple[str | None, tuple[int, int]]]:
    opened = [Image.open(io.BytesIO(body)) for body in files]
    return [(image.format, image.size) for image in opened]


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with Peers() as running:
        yield running


def test_pyvips_renders_both_ways_upright_within_the_box_in_its_own_process(peers: Peers) -> None:
    pyvips = next(peer for peer in peers.peers if peer.engine == "pyvips")
    assert not pyvips.skipped, pyvips.skipped  # the wheel is pinned in requirements/dev.txt
    assert "libvips" in pyvips.version
    rotated = make_jpeg(600, 400, orientation=6)  # stored 400x600, displayed 600x400
    for name in ("pyvips per-size", "pyvips cascade"):
        run = peers.runners[name](rotated, SPEC)
        assert _formats_and_sizes(run.files) == [("JPEG", (256, 171)), ("JPEG", (64, 43))]
        assert run.ms > 0
    assert "pyvips" not in sys.modules


def test_every_peer_is_scored_against_the_same_reference(peers: Peers) -> None:
    transparent = encode(Image.new("RGBA", (300, 200), (0, 0, 255, 0)), "PNG")  # white once flattened
    scores = fidelity(transparent, SPEC, peers.runners)
    assert set(peers.runners) <= set(scores.psnr_delivered_db)
    for name in peers.runners:
        assert min(scores.psnr_delivered_db[name]) >= 40, name  # flattened on white, not black
        assert all(size > 100 for size in scores.rendition_bytes[name])
    rotated = fidelity(make_jpeg(600, 400, orientation=6), SPEC, peers.runners)  # upright, or it scores ~10 dB
    assert all(min(rotated.psnr_delivered_db[name]) >= 30 for name in peers.runners)


def test_peers_take_turns_with_the_variants_timed_by_themselves(peers: Peers) -> None:
    medians = time_variants(make_jpeg(600, 400), SPEC, repeats=1, peers=peers.runners)
    assert set(medians) == {"project", "naive", "floor", *peers.runners}
    assert all(value > 0 for value in medians.values())


def test_sharp_runs_where_node_is_installed(peers: Peers) -> None:
    sharp = next(peer for peer in peers.peers if peer.engine == "sharp")
    if sharp.skipped:
        pytest.skip(sharp.skipped)
    assert sharp.version.startswith("sharp ")
    run = peers.runners["sharp cascade"](make_jpeg(600, 400, orientation=6), SPEC)
    assert _formats_and_sizes(run.files) == [("JPEG", (256, 171)), ("JPEG", (64, 43))]


def test_sharp_is_reported_skipped_without_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither node nor npm
    peer, process = sharp_peer(tmp_path / "peers")
    assert process is None
    assert peer.runners == {}
    assert peer.skipped == "node and npm are not on PATH"


def test_a_peer_that_cannot_start_is_reported_skipped_with_the_reason(tmp_path: Path) -> None:
    no_python = tmp_path / "python-that-is-not-there"
    peer, process = pyvips_peer(str(no_python))
    assert process is None
    assert peer.runners == {}
    assert peer.skipped.startswith("pyvips does not start:")
    assert str(no_python) in peer.skipped


def test_an_input_an_engine_cannot_decode_is_skipped_for_that_engine_with_its_reason(peers: Peers) -> None:
    heic = make_heic(600, 400)  # pyvips-binary's libvips has no HEVC decoder
    usable, skipped = usable_on(heic, SPEC, peers.runners)
    assert set(usable) | set(skipped) == set(peers.runners)
    assert "HEVC" in skipped["pyvips cascade"]
    jpeg_usable, jpeg_skipped = usable_on(make_jpeg(600, 400), SPEC, peers.runners)
    assert (set(jpeg_usable), jpeg_skipped) == (set(peers.runners), {})

"""`python -m pipeline_cli.perf.dct_sweep`: which JPEG DCT scale to decode at, measured.

For generated photos of the sizes phones and cameras upload, every DCT scale Pillow reaches
(8/8, 4/8, 3/8, 2/8, 1/8) that still covers the largest rendition is tried on the thumbnailer's
path (decode at that scale, LANCZOS to the largest rendition, the smaller ones from it), and
scored per rendition against the full-decode LANCZOS reference: the pixels and the delivered
q82 JPEGs. Each line also says which scale draft()'s rule (the smallest power of two that covers
the target) and imaging.jpeg_decode_eighths pick. The margins in imaging._DCT_MARGIN come from
this table (docs/performance.md, "Choosing the JPEG decode scale").
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time

from PIL import Image

from image_pipeline.imaging import LATER_REDUCING_GAP, REDUCING_GAP, decode_jpeg_at, fit_within, jpeg_decode_eighths
from pipeline_cli.perf.corpus import _jpeg
from pipeline_cli.perf.fidelity import psnr, reference

LANCZOS = Image.Resampling.LANCZOS
# Phones (4:3, both ways up), cameras (3:2), 16:9, and widths either side of each scale's edge.
SIZES = (
    (4032, 3024), (3024, 4032), (4000, 3000), (4080, 3072), (5712, 4284), (8064, 6048), (6000, 4000),
    (8000, 6000), (2048, 1536), (1600, 1200), (3840, 2160), (2731, 2048), (3000, 2250), (3300, 2475),
    (3600, 2700), (4096, 3072), (4500, 3375), (4915, 3686), (5460, 4095), (6500, 4875), (7200, 5400),
)  # fmt: skip
LARGEST_RENDITIONS = ((1024, 512, 128), (512, 128), (128,))


def draft_rule(width: int, height: int, target: tuple[int, int]) -> int:
    """The eighths draft() picks for the target (the thumbnailer's rule before this sweep)."""
    scale = min(width // target[0], height // target[1])
    return 8 // next(s for s in (8, 4, 2, 1) if scale >= s)


def render(
    data: bytes,
    sizes: tuple[int, ...],
    eighths: int,
    *,
    cascade: bool = False,
    later_gap: float | None = LATER_REDUCING_GAP,
) -> tuple[list[Image.Image], float]:
    """The renditions' pixels at that decode scale, and the ms to decode and resize them all:
    the smaller renditions each from the largest (with later_gap as reducing_gap, as the
    thumbnailer does), or each from the previous one (`cascade`, its way before)."""
    started = time.perf_counter()
    image = Image.open(io.BytesIO(data))
    targets = [fit_within(image.width, image.height, size) for size in sizes]
    box = decode_jpeg_at(image, eighths)
    images = [image.resize(targets[0], LANCZOS, box=box, reducing_gap=REDUCING_GAP)]
    for target in targets[1:]:
        if cascade:
            images.append(images[-1].resize(target, LANCZOS))
        else:
            images.append(images[0].resize(target, LANCZOS, reducing_gap=later_gap))
    return images, (time.perf_counter() - started) * 1000


def delivered(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _line(
    source: str, data: bytes, refs: list[Image.Image], renditions: tuple[int, ...], eighths: int, *, label: str,
    cascade: bool, repeats: int, later_gap: float | None,
) -> None:  # fmt: skip
    images, _ = render(data, renditions, eighths, cascade=cascade, later_gap=later_gap)
    runs = (render(data, renditions, eighths, cascade=cascade, later_gap=later_gap)[1] for _ in range(repeats))
    ms = statistics.median(runs)
    pixels = " ".join(f"{psnr(i, r):5.2f}" for i, r in zip(images, refs, strict=True))
    files = " ".join(f"{psnr(delivered(i), r):5.2f}" for i, r in zip(images, refs, strict=True))
    print(f"{source} | {renditions[0]} | {label}: {ms:6.1f} ms  {pixels} / {files}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_cli.perf.dct_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scale (median)")
    parser.add_argument("--size", action="append", help="WxH instead of the built-in list (repeatable)")
    parser.add_argument("--largest", type=int, action="append", help="only the rendition sets led by this size")
    parser.add_argument(
        "--brief", action="store_true", help="only the path before this rule and the one now, not every scale"
    )
    parser.add_argument(
        "--later-gap", type=float, default=LATER_REDUCING_GAP, help="reducing_gap from the largest (0: none)"
    )
    args = parser.parse_args(argv)
    rendition_sets = [sizes for sizes in LARGEST_RENDITIONS if not args.largest or sizes[0] in args.largest]
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.size] if args.size else SIZES
    print("source | largest rendition | scale: ms to decode and resize, pixel PSNR / delivered PSNR per rendition")
    options = {"repeats": args.repeats, "later_gap": args.later_gap or None}
    for width, height in sizes:
        data, source = _jpeg(width, height), f"{width}x{height}"
        for renditions in rendition_sets:
            targets = [fit_within(width, height, size) for size in renditions]
            refs = reference(data, targets)
            draft_pick = draft_rule(width, height, targets[0])
            rule_pick = jpeg_decode_eighths(width, height, targets[0])
            for eighths in () if args.brief else (8, 4, 3, 2, 1):
                decoded = (-(-width * eighths // 8), -(-height * eighths // 8))
                if decoded[0] < targets[0][0] or decoded[1] < targets[0][1] or decoded[0] > 4.5 * targets[0][0]:
                    continue  # too small, or so large that the next scale down leaves over 2.25x
                margin = decoded[0] / targets[0][0]
                label = f"{eighths}/8 {decoded[0]}px x{margin:.2f}"
                _line(source, data, refs, renditions, eighths, label=label, cascade=False, **options)
            for label, eighths, cascade in (
                (f"before: draft {draft_pick}/8, cascade", draft_pick, True),
                (f"rule {rule_pick}/8, cascade", rule_pick, True),
                (f"now: rule {rule_pick}/8, from the largest", rule_pick, False),
            ):
                _line(source, data, refs, renditions, eighths, label=label, cascade=cascade, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

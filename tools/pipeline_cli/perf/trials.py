"""`python -m pipeline_cli.perf.trials [INPUT]`: ways to make the JPEG renditions faster with
Pillow's API, side by side with libvips' cascade (pyvips and sharp), in one run.

Each trial is the thumbnailer's JPEG path as it was before the decode scale was chosen by
margin (draft, resize to the largest rendition, cascade, encode) with one or two things changed;
`make_renditions` is the path as it is now. Every engine's renditions are timed in turns (medians) and
scored per rendition, on the delivered files (the encoded JPEGs, decoded: what users get) and
their bytes. A trial is worth taking only if it is faster than the libvips cascade AND its
delivered PSNR is equal or better than that cascade's, rendition by rendition (the criterion
docs/performance.md states). The results of the last look are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable

from PIL import Image

from image_pipeline.imaging import RenditionSpec, decode_jpeg_at, fit_within, make_renditions
from pipeline_cli.perf.corpus import BASELINE, DEFAULT_CORPUS, corpus
from pipeline_cli.perf.fidelity import psnr, reference
from pipeline_cli.perf.handler import project_spec
from pipeline_cli.perf.peers import PeerRun, Peers
from pipeline_cli.perf.timing import time_in_turns

Trial = Callable[[bytes, RenditionSpec], list[bytes]]
LANCZOS = Image.Resampling.LANCZOS


def cascade(
    *,
    first: Image.Resampling = LANCZOS,
    reducing_gap: float | None = 1.5,
    scale_below: bool = False,
    mode: str | None = None,
    optimize: bool = False,
    from_largest: bool = False,
    eighths: int | None = None,
    later_gap: float | None = None,
) -> Trial:
    """The thumbnailer's path for an upright RGB JPEG with one thing changed:
    first         the filter of the first (largest) resize;
    reducing_gap  Pillow's box reduction before that filter;
    scale_below   draft() one DCT scale further, below the target, then upscale a little;
    mode          draft() to this mode ("YCbCr": no colour conversion in the decoder, the
                  resize in YCbCr, and the encoder takes YCbCr as it is);
    optimize      Huffman-optimised encoding (a second pass; smaller files);
    from_largest  every smaller rendition made from the largest one, as libvips' cascade does,
                  instead of from the previous one;
    eighths       decode at this DCT scale (imaging.decode_jpeg_at: 3 is 3/8, which draft()
                  does not offer) instead of draft()'s;
    later_gap     reducing_gap of the smaller renditions' resizes."""

    def run(data: bytes, spec: RenditionSpec) -> list[bytes]:
        image = Image.open(io.BytesIO(data))
        sizes = [fit_within(image.width, image.height, size) for size in sorted(set(spec.sizes), reverse=True)]
        requested = (sizes[0][0] // 2, sizes[0][1] // 2) if scale_below else sizes[0]
        box: tuple[float, float, float, float] | None = None
        if eighths is not None:
            box = decode_jpeg_at(image, eighths)
        elif drafted := image.draft(mode, requested):
            box = drafted[1]
        current = image.resize(sizes[0], first, box=box, reducing_gap=reducing_gap)
        largest, outputs = current, []
        for index, size in enumerate(sizes):
            if index:
                current = (largest if from_largest else current).resize(size, LANCZOS, reducing_gap=later_gap)
            buffer = io.BytesIO()
            current.save(buffer, "JPEG", quality=spec.quality, optimize=optimize)
            outputs.append(buffer.getvalue())
        return outputs

    return run


TRIALS: dict[str, Trial] = {
    "earlier path (draft, cascade)": cascade(),
    "first step HAMMING": cascade(first=Image.Resampling.HAMMING),
    "first step BICUBIC": cascade(first=Image.Resampling.BICUBIC),
    "first step BILINEAR": cascade(first=Image.Resampling.BILINEAR),
    "reducing_gap=1.0": cascade(reducing_gap=1.0),
    "YCbCr throughout": cascade(mode="YCbCr"),
    "1/4 DCT scale + upscale": cascade(scale_below=True),
    "optimize=True (Huffman)": cascade(optimize=True),
    "smaller ones from the largest": cascade(from_largest=True),
    "smaller from the largest, gap 2.0": cascade(from_largest=True, later_gap=2.0),
    "3/8 DCT scale": cascade(eighths=3),
    "3/8 DCT, smaller from largest, gap 2.0": cascade(eighths=3, from_largest=True, later_gap=2.0),
    "3/8 DCT, smaller from largest, gap 1.5": cascade(eighths=3, from_largest=True, later_gap=1.5),
    "3/8 DCT, smaller from largest, gap 3.0": cascade(eighths=3, from_largest=True, later_gap=3.0),
}


def _project(data: bytes, spec: RenditionSpec) -> list[bytes]:
    return [rendition.body for rendition in make_renditions(data, spec).renditions]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_cli.perf.trials", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=BASELINE, help="a bench corpus name (an upright RGB JPEG)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--trial", action="append", choices=sorted(TRIALS), help="run only these trials (repeatable)")
    args = parser.parse_args(argv)
    trials = {name: TRIALS[name] for name in args.trial} if args.trial else TRIALS
    data = corpus(DEFAULT_CORPUS, (args.input,))[args.input].read_bytes()
    spec = project_spec()
    with Peers() as peers:
        engines: dict[str, Callable[[bytes, RenditionSpec], list[bytes] | PeerRun]] = {
            "make_renditions": _project,
            **trials,
            **{name: run for name, run in peers.runners.items() if name.endswith("cascade")},
        }
        files = {name: run(data, spec) for name, run in engines.items()}  # the files scored
        medians = time_in_turns(engines, data, spec, args.repeats)
    bodies = {name: (out.files if isinstance(out, PeerRun) else out) for name, out in files.items()}
    decoded = {name: [Image.open(io.BytesIO(body)) for body in out] for name, out in bodies.items()}
    refs = reference(data, [image.size for image in decoded["make_renditions"]])
    print(f"{args.input}: sizes {spec.sizes} JPEG q{spec.quality}, medians of {args.repeats}; {peers.describe()}")
    print(f"  {'engine':<30} {'ms':>7}  delivered PSNR dB per rendition   KB per rendition")
    for name in engines:
        own = refs if [i.size for i in decoded[name]] == [r.size for r in refs] else None
        own = own or reference(data, [image.size for image in decoded[name]])
        scores = " / ".join(f"{psnr(image, ref):5.2f}" for image, ref in zip(decoded[name], own, strict=True))
        kilobytes = " / ".join(f"{len(body) / 1000:.1f}" for body in bodies[name])
        print(f"  {name:<30} {medians[name]:7.1f}  {scores:<32}  {kilobytes}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

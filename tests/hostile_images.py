"""Hostile and odd inputs, built byte by byte: bombs, cut files, broken EXIF, huge animations.

Shared by the imaging core's tests and the handler's hostile-input tests; good images come
from pipeline_cli.imagefactory.
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image, ImageDraw

from pipeline_cli.imagefactory import encode

EXIF_HEADER = b"Exif\x00\x00"
_TIFF_SHORT, _TIFF_LONG, _TIFF_ASCII = 3, 4, 2
ORIENTATION_TAG = 0x0112
EXIF_IFD_POINTER_TAG = 0x8769


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, colour_type: int, idat: bytes, extra_chunks: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra_chunks
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with one tiny IDAT: decoding it would explode."""
    return _png(width, height, 2, zlib.compress(b"\0" * 64))


def png_deflate_bomb(width: int, height: int) -> bytes:
    """A complete, valid RGB PNG of width x height black pixels: a few hundred KB that inflate to
    3 bytes per pixel. Unlike png_bomb, decoding it really would fill all that memory."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return _png(width, height, 2, idat)


def png_text_bomb(decompressed_bytes: int) -> bytes:
    """A small valid PNG carrying a zTXt chunk that inflates to `decompressed_bytes`."""
    text = b"Comment\0\0" + zlib.compress(b"A" * decompressed_bytes, 9)
    return _png(8, 8, 0, zlib.compress(b"\0" * (9 * 8)), png_chunk(b"zTXt", text))


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 frame header is patched to claim width x height."""
    jpeg = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def gif_screen_bomb(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen claims width x height."""
    gif = bytearray(encode(Image.new("P", (16, 16)), "GIF"))
    gif[6:10] = struct.pack("<HH", width, height)
    return bytes(gif)


def without_adobe_marker(jpeg: bytes) -> bytes:
    """Drop the APP14 'Adobe' segment (FF EE) from a JPEG."""
    position = 2
    while position < len(jpeg):
        marker, length = jpeg[position + 1], struct.unpack(">H", jpeg[position + 2 : position + 4])[0]
        if marker == 0xEE:
            return jpeg[:position] + jpeg[position + 2 + length :]
        if marker == 0xDA:
            break
        position += 2 + length
    raise AssertionError("no Adobe marker found")


def cut(data: bytes, fraction: float) -> bytes:
    """The first `fraction` of the bytes: an interrupted upload."""
    return data[: int(len(data) * fraction)]


def exif_entry(tag: int, field_type: int, count: int, value: bytes) -> bytes:
    """One big-endian IFD entry; `value` is the 4-byte value-or-offset field."""
    return struct.pack(">HHI", tag, field_type, count) + value.ljust(4, b"\0")[:4]


def exif_ifd(entries: list[bytes], *, ifd_offset: int = 8, next_ifd: int = 0, trailer: bytes = b"") -> bytes:
    """EXIF APP1 payload: 'Exif', a big-endian TIFF header pointing at `ifd_offset`, one IFD."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", ifd_offset)
    body = struct.pack(">H", len(entries)) + b"".join(entries) + struct.pack(">I", next_ifd) + trailer
    return EXIF_HEADER + tiff + body


def exif_orientation(value: int) -> bytes:
    """EXIF with an Orientation entry of any SHORT value (valid ones are 1..8)."""
    return exif_ifd([exif_entry(ORIENTATION_TAG, _TIFF_SHORT, 1, struct.pack(">H", value))])


# EXIF that is wrong in the ways real files (and attackers) get it wrong, and the orientation
# each must be read as: invalid values and unreadable IFDs mean upright; a valid value is honoured
# even in an IFD that loops back on itself.
MALFORMED_EXIF: dict[str, tuple[bytes, int]] = {
    "orientation 0": (exif_orientation(0), 1),
    "orientation 9": (exif_orientation(9), 1),
    "orientation 65535": (exif_orientation(65535), 1),
    "orientation as text": (exif_ifd([exif_entry(ORIENTATION_TAG, _TIFF_ASCII, 2, b"6\0")]), 1),
    "orientation count 1e9": (exif_ifd([exif_entry(ORIENTATION_TAG, _TIFF_SHORT, 1_000_000_000, b"\0\0\0\x08")]), 1),
    "ifd offset past the end": (EXIF_HEADER + b"MM\x00\x2a" + struct.pack(">I", 0xFFFFFFF0), 1),
    "garbage after the header": (EXIF_HEADER + b"MM\x00*\xff\xff\xff\xff garbage", 1),
    "little-endian tag soup": (EXIF_HEADER + b"II*\x00\x08\x00\x00\x00" + b"\xff" * 64, 1),
    "ifd that points at itself": (
        exif_ifd(
            [
                exif_entry(ORIENTATION_TAG, _TIFF_SHORT, 1, struct.pack(">H", 6)),
                exif_entry(EXIF_IFD_POINTER_TAG, _TIFF_LONG, 1, struct.pack(">I", 8)),
            ],
            next_ifd=8,
        ),
        6,
    ),
}


def animated_gif(frames: int, width: int = 64, height: int = 48) -> bytes:
    """`frames` distinct frames (a dot moving across a red field; the first is pure red)."""
    images = []
    for index in range(frames):
        frame = Image.new("RGB", (width, height), (220, 20, 20))
        if index:
            x, y = index % width, (index // width) % height
            ImageDraw.Draw(frame).point((x, y), fill=(20, 20, 220))
        images.append(frame.convert("P", palette=Image.Palette.ADAPTIVE, colors=4))
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)

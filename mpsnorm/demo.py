"""python -m mpsnorm demo [--out lcn.png] [--kernel-size 15]: a picture of local
contrast normalization.

A built-in synthetic grayscale image -- fine woven texture, lines of text and a
few shapes, lit very unevenly (a dim corner, a bright spot, a shadow band) --
is normalized with LocalContrastNormalization(k, alpha=1): each pixel minus its
window mean, divided by the window's standard deviation. The PNG shows the
image before and after, side by side. Needs nothing beyond mpsnorm and NumPy
(the PNG is written with zlib and struct)."""
import argparse
import struct
import sys
import zlib

import numpy as np

import mpsnorm

HEIGHT, WIDTH = 240, 320       # each panel
KERNEL_SIZE = 15
DELTA = 1e-5                   # small: the dimmest texture is ~1e-3 in amplitude
MARGIN, GAP, LABEL = 10, 10, 26

# A 5x7 bitmap font: each glyph is 7 rows of 5 bits, most significant bit left.
GLYPHS = {
    "A": (0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11), "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E), "D": (0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F), "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F), "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E), "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11), "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11), "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D), "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E), "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A), "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04), "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E), "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F), "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02), "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E), "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E), "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    " ": (0,) * 7, "=": (0, 0, 0x1F, 0, 0x1F, 0, 0), "-": (0, 0, 0, 0x1F, 0, 0, 0),
    ":": (0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0), ",": (0, 0, 0, 0, 0x0C, 0x04, 0x08),
    ".": (0, 0, 0, 0, 0, 0x0C, 0x0C),
}


def text_mask(text, scale=1):
    """A boolean (7*scale, 6*scale*len(text)) mask of `text` in the 5x7 font."""
    columns = []
    for character in text.upper():
        rows = GLYPHS.get(character, GLYPHS[" "])
        glyph = np.array([[(row >> (4 - bit)) & 1 for bit in range(5)] + [0] for row in rows],
                         dtype=bool)
        columns.append(glyph)
    mask = np.concatenate(columns, axis=1) if columns else np.zeros((7, 0), bool)
    return np.kron(mask, np.ones((scale, scale), dtype=bool))


def stamp(canvas, mask, top, left, value):
    """Sets canvas to `value` where `mask` is true, clipped to the canvas."""
    height = max(0, min(mask.shape[0], canvas.shape[0] - top))
    width = max(0, min(mask.shape[1], canvas.shape[1] - left))
    region = canvas[top:top + height, left:left + width]
    region[mask[:height, :width]] = value


def synthetic_image(height=HEIGHT, width=WIDTH):
    """Reflectance (woven texture, text, shapes) times uneven lighting, float32 in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    # Reflectance: a fine weave, text lines, a checkerboard and rings.
    weave = 0.62 + 0.08 * np.sin(2 * np.pi * x / 5.0) * np.sin(2 * np.pi * y / 5.0)
    reflectance = weave.copy()
    lines = ["LOCAL CONTRAST", "NORMALIZATION", "AS METAL", "PERFORMANCE", "SHADERS",
             "DEFINE IT", "MPSNORM 0123456789"]
    for i, line in enumerate(lines):
        stamp(reflectance, text_mask(line, 2), 12 + 32 * i, 12 + (i % 3) * 14, 0.22)
    checks = ((x // 6 + y // 6) % 2 == 0) & (x > width - 90) & (y > height - 90) & \
        (x < width - 20) & (y < height - 20)
    reflectance[checks] = 0.3
    radius = np.hypot(x - 0.78 * width, y - 0.28 * height)
    rings = (radius < 40) & (np.sin(radius / 2.2) > 0.3)
    reflectance[rings] = 0.9
    # Lighting: dim on the left, a bright spot on the right, a soft shadow band.
    ramp = np.clip(x / width, 0, 1) ** 2.2
    spot = np.exp(-((x - 0.85 * width) ** 2 + (y - 0.2 * height) ** 2) / (2 * (0.3 * width) ** 2))
    shadow = 1 - 0.75 * np.exp(-((x - y * 0.6 - 0.45 * width) ** 2) / (2 * 18.0 ** 2))
    lighting = (0.012 + 0.55 * ramp + 0.45 * spot) * shadow
    return np.clip(reflectance * lighting, 0, 1).astype(np.float32)


def normalize(image, kernel_size=KERNEL_SIZE):
    """LocalContrastNormalization(kernel_size, alpha=1) of a 2-D image (one plane)."""
    lcn = mpsnorm.LocalContrastNormalization(kernel_size, alpha=1.0, beta=0.5, delta=DELTA)
    return lcn(image[np.newaxis])[0]


def to_gray(values, low, high):
    return np.round(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def compose(before, after, kernel_size=KERNEL_SIZE):
    """Both panels side by side on a white canvas, labelled, as uint8 gray levels."""
    height, width = before.shape
    canvas = np.full((LABEL + height + MARGIN, 2 * width + GAP + 2 * MARGIN), 255, np.uint8)
    canvas[LABEL:LABEL + height, MARGIN:MARGIN + width] = to_gray(before, 0.0, 1.0)
    low, high = np.percentile(after, [1.0, 99.0])
    right = MARGIN + width + GAP
    canvas[LABEL:LABEL + height, right:right + width] = to_gray(after, low, high)
    stamp(canvas, text_mask("BEFORE: UNEVEN LIGHTING", 2), 6, MARGIN, 0)
    stamp(canvas, text_mask(f"AFTER: LCN {kernel_size}X{kernel_size}, ALPHA=1", 2), 6, right, 0)
    return canvas


def png_bytes(pixels):
    """An 8-bit grayscale PNG of a 2-D uint8 array; each row filtered with None, Sub
    or Up, whichever leaves the smallest sum of absolute values."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape
    previous = np.zeros(width, np.uint8)
    rows = []
    for row in pixels:
        sub = row - np.concatenate(([0], row[:-1])).astype(np.uint8)
        up = row - previous
        candidates = ((0, row), (1, sub), (2, up))
        kind, data = min(candidates,
                         key=lambda c: int(np.abs(c[1].astype(np.int8).astype(np.int64)).sum()))
        rows.append(bytes([kind]) + data.tobytes())
        previous = row

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def render(kernel_size=KERNEL_SIZE):
    """The before/after picture as a 2-D uint8 array."""
    image = synthetic_image()
    return compose(image, normalize(image, kernel_size), kernel_size)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mpsnorm demo",
        description="Render a before/after picture of local contrast normalization.")
    parser.add_argument("--out", default="lcn.png", help="PNG file to write (default lcn.png)")
    parser.add_argument("--kernel-size", type=int, default=KERNEL_SIZE,
                        help=f"window width and height (default {KERNEL_SIZE})")
    args = parser.parse_args(argv)
    if not 1 <= args.kernel_size <= 255:
        parser.error(f"--kernel-size must be in 1..255, got {args.kernel_size}")
    pixels = render(args.kernel_size)
    data = png_bytes(pixels)
    try:
        with open(args.out, "wb") as file:
            file.write(data)
    except OSError as error:
        print(f"python -m mpsnorm demo: cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({pixels.shape[1]}x{pixels.shape[0]}, {len(data)} bytes): the "
          f"synthetic image before and after LocalContrastNormalization({args.kernel_size}, "
          f"alpha=1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

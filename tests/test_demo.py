"""python -m mpsnorm demo: a valid PNG (decoded here with zlib and struct), the
before/after panels it promises, LCN evening out the lighting, no dependency
beyond NumPy, and docs/lcn.png as the README shows it."""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from mpsnorm import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def decode_png(data):
    """(pixels, chunk kinds) of an 8-bit grayscale, non-interlaced PNG; checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    position, kinds, idat, header = 8, [], b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, color, compression, filtering, interlace = header
    assert (depth, color, compression, filtering, interlace) == (8, 0, 0, 0, 0)
    raw = zlib.decompress(idat)
    assert len(raw) == height * (width + 1)
    pixels = np.zeros((height, width), np.uint8)
    previous = np.zeros(width, np.int64)
    for y in range(height):
        kind, row = raw[y * (width + 1)], np.frombuffer(raw, np.uint8, width, y * (width + 1) + 1)
        row = row.astype(np.int64)
        if kind == 1:  # Sub
            row = np.cumsum(row) % 256
        elif kind == 2:  # Up
            row = (row + previous) % 256
        else:
            assert kind == 0, f"filter type {kind}"
        pixels[y] = row
        previous = row
    return pixels, kinds


def test_demo_writes_the_picture(tmp_path, capsys):
    out = tmp_path / "lcn.png"
    assert demo.main(["--out", str(out)]) == 0
    pixels, kinds = decode_png(out.read_bytes())
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(pixels, demo.render())
    height, width = demo.HEIGHT, demo.WIDTH
    assert pixels.shape == (demo.LABEL + height + demo.MARGIN, 2 * width + demo.GAP + 2 * demo.MARGIN)
    assert f"wrote {out}" in capsys.readouterr().out
    # Labels (black text) sit on white above the panels.
    band = pixels[:demo.LABEL]
    assert (band == 0).sum() > 200 and (band == 255).mean() > 0.8


def local_contrast(image, rows, columns, size=15):
    """Mean over windows in the region of each window's standard deviation."""
    region = image[rows, columns]
    h, w = region.shape[0] // size * size, region.shape[1] // size * size
    blocks = region[:h, :w].reshape(h // size, size, w // size, size)
    return float(blocks.std(axis=(1, 3)).mean())


def test_lcn_evens_out_the_lighting():
    image = demo.synthetic_image()
    after = demo.normalize(image)
    dark = (slice(0, 150), slice(0, 60))        # the dim left edge
    bright = (slice(0, 150), slice(240, 300))   # under the bright spot
    before_ratio = local_contrast(image, *dark) / local_contrast(image, *bright)
    after_ratio = local_contrast(after, *dark) / local_contrast(after, *bright)
    assert before_ratio < 0.1, before_ratio      # texture and text nearly invisible on the left
    assert 0.5 < after_ratio < 2.0, after_ratio  # the same contrast everywhere afterwards


def test_text_mask_and_png_encoder_round_trip():
    mask = demo.text_mask("LCN 15", 2)
    assert mask.shape == (14, 6 * 6 * 2) and mask.any()
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 256, (7, 13)).astype(np.uint8),
                   np.tile(np.arange(40, dtype=np.uint8), (5, 1)),
                   np.zeros((1, 1), np.uint8)):
        decoded, _ = decode_png(demo.png_bytes(pixels))
        np.testing.assert_array_equal(decoded, pixels)


def test_demo_needs_no_imaging_library(tmp_path):
    code = ("import sys; from mpsnorm import demo; demo.main(['--out', sys.argv[1]]); "
            "bad = [m for m in ('PIL', 'matplotlib', 'imageio', 'cv2', 'torch') "
            "if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_python_m_mpsnorm_demo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mpsnorm", "demo", "--out", "lcn.png",
                             "--kernel-size", "9"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    pixels, _ = decode_png((tmp_path / "lcn.png").read_bytes())
    np.testing.assert_array_equal(pixels, demo.render(9))


@pytest.mark.parametrize("arguments,status,message", [
    (["--kernel-size", "0"], 2, "--kernel-size must be in 1..255, got 0"),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
    (["--out", "/nonexistent-directory/lcn.png"], 1, "cannot write /nonexistent-directory"),
])
def test_demo_bad_arguments(arguments, status, message):
    result = subprocess.run([sys.executable, "-m", "mpsnorm.demo", *arguments],
                            capture_output=True, text=True)
    assert result.returncode == status and message in result.stderr, result.stderr


def test_readme_picture_is_the_demo_output():
    path = os.path.join(REPO, "docs", "lcn.png")
    if not os.path.isdir(os.path.join(REPO, "docs")):
        pytest.skip("docs/ is not beside the tests (an installed package)")
    with open(path, "rb") as file:
        data = file.read()
    assert len(data) < 200_000
    pixels, _ = decode_png(data)
    # Regenerate with: python -m mpsnorm demo --out docs/lcn.png
    assert pixels.shape == demo.render().shape
    assert np.mean(np.abs(pixels.astype(int) - demo.render().astype(int))) < 1.0

#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets in tests/fuzz/ into tests/fuzz/corpus/<target>/.

    pip install pillow numpy pydicom safetensors && python3 tools/make_fuzz_seeds.py [--rca-gpu BIN]

Every seed is made here from synthetic pictures (no data set's images), so the corpus carries
no licence of its own:

  image_file   small images in each format and pixel type rca-gpu reads (PNG grey, grey +
               alpha, RGB, RGBA, 16-bit, palette, 1-bit; JPEG grey and colour; BMP; TIFF
               grey, colour and 32-bit float), and the DICOM kinds of the DICOM tests; the
               first byte picks the file name's extension (see fuzz_targets/image_file.rs)
  checkpoint   a model file and its optimizer file from a one-epoch `rca-gpu train` of the
               smallest model (unet, F=1, 32x32)
  run_files    that run's config.json and split.json, and the loop state and metric history
               stored in its checkpoints
  data_folder  none: its input is structured (arbitrary), and the fuzzer finds layouts fast

The fuzzer adds what it finds to the same folders; `cargo fuzz cmin` keeps them small.
"""
import argparse
import io
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
sys.path.insert(0, str(ROOT / "tools"))

# Index of each extension in fuzz_targets/image_file.rs's NAMES.
EXT = {"png": 0, "jpg": 1, "bmp": 2, "tif": 3, "dcm": 4}


def picture(w=24, h=16):
    """A grey gradient with a dark disc (a lesion) and a bright mark."""
    y, x = np.mgrid[0:h, 0:w]
    g = 40 + 180 * x / (w - 1)
    g[(x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / 4) ** 2] = 20
    g[1:3, 1:3] = 255
    return g.astype(np.uint8)


def encoded(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def put(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"{path.relative_to(ROOT)}: {len(data)} bytes")


def image_seeds():
    g = picture()
    grey = Image.fromarray(g)
    rgb = Image.fromarray(np.stack([g, g // 2, 255 - g], axis=-1))
    alpha = Image.fromarray((g > 30).astype(np.uint8) * 255)
    images = {
        "png_l": ("png", encoded(grey, "PNG")),
        "png_la": ("png", encoded(Image.merge("LA", (grey, alpha)), "PNG")),
        "png_rgb": ("png", encoded(rgb, "PNG")),
        "png_rgba": ("png", encoded(Image.merge("RGBA", (*rgb.split(), alpha)), "PNG")),
        "png_16": ("png", encoded(Image.fromarray(g.astype(np.uint16) * 257), "PNG")),
        "png_palette": ("png", encoded(rgb.convert("P"), "PNG")),
        "png_1bit": ("png", encoded(grey.convert("1"), "PNG")),
        "jpg_l": ("jpg", encoded(grey, "JPEG", quality=90)),
        "jpg_rgb": ("jpg", encoded(rgb, "JPEG", quality=90)),
        "jpg_progressive": ("jpg", encoded(rgb, "JPEG", quality=90, progressive=True)),
        "bmp_rgb": ("bmp", encoded(rgb, "BMP")),
        "bmp_l": ("bmp", encoded(grey, "BMP")),
        "tif_l": ("tif", encoded(grey, "TIFF")),
        "tif_rgb": ("tif", encoded(rgb, "TIFF", compression="tiff_lzw")),
        "tif_float": ("tif", encoded(Image.fromarray(g.astype(np.float32) / 255), "TIFF")),
    }
    for name, (ext, data) in images.items():
        put("image_file", name, bytes([EXT[ext]]) + data)
    import make_dicom_fixtures

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        make_dicom_fixtures.write_all(grey, lambda name: tmp / name)
        for f in sorted(tmp.glob("*.dcm")):
            put("image_file", f"dcm_{f.stem}", bytes([EXT["dcm"]]) + f.read_bytes())


def run_seeds(rca_gpu):
    from safetensors import safe_open

    with tempfile.TemporaryDirectory() as tmp:
        run = pathlib.Path(tmp) / "run"
        subprocess.run([rca_gpu, "train", "--out", str(run), "--variant", "unet", "--width", "1",
                        "--size", "32", "--epochs", "1", "--phantoms", "4", "--batch", "2"],
                       check=True, capture_output=True)
        put("checkpoint", "model", b"\x00" + (run / "last.safetensors").read_bytes())
        put("checkpoint", "optimizer", b"\x01" + (run / "last.optim.safetensors").read_bytes())
        put("run_files", "config", b"\x00" + (run / "config.json").read_bytes())
        put("run_files", "split", b"\x01" + (run / "split.json").read_bytes())
        with safe_open(str(run / "last.optim.safetensors"), "np") as f:
            put("run_files", "loop_state", b"\x02" + f.metadata()["rng"].encode())
        with safe_open(str(run / "last.safetensors"), "np") as f:
            history = json.loads(f.metadata()["history"])
            put("run_files", "history", b"\x03" + json.dumps(history).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rca-gpu", default=str(ROOT / "target" / "release" / "rca-gpu"))
    args = parser.parse_args()
    image_seeds()
    run_seeds(args.rca_gpu)


if __name__ == "__main__":
    main()

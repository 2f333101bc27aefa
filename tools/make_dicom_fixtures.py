#!/usr/bin/env python3
"""Writes the small DICOM files under tests/fixtures/dicom/ that the DICOM tests read.

    pip install pydicom pillow numpy && python3 tools/make_dicom_fixtures.py

From one BUS-BRA sample scan (data/busbra_sample/Images/bus_0009-l.png, downscaled to
120x96 so the files stay small) it writes the same picture the ways ultrasound machines
export it, as single-frame Ultrasound Image Storage objects:

  source.png            the grey picture every file below holds (the tests' reference)
  mono2.dcm             MONOCHROME2, 8 bit, explicit VR little endian
  mono2_implicit.dcm    MONOCHROME2, 8 bit, implicit VR little endian
  mono1_16bit.dcm       MONOCHROME1 (inverted), 16 bit, 12 bits stored
  rgb.dcm               RGB, 8 bit, uncompressed, with a yellow calliper mark
  ybr_full_422.dcm      YBR_FULL_422, 8 bit, uncompressed (Y Y Cb Cr per pixel pair)
  jpeg_ybr_full_422.dcm JPEG baseline (process 1), YBR_FULL_422 4:2:2, quality 95
  jpeg_mono2.dcm        JPEG baseline, MONOCHROME2, quality 95
  multiframe.dcm        two frames (a cine loop), which rca-gpu refuses
  MARK.txt              where rgb.dcm's mark is (x0 y0 x1 y1, exclusive ends)

The output is deterministic: fixed UIDs, no dates.
"""
import io
import pathlib

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit,
                         UltrasoundImageStorage)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "dicom"
SOURCE = ROOT / "data" / "busbra_sample" / "Images" / "bus_0009-l.png"
W, H = 120, 96
MARK = (20, 30, 28, 38)  # x0, y0, x1, y1 of the yellow mark in rgb.dcm
YELLOW = (255, 230, 0)


def base(name, rows, cols, ts, pi, spp, bits=8, stored=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3." + str(sum(ord(c) * 31**i for i, c in enumerate(name)) % 10**8)
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1234"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = "Phantom^Fixture"
    ds.PatientID = "0"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1234.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1234.2"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = pi
    ds.BitsAllocated = bits
    ds.BitsStored = stored or bits
    ds.HighBit = (stored or bits) - 1
    ds.PixelRepresentation = 0
    if spp == 3:
        ds.PlanarConfiguration = 0
    return ds


def save(ds, path, implicit=False):
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    print(f"{path}: {path.stat().st_size} bytes")


def jpeg(img, subsampling):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, subsampling=subsampling)
    return buf.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    grey = Image.open(SOURCE).convert("L").resize((W, H), Image.Resampling.BOX)
    grey.save(OUT / "source.png")
    (OUT / "MARK.txt").write_text(" ".join(map(str, MARK)) + "\n")
    write_all(grey, lambda name: OUT / name)


def write_all(grey, path):
    """Every DICOM file above, holding the grey PIL picture `grey` (even width); `path(name)`
    says where each goes (tools/make_fuzz_seeds.py reuses this for its seeds)."""
    g = np.asarray(grey, dtype=np.uint8)
    H, W = g.shape

    ds = base("mono2", H, W, ExplicitVRLittleEndian, "MONOCHROME2", 1)
    ds.PixelData = g.tobytes()
    save(ds, path("mono2.dcm"))

    ds = base("mono2i", H, W, ImplicitVRLittleEndian, "MONOCHROME2", 1)
    ds.PixelData = g.tobytes()
    save(ds, path("mono2_implicit.dcm"), implicit=True)

    # 12 bits stored, inverted: stored = 4095 - g·4095/255, so that displayed = g.
    ds = base("mono1", H, W, ExplicitVRLittleEndian, "MONOCHROME1", 1, bits=16, stored=12)
    v16 = (4095 - np.round(g.astype(np.float64) * 4095 / 255)).astype("<u2")
    ds.PixelData = v16.tobytes()
    save(ds, path("mono1_16bit.dcm"))

    rgb = np.repeat(g[:, :, None], 3, axis=2).copy()
    x0, y0, x1, y1 = MARK
    rgb[y0:y1, x0:x1] = YELLOW
    ds = base("rgb", H, W, ExplicitVRLittleEndian, "RGB", 3)
    ds.PixelData = rgb.tobytes()
    save(ds, path("rgb.dcm"))

    # Grey in YBR_FULL: Y = grey, Cb = Cr = 128; 4:2:2 stores Y0 Y1 Cb Cr per pixel pair.
    pairs = g.reshape(H, W // 2, 2)
    ybr = np.empty((H, W // 2, 4), dtype=np.uint8)
    ybr[:, :, 0:2] = pairs
    ybr[:, :, 2:4] = 128
    ds = base("ybr422", H, W, ExplicitVRLittleEndian, "YBR_FULL_422", 3)
    ds.PixelData = ybr.tobytes()
    save(ds, path("ybr_full_422.dcm"))

    ds = base("jpegybr", H, W, JPEGBaseline8Bit, "YBR_FULL_422", 3)
    ds.PixelData = encapsulate([jpeg(Image.fromarray(np.repeat(g[:, :, None], 3, axis=2)), 1)])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    save(ds, path("jpeg_ybr_full_422.dcm"))

    ds = base("jpegmono", H, W, JPEGBaseline8Bit, "MONOCHROME2", 1)
    ds.PixelData = encapsulate([jpeg(grey, 0)])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    save(ds, path("jpeg_mono2.dcm"))

    small = g[:8, :8]
    ds = base("multi", 8, 8, ExplicitVRLittleEndian, "MONOCHROME2", 1)
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([small, 255 - small]).tobytes()
    save(ds, path("multiframe.dcm"))


if __name__ == "__main__":
    main()

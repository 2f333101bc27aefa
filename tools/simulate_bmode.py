#!/usr/bin/env python3
"""Simulated B-mode breast-ultrasound images with exact masks, for checking models.

An image formation model written independently of rca-gpu's built-in phantoms
(src/data/synth.rs), so that a model trained on those can be scored on images it has
not seen the like of:

- point scatterers at random positions (about 10 per resolution cell) with Gaussian
  amplitudes, their density weighted by the tissue's echogenicity;
- a linear-array pulse-echo point-spread function: a Gaussian pulse on an RF carrier
  along depth (centre frequency 5–12 MHz, fractional bandwidth 50–80 %) and a lateral
  beam focused at one depth, widening away from it (F-number 1.5–3);
- frequency-dependent attenuation integrated along each scan line (0.3–0.8
  dB/cm/MHz, lower inside cysts, higher inside solid masses: posterior enhancement and
  shadowing arise from it), partly compensated by a time-gain curve;
- electronic noise, envelope detection (analytic signal), log compression to a 45–65 dB
  display range, scan conversion to the output pixel grid by area averaging.

Tissue is either homogeneous (a phantom, as in most simulation studies) or layered
(skin, subcutaneous fat, fibroglandular tissue, muscle), with smooth echogenicity
variation. Lesions: ellipses or lobulated/irregular outlines, 3–20 mm across
(log-uniform), anechoic, hypoechoic (−6 to −25 dB) or, a few, hyperechoic; about one
image in six has none. Writes the BUSI layout (benign/, malignant/, normal/ with
`name.png` and `name_mask.png`); the class only says whether the outline is regular.

Needs numpy and pillow. Example (72 images of 256×256, seed 11):

    python3 tools/simulate_bmode.py --out sim_bmode --count 72 --size 256 --seed 11
"""

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

C = 1540.0  # speed of sound, m/s


def smooth_field(rng, shape, scale_px, amp):
    """A smooth random field (Gaussian-filtered white noise), unit std times amp."""
    h, w = shape
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    g = np.exp(-2 * (math.pi * scale_px) ** 2 * (fx**2 + fy**2))
    f = np.real(np.fft.ifft2(np.fft.fft2(noise) * g))
    return amp * f / (f.std() + 1e-12)


def lesion_outline(rng, regular):
    """r(θ) = 1 + Σ a_k cos(kθ + φ_k): gentle lobes when regular, ragged otherwise."""
    terms = []
    if regular:
        for k in (2, 3):
            terms.append((k, rng.uniform(0.0, 0.08), rng.uniform(0, 2 * math.pi)))
    else:
        for k in range(2, 12):
            terms.append((k, rng.uniform(0.02, 0.2) / k**0.6, rng.uniform(0, 2 * math.pi)))
    return terms


def inside(xx, zz, les):
    cx, cz, ax, az, rot, terms = les
    dx, dz = xx - cx, zz - cz
    c, s = math.cos(rot), math.sin(rot)
    u = (c * dx + s * dz) / ax
    v = (-s * dx + c * dz) / az
    r = np.sqrt(u * u + v * v)
    th = np.arctan2(v, u)
    edge = np.ones_like(r)
    for k, a, p in terms:
        edge += a * np.cos(k * th + p)
    return r < np.maximum(edge, 0.3)


def simulate(rng, size, has_lesion, regular):
    depth = rng.uniform(30e-3, 50e-3)
    width = depth
    f0 = rng.uniform(5e6, 12e6)
    lam = C / f0
    bw = rng.uniform(0.5, 0.8)
    fnum = rng.uniform(1.5, 3.0)
    focus = rng.uniform(0.3, 0.7) * depth
    # Grid: λ/8 along depth (the round-trip carrier has period λ/2), 0.08 mm laterally.
    dz = lam / 8
    dx = min(0.08e-3, width / (2 * size))
    nz = int(round(depth / dz))
    nx = int(round(width / dx))
    z = (np.arange(nz) + 0.5) * dz
    x = (np.arange(nx) + 0.5) * dx
    zz, xx = np.meshgrid(z, x, indexing="ij")

    # Tissue echogenicity (amplitude scale) and attenuation (dB/cm/MHz).
    layered = rng.random() < 0.5
    echo = np.ones((nz, nx))
    atten = np.full((nz, nx), rng.uniform(0.3, 0.8))
    if layered:
        skin = rng.uniform(1.0e-3, 2.5e-3)
        fat = skin + rng.uniform(3e-3, 9e-3) + 1.5e-3 * np.sin(2 * math.pi * x / rng.uniform(15e-3, 40e-3) + rng.uniform(0, 6.3))
        gland = fat + rng.uniform(10e-3, 20e-3) + 2e-3 * np.sin(2 * math.pi * x / rng.uniform(10e-3, 30e-3) + rng.uniform(0, 6.3))
        muscle = gland + rng.uniform(4e-3, 8e-3)
        fat_e, gland_e, mus_e = rng.uniform(0.25, 0.5), 1.0, rng.uniform(0.4, 0.7)
        echo = np.where(zz < skin, 2.0, echo)
        echo = np.where((zz >= skin) & (zz < fat[None, :]), fat_e, echo)
        echo = np.where((zz >= fat[None, :]) & (zz < gland[None, :]), gland_e, echo)
        echo = np.where((zz >= gland[None, :]) & (zz < muscle[None, :]), mus_e, echo)
        echo = np.where(zz >= muscle[None, :], 0.3 * fat_e, echo)
        zmin, zmax = skin + 3e-3, min(muscle.min(), depth) - 1e-3
    else:
        zmin, zmax = 3e-3, depth - 3e-3
    echo *= 10 ** (smooth_field(rng, (nz, nx), 3e-3 / dz, 1.5) / 20)

    mask = np.zeros((nz, nx), bool)
    if has_lesion:
        diam = math.exp(rng.uniform(math.log(3e-3), math.log(20e-3)))
        aspect = rng.uniform(1.0, 1.8) if regular else rng.uniform(0.7, 1.3)
        ax, az = diam / 2 * math.sqrt(aspect), diam / 2 / math.sqrt(aspect)
        lo, hi = zmin + az, max(zmin + az, zmax - az)
        cz = rng.uniform(lo, hi) if hi > lo else 0.5 * (zmin + zmax)
        cz = min(max(cz, az + 1e-3), depth - az - 1e-3)
        cx = rng.uniform(ax + 2e-3, width - ax - 2e-3) if width > 2 * ax + 4e-3 else width / 2
        les = (cx, cz, ax, az, rng.uniform(-0.4, 0.4), lesion_outline(rng, regular))
        mask = inside(xx, zz, les)
        kind = rng.random()
        if kind < 0.3:  # anechoic cyst: few scatterers, little attenuation
            level, lat = rng.uniform(-40, -30), 0.05
        elif kind < 0.92:  # hypoechoic solid mass
            level, lat = rng.uniform(-25, -6), rng.uniform(0.6, 1.5)
        else:  # hyperechoic
            level, lat = rng.uniform(6, 12), rng.uniform(0.4, 0.9)
        # Relative to the tissue around the lesion.
        ring = inside(xx, zz, (cx, cz, ax * 1.5, az * 1.5, les[4], les[5])) & ~mask
        bg = np.median(echo[ring]) if ring.any() else 1.0
        echo = np.where(mask, bg * 10 ** (level / 20), echo)
        atten = np.where(mask, lat, atten)

    # Scatterers: ~10 per resolution cell, Poisson counts per grid cell, Gaussian
    # amplitudes summed (a cell's sum of k Gaussians is Gaussian with variance k).
    cell = (lam * fnum) * (lam / 2)
    density = 10.0 / cell * dz * dx
    counts = rng.poisson(density, (nz, nx))
    amp = rng.standard_normal((nz, nx)) * np.sqrt(counts) * echo

    # Round-trip attenuation integrated along each line, at f0.
    db = 2 * np.cumsum(atten * (f0 / 1e6) * (dz * 100), axis=0)
    amp *= 10 ** (-db / 20)

    # Axial pulse (complex: analytic RF), then depth-dependent lateral beam.
    # Pulse-echo axial resolution (envelope FWHM along depth) about λ / (2 · bandwidth).
    sigma_z = lam / (2 * bw) / 2.355
    kz = np.arange(-int(4 * sigma_z / dz), int(4 * sigma_z / dz) + 1) * dz
    pulse = np.exp(-kz**2 / (2 * sigma_z**2)) * np.exp(1j * 4 * math.pi * kz / lam)
    nfft = nz + len(kz)
    rf = np.fft.ifft(np.fft.fft(amp, nfft, axis=0) * np.fft.fft(pulse, nfft)[:, None], axis=0)
    rf = rf[len(kz) // 2 : len(kz) // 2 + nz]
    sx0 = lam * fnum / 2.355
    zr = 7 * lam * fnum**2 / 2
    fx = np.fft.fftfreq(nx, dx)
    spec = np.fft.fft(rf, axis=1)
    out = np.zeros_like(rf)
    sig = sx0 * np.sqrt(1 + ((z - focus) / zr) ** 2)
    levels = np.geomspace(sig.min(), sig.max() * 1.0001, 6)
    blurred = [np.fft.ifft(spec * np.exp(-2 * (math.pi * s * fx) ** 2)[None, :], axis=1) for s in levels]
    idx = np.clip(np.searchsorted(levels, sig) - 1, 0, len(levels) - 2)
    t = ((sig - levels[idx]) / (levels[idx + 1] - levels[idx]))[:, None]
    for i in range(len(levels) - 1):
        rows = idx == i
        out[rows] = (1 - t[rows]) * blurred[i][rows] + t[rows] * blurred[i + 1][rows]

    env = np.abs(out)
    # Electronic noise, then time-gain compensation of most of the attenuation.
    ref = np.sqrt(np.mean(env[: nz // 4] ** 2))
    noise_db = rng.uniform(-75, -60)
    env = np.abs(out + ref * 10 ** (noise_db / 20) * (rng.standard_normal(env.shape) + 1j * rng.standard_normal(env.shape)))
    tgc = rng.uniform(0.6, 0.95) * np.mean(db, axis=1)
    env *= 10 ** (tgc / 20)[:, None]

    dr = rng.uniform(45, 65)
    top = np.percentile(env, 99.5)
    img = np.clip((20 * np.log10(env / top + 1e-9) + dr) / dr, 0, 1)
    img *= rng.uniform(0.85, 1.0)

    # Scan conversion: area average onto size×size pixels.
    def to_pixels(a):
        zi = np.minimum((np.arange(nz) * size) // nz, size - 1)
        xi = np.minimum((np.arange(nx) * size) // nx, size - 1)
        s = np.zeros((size, size))
        n = np.zeros((size, size))
        np.add.at(s, (zi[:, None], xi[None, :]), a)
        np.add.at(n, (zi[:, None], xi[None, :]), 1)
        return s / np.maximum(n, 1)

    pix = (to_pixels(img) * 255).round().astype(np.uint8)
    m = (to_pixels(mask.astype(float)) >= 0.5).astype(np.uint8) * 255
    return pix, m


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--count", type=int, default=72)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    counters = {"benign": 0, "malignant": 0, "normal": 0}
    for i in range(a.count):
        rng = np.random.default_rng([a.seed, i])
        if i % 6 == 5:
            cls = "normal"
        else:
            cls = "malignant" if rng.random() < 1 / 3 else "benign"
        pix, m = simulate(rng, a.size, cls != "normal", cls == "benign")
        if cls != "normal" and not m.any():
            cls = "normal"  # a lesion too small to cover a pixel's centre
        counters[cls] += 1
        d = a.out / cls
        d.mkdir(parents=True, exist_ok=True)
        stem = f"{cls} ({counters[cls]})"
        Image.fromarray(pix).save(d / f"{stem}.png")
        Image.fromarray(m).save(d / f"{stem}_mask.png")
        print(f"{d / stem}.png", flush=True)
    print(counters)


if __name__ == "__main__":
    main()

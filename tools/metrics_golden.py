#!/usr/bin/env python3
"""Golden values for rca-gpu's post-processing and metrics (src/metrics/).

Computes, with SciPy and scikit-image as the reference implementations, the same
quantities the Rust module computes, on a few hundred random and realistic masks
(blobs, ellipses with holes, rings with islands, noise specks, empty, full, one pixel,
shapes cut by the image border), and writes them to tests/fixtures/metrics_golden.json.
The Rust tests (tests/metrics_golden.rs) compare against that file, so CI needs no Python.

Usage:  pip install numpy scipy scikit-image
        python3 tools/metrics_golden.py [--out tests/fixtures/metrics_golden.json]

The seed is fixed, so a rerun with the same library versions writes the same file.

Mask encoding (kept compact so the fixture stays well under 1 MB): row-major bits,
packed eight to a byte with the first pixel in the most significant bit (numpy.packbits),
written as lower-case hex; the last byte is zero-padded.

Conventions mirrored from the Rust module docs (src/metrics/mod.rs):
  * connectivity 8 for the foreground means holes are background regions that are not
    4-connected to the border (and vice versa): the background always uses the
    complementary connectivity, as binary_fill_holes' structure argument expresses;
  * a component is kept when size >= min_area and size >= min_relative_area * largest;
  * 0/0 in precision, recall, Dice, IoU is 1 when both masks are empty, else 0;
  * AHD and HD95 are 0 when both masks are empty and the image diagonal sqrt(w^2 + h^2)
    when exactly one is;
  * mIoU compares IoU > t exactly, as 100 * TP > (50 + 5k) * |P u G|;
  * HD95 pools the directed boundary-to-boundary distances of both directions and takes
    numpy's (linear) 95th percentile, as medpy.metric.binary.hd95 does; the boundary is
    the mask minus its erosion by the 4-neighbour cross with the outside counted as
    background.
"""

import argparse
import inspect
import json
import math
import platform
import sys
import warnings

import numpy as np
import scipy
import scipy.ndimage as ndi
import skimage
from skimage import measure, morphology

SEED = 20260611
CROSS = ndi.generate_binary_structure(2, 1)  # 4-connectivity
SQUARE = ndi.generate_binary_structure(2, 2)  # 8-connectivity

# Post-processing settings every post-processing case is run through; the Rust test reads
# them from the fixture, so adding one here needs no Rust change.
PP_CONFIGS = [
    {"connectivity": 8, "fill_holes": True, "min_area": 64, "min_relative_area": 0.1},
    {"connectivity": 4, "fill_holes": True, "min_area": 5, "min_relative_area": 0.0},
    {"connectivity": 8, "fill_holes": False, "min_area": 0, "min_relative_area": 0.25},
    {"connectivity": 4, "fill_holes": True, "min_area": 20, "min_relative_area": 0.5},
]


def pack(mask):
    return np.packbits(mask.astype(np.uint8).ravel()).tobytes().hex()


# ---------------------------------------------------------------- mask generators


def ellipse(h, w, cy, cx, ry, rx, angle):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def random_ellipse(rng, h, w, scale=(0.15, 0.45), center_margin=0.2):
    cy = rng.uniform(center_margin * h, (1 - center_margin) * h)
    cx = rng.uniform(center_margin * w, (1 - center_margin) * w)
    ry = rng.uniform(*scale) * h
    rx = rng.uniform(*scale) * w
    return ellipse(h, w, cy, cx, max(ry, 1.0), max(rx, 1.0), rng.uniform(0, math.pi))


def gen_blob(rng, h, w):
    sigma = rng.uniform(1.5, 4.0)
    field = ndi.gaussian_filter(rng.random((h, w)), sigma)
    return field > np.quantile(field, rng.uniform(0.5, 0.9))


def gen_ellipse_holes(rng, h, w):
    m = random_ellipse(rng, h, w, scale=(0.25, 0.45), center_margin=0.35)
    ys, xs = np.nonzero(m)
    for _ in range(rng.integers(1, 4)):
        i = rng.integers(len(ys))
        r = rng.uniform(1.0, 3.5)
        m &= ~ellipse(h, w, ys[i], xs[i], r, r * rng.uniform(0.6, 1.6), rng.uniform(0, math.pi))
    return m


def gen_ring_island(rng, h, w):
    cy, cx = h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-2, 2)
    r = min(h, w) * rng.uniform(0.3, 0.45)
    t = rng.uniform(1.0, 3.0)
    ring = ellipse(h, w, cy, cx, r, r, 0) & ~ellipse(h, w, cy, cx, r - t, r - t, 0)
    if rng.random() < 0.7:  # an island inside the hole: filling must swallow it
        ri = max(1.0, (r - t) * rng.uniform(0.1, 0.4))
        ring |= ellipse(h, w, cy, cx, ri, ri, 0)
    if rng.random() < 0.3:  # a one-pixel gap: a diagonal leak for 4-connected background
        ring[int(cy), int(cx + r - 1) : int(cx + r + 1)] = False
    return ring


def gen_specks(rng, h, w):
    m = random_ellipse(rng, h, w)
    return m | (rng.random((h, w)) < rng.uniform(0.005, 0.03))


def gen_noise(rng, h, w):
    return rng.random((h, w)) < rng.uniform(0.05, 0.6)


def gen_multi(rng, h, w):
    m = np.zeros((h, w), bool)
    for _ in range(rng.integers(2, 6)):
        m |= random_ellipse(rng, h, w, scale=(0.03, 0.25), center_margin=0.05)
    return m


def gen_border(rng, h, w):
    # centre on or beyond an edge, so the shape is cut by the border (and may wrap a
    # background pocket against it, which is not a hole)
    side = rng.integers(4)
    cy = rng.uniform(0, h) if side < 2 else (rng.uniform(-3, 2) if side == 2 else h - rng.uniform(-2, 3))
    cx = rng.uniform(0, w) if side >= 2 else (rng.uniform(-3, 2) if side == 0 else w - rng.uniform(-2, 3))
    m = ellipse(h, w, cy, cx, rng.uniform(0.2, 0.6) * h, rng.uniform(0.2, 0.6) * w, rng.uniform(0, math.pi))
    if rng.random() < 0.5:
        m &= ~ellipse(h, w, cy, cx, rng.uniform(1, 4), rng.uniform(1, 4), 0)
    return m


def gen_one_pixel(rng, h, w):
    m = np.zeros((h, w), bool)
    m[rng.integers(h), rng.integers(w)] = True
    return m


def gen_corner_pixel(rng, h, w):
    m = np.zeros((h, w), bool)
    m[(h - 1) * rng.integers(2), (w - 1) * rng.integers(2)] = True
    return m


def gen_empty(rng, h, w):
    return np.zeros((h, w), bool)


def gen_full(rng, h, w):
    return np.ones((h, w), bool)


def gen_full_with_hole(rng, h, w):
    m = np.ones((h, w), bool)
    m[rng.integers(1, h - 1), rng.integers(1, w - 1)] = False
    return m


GENERATORS = {
    "blob": (gen_blob, 6),
    "ellipse_holes": (gen_ellipse_holes, 6),
    "ring_island": (gen_ring_island, 4),
    "specks": (gen_specks, 5),
    "noise": (gen_noise, 3),
    "multi": (gen_multi, 5),
    "border": (gen_border, 5),
    "one_pixel": (gen_one_pixel, 1),
    "corner_pixel": (gen_corner_pixel, 1),
    "empty": (gen_empty, 1),
    "full": (gen_full, 1),
    "full_with_hole": (gen_full_with_hole, 1),
}


def random_kind(rng):
    kinds = list(GENERATORS)
    weights = np.array([GENERATORS[k][1] for k in kinds], float)
    return kinds[rng.choice(len(kinds), p=weights / weights.sum())]


def random_size(rng):
    return int(rng.integers(16, 65)), int(rng.integers(16, 65))


# ---------------------------------------------------------------- reference computations


def postprocess(mask, cfg):
    fg = CROSS if cfg["connectivity"] == 4 else SQUARE
    bg = SQUARE if cfg["connectivity"] == 4 else CROSS
    out = ndi.binary_fill_holes(mask, structure=bg) if cfg["fill_holes"] else mask.copy()
    labels, n = ndi.label(out, structure=fg)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    largest = sizes[1:].max() if n else 0
    keep = (sizes >= cfg["min_area"]) & (sizes >= cfg["min_relative_area"] * largest)
    keep[0] = False
    result = keep[labels]
    if cfg["min_relative_area"] == 0.0 and cfg["min_area"] >= 2:
        # cross-check the component filter against scikit-image's own; 0.26 renamed
        # min_size (drops size < min_size) to max_size (drops size <= max_size)
        conn = 1 if cfg["connectivity"] == 4 else 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "max_size" in inspect.signature(morphology.remove_small_objects).parameters:
                sk = morphology.remove_small_objects(out, max_size=cfg["min_area"] - 1, connectivity=conn)
            else:
                sk = morphology.remove_small_objects(out, min_size=cfg["min_area"], connectivity=conn)
        assert np.array_equal(sk, result), "remove_small_objects disagrees with label + bincount"
    return result


def count_components(mask, connectivity):
    n_scipy = ndi.label(mask, structure=CROSS if connectivity == 4 else SQUARE)[1]
    n_skimage = measure.label(mask, connectivity=1 if connectivity == 4 else 2).max()
    assert n_scipy == n_skimage
    return int(n_scipy)


def dist_to(mask):
    """Euclidean distance of every pixel to the nearest True pixel of a non-empty mask."""
    return ndi.distance_transform_edt(~mask)


def boundary(mask):
    return mask & ~ndi.binary_erosion(mask, structure=CROSS, border_value=0)


def metrics(p, g):
    h, w = g.shape
    n = p.size
    tp = int(np.sum(p & g))
    fp = int(np.sum(p & ~g))
    fn = int(np.sum(~p & g))
    tn = int(np.sum(~p & ~g))
    both_empty = not p.any() and not g.any()
    one_empty = p.any() != g.any()

    def ratio(a, b):
        return a / b if b > 0 else (1.0 if both_empty else 0.0)

    union = tp + fp + fn
    iou = ratio(tp, union)
    if union == 0:
        miou = 1.0
    else:
        miou = sum(iou for k in range(10) if 100 * tp > (50 + 5 * k) * union) / 10.0
    diag = math.sqrt(w * w + h * h)
    if both_empty:
        ahd = hd95 = 0.0
    elif one_empty:
        ahd = hd95 = diag
    else:
        ahd = 0.5 * (dist_to(g)[p].mean() + dist_to(p)[g].mean())
        bp, bg = boundary(p), boundary(g)
        hd95 = float(np.percentile(np.hstack([dist_to(bg)[bp], dist_to(bp)[bg]]), 95))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": (tp + tn) / n,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": iou,
        "miou": miou,
        "ahd": float(ahd),
        "hd95": float(hd95),
        "mae": (fp + fn) / n,
    }


def perturb(rng, g):
    """A plausible prediction for ground truth g."""
    h, w = g.shape
    r = rng.random()
    if r < 0.25:
        p = np.roll(g, (rng.integers(-4, 5), rng.integers(-4, 5)), axis=(0, 1))
    elif r < 0.40:
        p = ndi.binary_dilation(g, structure=SQUARE, iterations=int(rng.integers(1, 4)))
    elif r < 0.55:
        p = ndi.binary_erosion(g, structure=CROSS, iterations=int(rng.integers(1, 3)))
    elif r < 0.70:
        p = g ^ (rng.random((h, w)) < 0.02)
    elif r < 0.85:
        p = GENERATORS[random_kind(rng)][0](rng, h, w)
    elif r < 0.92:
        p = np.zeros((h, w), bool)
    else:
        p = g.copy()
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/metrics_golden.json")
    ap.add_argument("--pp-cases", type=int, default=100)
    ap.add_argument("--metric-cases", type=int, default=180)
    ap.add_argument("--full-edt", type=int, default=12, help="cases whose whole squared EDT is stored")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)

    pp_cases = []
    for i in range(args.pp_cases):
        kind = random_kind(rng) if i >= len(GENERATORS) else list(GENERATORS)[i]
        h, w = random_size(rng)
        m = GENERATORS[kind][0](rng, h, w)
        case = {
            "kind": kind,
            "width": w,
            "height": h,
            "mask": pack(m),
            "filled8": pack(ndi.binary_fill_holes(m, structure=CROSS)),
            "filled4": pack(ndi.binary_fill_holes(m, structure=SQUARE)),
            "components8": count_components(m, 8),
            "components4": count_components(m, 4),
            "outputs": [pack(postprocess(m, cfg)) for cfg in PP_CONFIGS],
        }
        pp_cases.append(case)

    edt_cases = []
    for index, case in enumerate(pp_cases):
        h, w = case["height"], case["width"]
        m = np.unpackbits(np.frombuffer(bytes.fromhex(case["mask"]), np.uint8))[: h * w].reshape(h, w).astype(bool)
        if not m.any():
            continue  # the distance to an empty set is undefined; the Rust tests cover it
        d = dist_to(m)
        entry = {"case": index, "sum": float(d.sum()), "max": float(d.max())}
        if len(edt_cases) < args.full_edt:
            sq = ndi.distance_transform_edt(~m, return_distances=True) ** 2
            entry["squared"] = [int(round(v)) for v in sq.ravel()]
        edt_cases.append(entry)

    metric_cases = []
    forced = [("empty", "empty"), ("empty", "blob"), ("blob", "empty"), ("full", "full"),
              ("one_pixel", "one_pixel"), ("full", "one_pixel"), ("corner_pixel", "border")]
    for i in range(args.metric_cases):
        h, w = random_size(rng)
        if i < len(forced):
            g = GENERATORS[forced[i][1]][0](rng, h, w)
            p = GENERATORS[forced[i][0]][0](rng, h, w)
            kind = f"{forced[i][0]}_vs_{forced[i][1]}"
        else:
            kind = random_kind(rng)
            g = GENERATORS[kind][0](rng, h, w)
            p = perturb(rng, g)
        metric_cases.append({"kind": kind, "width": w, "height": h, "pred": pack(p), "gt": pack(g), **metrics(p, g)})

    out = {
        "generator": "tools/metrics_golden.py",
        "seed": SEED,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-image": skimage.__version__,
        },
        "encoding": "row-major bits, numpy.packbits (first pixel = most significant bit), hex",
        "postprocess_configs": PP_CONFIGS,
        "postprocess": pp_cases,
        "edt": edt_cases,
        "metrics": metric_cases,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(pp_cases)} post-processing, {len(edt_cases)} EDT, {len(metric_cases)} metric cases", file=sys.stderr)


if __name__ == "__main__":
    main()

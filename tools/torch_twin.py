#!/usr/bin/env python3
"""A PyTorch twin of rca-gpu's RCA-IUnet: the same network, parameter names, checkpoint
format, preprocessing, post-processing and loss, for users who want the model in PyTorch
(or ONNX) and as a speed yardstick for the WGSL engine.

Install:  pip install torch numpy safetensors pillow
          (export-onnx also needs: pip install onnx onnxscript; its check: onnxruntime)

Subcommands:
  predict      --checkpoint CKPT --out DIR IMAGE|FOLDER...
               writes NAME_mask.png, NAME_prob.png and NAME_overlay.png per image, the
               files `rca-gpu infer` writes (same post-processing flags).
  check        --checkpoint CKPT [--rca-gpu BIN] IMAGE|FOLDER...
               runs `rca-gpu infer` and the twin on the same images and reports, per image,
               the mask pixels that differ and the largest difference of the probability
               PNGs; exit status 1 when any mask differs.
  check-train  --checkpoint CKPT --data BUSI_FOLDER [--rca-gpu BIN]
               one training step from CKPT in rca-gpu (`train --init`, one epoch, the
               training split in one batch, no augmentation) and in the twin: the losses
               and the weights after the step.
  time         --size S --width F --batch B --reps R [--threads T] [--train] [--variant V]
               median/min/max wall ms of an eval-mode forward (or, with --train, of a
               training step: forward, loss, backward, Adam), one JSON line.
  export-onnx  --checkpoint CKPT --out model.onnx
               image (N, 1, S, S) in [0, 1] → lesion probability (N, 1, S, S); checked
               against the twin with onnxruntime when it is installed.
  params       --variant V --width F
               parameter totals, as `rca-gpu summary` prints them.

The network is MODEL.md (the design notes) as src/model and src/nn build it. Where the
twin deliberately differs from PyTorch's defaults it follows rca-gpu (Keras): batch norm
eps 1e-3, momentum 0.99 as the weight of the old running value, and the running variance
updated with the *biased* batch variance; Adam with ε added after the bias correction.

Known difference: JPEG inputs are decoded by libjpeg(-turbo) here and by zune-jpeg in
rca-gpu; the two differ by one grey level on some pixels, which can move a mask boundary
pixel. PNG, BMP and TIFF inputs decode identically.
"""

import argparse
import functools
import hashlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file

try:
    from PIL import Image
except ImportError:  # only the subcommands that read or write images need it
    Image = None

# name → (residual inception blocks, cross-spatial attention, hybrid-pool down-sampling);
# src/model/mod.rs `Variant`.
VARIANTS = {
    "unet": (False, False, False),
    "unet+ric": (True, False, False),
    "unet+csa": (False, True, False),
    "unet+ric+hp": (True, False, True),
    "unet+csa+hp": (False, True, True),
    "unet+csa+ric": (True, True, False),
    "rca-iunet": (True, True, True),
}

BN_EPS = 1e-3
BN_MOMENTUM = 0.99
ADAM_LR, ADAM_BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-7
DICE_EPS = 1.0

CHECKPOINT_FORMAT = "rca-gpu-checkpoint"
CHECKPOINT_VERSION = "1"
IMAGE_EXTENSIONS = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}

# ---------------------------------------------------------------------------------------
# Layers (src/nn/layers.rs). Attribute names are chosen so that state_dict() keys are
# rca-gpu's parameter names, e.g. enc2.ric.l1.sep5.depthwise.weight.


def conv(cin, cout, k, stride=1, padding=0):
    """Dense k×k convolution with bias; Glorot-uniform kernel and zero bias (MODEL.md)."""
    layer = nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class BatchNorm(nn.Module):
    """BN over (N, H, W) with rca-gpu's (Keras') semantics: train mode normalises with the
    batch mean and biased variance and blends that same biased variance into the running
    one: running = momentum·running + (1 − momentum)·batch."""

    def __init__(self, c, momentum=BN_MOMENTUM):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.momentum = momentum

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.gamma,
                                self.beta, False, 0.0, BN_EPS)
        # PyTorch's fused kernel normalises with the biased variance, as we must, but
        # blends the unbiased one u into the running variance: r = m·old + (1 − m)·u.
        # The biased variance is u·(n − 1)/n, so the value we want is
        # r − (1 − m)·u/n = r − (r − m·old)/n. Correcting afterwards keeps the fused kernel
        # (one pass for the statistics) instead of a second reduction. The kernel blends
        # into a copy: autograd keeps the tensor it was given for the backward.
        blended = self.running_var.clone()
        y = F.batch_norm(x, self.running_mean, blended, self.gamma, self.beta,
                         True, 1.0 - self.momentum, BN_EPS)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_var.copy_(blended - (blended - self.momentum * self.running_var) / n)
        return y


class SepConv(nn.Module):
    """Depthwise k×k ('same' zero padding, no bias) then pointwise 1×1 with bias."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False)
        # xavier_uniform_ reads the fans of the (cin, 1, k, k) kernel as k² and cin·k²,
        # the sum rca-gpu's Keras fans (cin·k² and k²) have, so the limit is the same.
        nn.init.xavier_uniform_(self.depthwise.weight)
        self.pointwise = conv(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ConvBn(nn.Module):
    """A layer followed by BN, the layer stored under rca-gpu's name for it (`conv`,
    `sep1`): shortcuts, Gating, CSA's output and the head."""

    def __init__(self, layer_name, layer, c):
        super().__init__()
        self.layer_name = layer_name
        self.add_module(layer_name, layer)
        self.bn = BatchNorm(c)

    def forward(self, x):
        return self.bn(getattr(self, self.layer_name)(x))


class SepBn(nn.Module):
    """SepConv(k) → BN → ReLU, named sep{k} / bn{k} (the plain block's two layers)."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.k = k
        self.add_module(f"sep{k}", SepConv(cin, cout, k))
        self.add_module(f"bn{k}", BatchNorm(cout))

    def forward(self, x):
        return F.relu(getattr(self, f"bn{self.k}")(getattr(self, f"sep{self.k}")(x)))


def max_pool_same(x):
    """2×2 max pool, stride 1, size kept: the window at (i, j) covers (i..i+1, j..j+1),
    clipped at the right/bottom border (Keras 'same' for an even window pads only after)."""
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, stride=1)


def spectral_matrix(m, h):
    """The real h×M matrix A of spectral pooling along one axis (y = A·x·Aᵀ), from the f64
    formula of src/ops/spectral.rs `reference::spectral_matrix`, rounded once to f32."""
    n = np.arange(h, dtype=np.float64)[:, None]
    col = np.arange(m, dtype=np.float64)[None, :]
    t = n / h - col / m
    a = sum(np.cos(2.0 * math.pi * f * t) for f in range(-h // 2 + 1, h // 2))
    sign = np.where(np.arange(h) % 2 == 0, 1.0, -1.0)[:, None]
    a = a + math.sqrt(2.0) * sign * np.cos(math.pi * h * col / m)
    return torch.from_numpy((a / h).astype(np.float32))


def alternating(m):
    """v = (−1)^n, n < M, as f32."""
    return torch.from_numpy(np.where(np.arange(m) % 2 == 0, 1.0, -1.0).astype(np.float32))


def spectral_pool_full(x, v):
    """Spectral pooling of (N, C, M, M) at full size h = M, v = (−1)^n: A = I + c·v·vᵀ with
    c = (√2 − 1)/M, so y = x + c·v·(vᵀx) + c·(xv)·vᵀ + c²·(vᵀxv)·v·vᵀ, two reductions
    instead of two M×M matmuls (the closed form of shaders/spectral.wgsl)."""
    c = float(np.float32((math.sqrt(2.0) - 1.0) / x.shape[-1]))
    v_col, v_row = v[:, None], v[None, :]
    col_sums = (x * v_col).sum(-2, keepdim=True)  # vᵀx, (N, C, 1, M)
    row_sums = (x * v_row).sum(-1, keepdim=True)  # xv, (N, C, M, 1)
    total = (col_sums * v_row).sum(-1, keepdim=True)  # vᵀxv, (N, C, 1, 1)
    return x + c * (v_col * col_sums + row_sums * v_row) + (c * c) * total * (v_col * v_row)


class HybridPool(nn.Module):
    """concat[max pool, ReLU(spectral pool)] (2C) → Conv(2C, C, 1) on (N, C, M, M).
    'valid' halves the size (down-sampling); 'same' keeps it (a branch of the inception
    block). Spectral pooling is the real separable form y = A·x·Aᵀ, without an FFT, so the
    model exports to ONNX."""

    def __init__(self, c, m, valid):
        super().__init__()
        self.valid = valid
        self.merge = conv(2 * c, c, 1)
        # The operator for this M is a constant: a buffer, so that it follows the model to
        # its device and becomes an ONNX initializer, but not saved (not a parameter of
        # rca-gpu's checkpoints).
        operator = spectral_matrix(m, m // 2) if valid else alternating(m)
        self.register_buffer("spectral", operator, persistent=False)

    def forward(self, x):
        if self.valid:
            pooled, spectral = F.max_pool2d(x, 2), self.spectral @ x @ self.spectral.T
        else:
            pooled, spectral = max_pool_same(x), spectral_pool_full(x, self.spectral)
        return self.merge(torch.cat([pooled, F.relu(spectral)], 1))


class Inception(nn.Module):
    """Branches SepConv(k) → BN → ReLU for k in `kernel_sizes` and HybridPoolSame → BN →
    ReLU, concatenated in that order, then SepConv(…, s, 1)."""

    def __init__(self, cin, s, m, kernel_sizes):
        super().__init__()
        self.kernel_sizes = kernel_sizes
        for k in kernel_sizes:
            self.add_module(f"sep{k}", SepConv(cin, s, k))
            self.add_module(f"bn{k}", BatchNorm(s))
        self.hp = HybridPool(cin, m, valid=False)
        self.bnhp = BatchNorm(cin)
        self.merge = SepConv(3 * s + cin, s, 1)

    def forward(self, x):
        outs = [F.relu(getattr(self, f"bn{k}")(getattr(self, f"sep{k}")(x)))
                for k in self.kernel_sizes]
        outs.append(F.relu(self.bnhp(self.hp(x))))
        return self.merge(torch.cat(outs, 1))


class Ric(nn.Module):
    """Residual inception block on M×M maps: BN(SepConv1(x)) + layer2(layer1(x)), no
    activation after."""

    def __init__(self, cin, s, m):
        super().__init__()
        self.l1 = Inception(cin, s, m, (3, 1, 5))
        self.l2 = Inception(s, s, m, (1, 3, 5))
        self.shortcut = ConvBn("sep1", SepConv(cin, s, 1), s)

    def forward(self, x):
        return self.shortcut(x) + self.l2(self.l1(x))


class Plain(nn.Module):
    """The ablation's block: BN(Conv1(x)) + (SepBn3 ∘ SepBn3)(x)."""

    def __init__(self, cin, s):
        super().__init__()
        self.a = SepBn(cin, s, 3)
        self.b = SepBn(s, s, 3)
        self.shortcut = ConvBn("conv", conv(cin, s, 1), s)

    def forward(self, x):
        return self.shortcut(x) + self.b(self.a(x))


class Csa(nn.Module):
    """Cross-spatial attention at one decoder level of width s. P (the map that entered the
    encoder block) and E (its output) at resolution R, D (the next encoder output) at R/2."""

    def __init__(self, ch_p, ch_e, ch_d, s):
        super().__init__()
        self.gate_x = ConvBn("conv", conv(ch_p, s, 1), s)
        self.gate_y = ConvBn("conv", conv(ch_e, s, 1), s)
        self.gate_z = ConvBn("conv", conv(ch_d, s, 1), s)
        self.theta_x = conv(s, s, 2, stride=2)
        self.theta_y = conv(s, s, 2, stride=2)
        self.phi_z1 = conv(s, s, 1)
        self.phi_z3 = conv(s, s, 3, padding=1)
        self.psi = conv(s, 1, 1)
        self.out = ConvBn("conv", conv(s, s, 1), s)

    def forward(self, p, e, d):
        gx = F.relu(self.gate_x(p))
        gy = F.relu(self.gate_y(e))
        gz = F.relu(self.gate_z(d))
        summed = self.theta_x(gx) + self.theta_y(gy) + self.phi_z3(self.phi_z1(gz))
        alpha = torch.sigmoid(self.psi(F.relu(summed)))
        alpha = F.interpolate(alpha, scale_factor=2.0, mode="nearest")
        return F.relu(self.out(gx * alpha))


class Level(nn.Module):
    """One encoder or decoder level at resolution M: its block under rca-gpu's name (`ric`
    or `plain`) and, in the decoder of the CSA variants, its attention (`csa`)."""

    def __init__(self, ric, cin, s, m, csa=None):
        super().__init__()
        self.block_name = "ric" if ric else "plain"
        self.add_module(self.block_name, Ric(cin, s, m) if ric else Plain(cin, s))
        self.csa = csa

    def forward(self, x):
        return getattr(self, self.block_name)(x)


class RcaIUnet(nn.Module):
    """RCA-IUnet or one of its ablation variants (src/model/mod.rs) for input side S =
    `input_size`, a power of two ≥ 32 (as in rca-gpu, a model is built for one S: its
    spectral operators depend on it). forward() takes images (N, 1, S, S) in [0, 1] and
    returns the logits (N, 1, S, S); probabilities are their sigmoid."""

    def __init__(self, variant="rca-iunet", width=16, input_size=256, bn_momentum=BN_MOMENTUM):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant '{variant}' (one of: {', '.join(VARIANTS)})")
        if input_size < 32 or input_size & (input_size - 1):
            raise ValueError(f"input size {input_size} is not a power of two ≥ 32")
        self.variant, self.width, self.input_size = variant, width, input_size
        ric, csa, hp = VARIANTS[variant]
        self.hp = hp
        w = [width << i for i in range(5)]
        side = [input_size >> i for i in range(5)]
        # Declared in rca-gpu's order (encoder, then decoder from the deepest level up).
        self.enc0 = Level(ric, 1, w[0], side[0])
        for i in range(1, 5):
            if hp:
                self.add_module(f"down{i}", HybridPool(w[i - 1], side[i - 1], valid=True))
            self.add_module(f"enc{i}", Level(ric, w[i - 1], w[i], side[i]))
        for i in reversed(range(4)):
            # CSA's P: the image at level 0, else the pooled map that entered e_i.
            ch_p = 1 if i == 0 else w[i - 1]
            attention = Csa(ch_p, w[i], w[i + 1], w[i]) if csa else None
            self.add_module(f"dec{i}", Level(ric, w[i + 1] + w[i], w[i], side[i], attention))
        self.head = ConvBn("conv", conv(w[0], 1, 1), 1)
        self.set_bn_momentum(bn_momentum)

    def set_bn_momentum(self, momentum):
        """The weight of the old running statistics in train mode (rca-gpu's
        --bn-momentum: 0.99 with a data set, 0.9 in the phantom demo)."""
        for module in self.modules():
            if isinstance(module, BatchNorm):
                module.momentum = momentum

    def forward(self, x):
        if tuple(x.shape[1:]) != (1, self.input_size, self.input_size):
            raise ValueError(f"input of shape {tuple(x.shape)}: this model takes "
                             f"(N, 1, {self.input_size}, {self.input_size})")
        entered, enc = [x], [self.enc0(x)]
        for i in range(1, 5):
            pooled = (getattr(self, f"down{i}")(enc[-1]) if self.hp
                      else F.max_pool2d(enc[-1], 2))
            enc.append(getattr(self, f"enc{i}")(pooled))
            entered.append(pooled)
        d = enc[4]
        for i in reversed(range(4)):
            level = getattr(self, f"dec{i}")
            up = F.interpolate(d, scale_factor=2.0, mode="nearest")
            skip = enc[i] if level.csa is None else level.csa(entered[i], enc[i], enc[i + 1])
            d = level(torch.cat([up, skip], 1))
        return self.head(d)


def parameter_counts(model):
    """(total, trainable, BN running statistics) values, as `rca-gpu summary` counts them:
    the total is what a checkpoint holds."""
    total = sum(t.numel() for t in model.state_dict().values())
    trainable = sum(p.numel() for p in model.parameters())
    return total, trainable, total - trainable


# ---------------------------------------------------------------------------------------
# Checkpoints (src/train/checkpoint.rs).


class CheckpointError(Exception):
    pass


def tensor_digest(tensors):
    """rca-gpu's SHA-256: the tensors in name order, each as raw little-endian f32 bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return digest.hexdigest()


def load_checkpoint(path, bn_momentum=BN_MOMENTUM):
    """The model of an rca-gpu checkpoint (NAME.safetensors), in eval mode. Checks the
    format, version and SHA-256, and that the file holds exactly the model's tensors with
    the model's shapes."""
    path = str(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rca-gpu checkpoint "
                              f"(format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version "
                              f"{meta.get('format_version')}; this twin reads {CHECKPOINT_VERSION}")
    tensors = load_file(path)
    if tensor_digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its SHA-256 does not match its metadata")
    try:
        variant, width, size = meta["variant"], int(meta["width"]), int(meta["input_size"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata variant/width/input_size missing or malformed ({e})")
    model = RcaIUnet(variant, width, size, bn_momentum)
    load_named_tensors(model, tensors, path)
    return model.eval()


def load_named_tensors(model, tensors, source="checkpoint"):
    """Copy name → array into the model's parameters and buffers; every name must match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{source} does not match {model.variant} F={model.width}: "
            f"{len(missing)} missing tensor(s) {missing[:5]}, {len(extra)} unexpected {extra[:5]}")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(value.shape)}, "
                                  f"the model needs {tuple(own[name].shape)}")
    model.load_state_dict({n: torch.from_numpy(np.asarray(v, np.float32)) for n, v in tensors.items()})


# ---------------------------------------------------------------------------------------
# Images in and out (src/data/image_io.rs, src/data/preprocess.rs, src/cli/infer.rs).


def _luma(rgb, maximum):
    """Rec. 601 luma in f32, the operations in rca-gpu's order; grey stored as RGB comes
    back unchanged (the weights sum to 1 only up to rounding)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    top = np.float32(maximum)
    weighted = (np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b) / top
    return np.where((r == g) & (g == b), r / top, np.clip(weighted, 0.0, 1.0)).astype(np.float32)


def load_image_gray(path):
    """An image file as grey f32 in [0, 1], (H, W): values divided by the type's maximum,
    colour converted to Rec. 601 luma, alpha ignored."""
    with Image.open(path) as img:
        mode = img.mode
        if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            img, mode = img.convert("RGB"), "RGB"
        elif mode == "1":
            img, mode = img.convert("L"), "L"
        a = np.asarray(img)
    if mode == "L":
        return a.astype(np.float32) / np.float32(255)
    if mode == "LA":
        return a[..., 0].astype(np.float32) / np.float32(255)
    if mode.startswith("I"):
        # Pillow opens 16-bit grey PNG/TIFF as I;16* (or I): divide by 65535 like rca-gpu.
        return a.astype(np.float32) / np.float32(65535)
    if mode == "F":
        return np.clip(a.astype(np.float32), 0.0, 1.0)
    if mode in ("RGB", "RGBA", "RGBX"):
        return _luma(a, 255)
    raise ValueError(f"{path}: unsupported image mode {mode}")


@functools.lru_cache(maxsize=None)
def _axis_taps(src, dst):
    """For each output index along one axis, the source indices and f32 weights rca-gpu's
    resize reads: area averaging where the axis shrinks, bilinear (pixel centres aligned)
    where it grows. As arrays (dst, taps), short rows padded with weight 0."""
    scale = src / dst
    rows = []
    for o in range(dst):
        if dst < src:
            lo, hi = o * scale, min((o + 1) * scale, float(src))
            first, last = math.floor(lo), min(math.ceil(hi), src)
            weights = [np.float32(max(min(hi, i + 1.0) - max(lo, float(i)), 0.0) / (hi - lo))
                       for i in range(first, last)]
        else:
            x = min(max((o + 0.5) * scale - 0.5, 0.0), float(src - 1))
            first = math.floor(x)
            frac = np.float32(x - first)
            weights = [np.float32(1.0) - frac, frac] if first + 1 < src and frac > 0 else [np.float32(1.0)]
        rows.append((first, weights))
    taps = max(len(w) for _, w in rows)
    index = np.array([[min(f + k, src - 1) for k in range(taps)] for f, _ in rows])
    weight = np.array([w + [np.float32(0.0)] * (taps - len(w)) for _, w in rows], np.float32)
    return index, weight


def resize_gray(img, out_w, out_h):
    """rca-gpu's separable resize of an (H, W) f32 image: a horizontal pass, then a
    vertical one, each summing its taps in order in f32, so the result is bit-identical."""
    h, w = img.shape
    if (w, h) == (out_w, out_h):
        return img.copy()
    index, weight = _axis_taps(w, out_w)
    rows = np.zeros((h, out_w), np.float32)
    for k in range(index.shape[1]):
        rows = rows + weight[:, k] * img[:, index[:, k]]
    index, weight = _axis_taps(h, out_h)
    out = np.zeros((out_h, out_w), np.float32)
    for k in range(index.shape[1]):
        out = out + weight[:, k, None] * rows[index[:, k], :]
    return out


def preprocess_image(img, size):
    """The network input of one grey image: size×size in [0, 1]."""
    return np.clip(resize_gray(img, size, size), 0.0, 1.0)


def to_u8(values):
    """clamp(v, 0, 1)·255 rounded half away from zero, as Rust's `round` does (the product
    in f32, then rounded exactly in f64)."""
    scaled = (np.clip(values, 0.0, 1.0).astype(np.float32) * np.float32(255)).astype(np.float64)
    return np.floor(scaled + 0.5).astype(np.uint8)


def load_mask(path):
    """A mask file as a boolean plane (src/data/image_io.rs `dynamic_to_mask`): foreground
    where any colour channel is non-zero (above half range for JPEG), except fully
    transparent pixels; a mask drawn only in the alpha channel uses the alpha."""
    with Image.open(path) as img:
        lossy = img.format == "JPEG"
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        rgba = np.asarray(img.convert("RGBA"))
    cut = 127 if lossy else 0
    alpha = rgba[..., 3]
    mask = (rgba[..., :3] > cut).any(axis=-1) & ((alpha > 0) | (not has_alpha))
    if has_alpha and not mask.any() and alpha.min() < alpha.max():
        mask = alpha > cut
    return mask


def preprocess_mask(mask, size):
    """The training target of a boolean mask: resized like the image, then ≥ 0.5 (less
    1e-6, so that an area average of exactly half counts despite rounding)."""
    resized = resize_gray(mask.astype(np.float32), size, size)
    return (resized >= np.float32(0.5) - np.float32(1e-6)).astype(np.float32)


def busi_masks(image_path):
    """The BUSI masks of an image: NAME_mask.* and NAME_mask_K.* beside it (OR-ed)."""
    base = image_path.stem.lower() + "_mask"
    return sorted(p for p in image_path.parent.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS
                  and (p.stem.lower() == base
                       or (p.stem.lower().startswith(base + "_") and p.stem[len(base) + 1:].isdigit())))


# ---------------------------------------------------------------------------------------
# Post-processing (src/metrics/postprocess.rs): threshold, fill holes, remove small
# components; foreground 8-connected, background 4-connected. Components are found on row
# runs with union-find, so the work grows with the number of runs, not of pixels.


def _row_runs(mask):
    """Runs of True per row: (row, start, end) arrays, end exclusive, in raster order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def _run_components(mask, diagonal):
    """Connected components of `mask` (8-connected when `diagonal`, else 4): the runs and
    each run's component id."""
    rows, starts, ends = _row_runs(mask)
    parent = list(range(len(rows)))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    bounds = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    # Runs in consecutive rows touch when their column ranges overlap, or when they are
    # one column apart for 8-connectivity.
    reach = 1 if diagonal else 0
    for y in range(1, mask.shape[0]):
        j, prev_end = bounds[y - 1], bounds[y]
        for i in range(bounds[y], bounds[y + 1]):
            while j < prev_end and ends[j] + reach <= starts[i]:
                j += 1
            k = j
            while k < prev_end and starts[k] < ends[i] + reach:
                parent[find(i)] = find(k)
                k += 1
    roots = np.array([find(i) for i in range(len(rows))], dtype=np.int64)
    return rows, starts, ends, roots


def _paint(shape, rows, starts, ends, keep):
    out = np.zeros(shape, bool)
    for r, s, e in zip(rows[keep], starts[keep], ends[keep]):
        out[r, s:e] = True
    return out


def fill_holes(mask):
    """Background not connected (4-connected) to the image border becomes foreground."""
    h, w = mask.shape
    rows, starts, ends, roots = _run_components(~mask, diagonal=False)
    at_border = (rows == 0) | (rows == h - 1) | (starts == 0) | (ends == w)
    outside = np.isin(roots, roots[at_border])
    return mask | _paint(mask.shape, rows, starts, ends, ~outside)


def remove_small_components(mask, min_area, min_relative_area):
    """Keeps the 8-connected components with size ≥ min_area and ≥ min_relative_area times
    the largest."""
    rows, starts, ends, roots = _run_components(mask, diagonal=True)
    if len(rows) == 0:
        return mask.copy()
    sizes = np.bincount(roots, weights=ends - starts, minlength=len(rows))
    floor = min_relative_area * sizes.max()
    keep = (sizes[roots] >= min_area) & (sizes[roots] >= floor)
    return _paint(mask.shape, rows, starts, ends, keep)


def post_process(prob, threshold=0.5, fill=True, min_area=64, min_relative_area=0.1):
    """The binary mask of a probability map: p ≥ threshold, then hole filling and
    small-component removal (`rca-gpu infer`'s defaults)."""
    mask = prob >= np.float32(threshold)
    if fill:
        mask = fill_holes(mask)
    return remove_small_components(mask, min_area, min_relative_area)


def boundary(mask):
    """Foreground pixels with a 4-neighbour that is background or outside the image."""
    p = np.pad(mask, 1)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~interior


PREDICTION_COLOUR = (255, 230, 0)


def overlay(grey, mask):
    """The image in RGB with the mask's outline in yellow: 1 px, grown inwards to 2 px on
    images whose shorter side is 400 px or more (src/infer.rs `overlay`)."""
    out = np.repeat(to_u8(grey)[..., None], 3, axis=2)
    line = boundary(mask)
    if min(mask.shape) >= 400:
        b = np.pad(line, 1)
        line = mask & (line | b[:-2, 1:-1] | b[2:, 1:-1] | b[1:-1, :-2] | b[1:-1, 2:])
    out[line] = PREDICTION_COLOUR
    return out


# ---------------------------------------------------------------------------------------
# Inference (src/infer.rs, src/cli/infer.rs).


def is_mask_name(stem):
    """Whether a file stem is a ground-truth mask name (x_mask, x_mask_3, x_GT, x_gt)."""
    _, sep, tail = stem.rpartition("_mask_")
    if sep and tail.isdigit() and tail.isascii():
        return True
    return any(stem.endswith(s) and len(stem) > len(s)
               for s in ("_mask", "_Mask", "_MASK", "_GT", "_gt"))


def collect_inputs(inputs):
    """The image files the inputs name: folders contribute their image files, sorted, except
    ground-truth masks and earlier outputs (as `rca-gpu infer`)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            found = [p for p in found if not (is_mask_name(p.stem)
                                              or p.stem.endswith(("_prob", "_overlay")))]
            if not found:
                sys.exit(f"the folder {item} has no images to segment")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            sys.exit(f"input {item} does not exist")
    stems = {}
    for f in files:
        if f.stem in stems:
            sys.exit(f"{stems[f.stem]} and {f} have the same name stem, so their outputs "
                     "would overwrite each other")
        stems[f.stem] = f
    return files


class OnnxModel:
    """A model exported by `export-onnx`, run by onnxruntime on the CPU: image (N, 1, S, S)
    → probability, so that `predict` and `check` can use the exported file itself."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            sys.exit("--onnx needs onnxruntime: pip install onnxruntime")
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or not isinstance(shape[-1], int) or shape[-1] != shape[-2]:
            sys.exit(f"{path}: input shape {shape} is not (N, 1, S, S)")
        self.input_size = shape[-1]

    def probability(self, x):
        return self.session.run(None, {"image": x.astype(np.float32)})[0]


@torch.no_grad()
def predict_probabilities(model, images, batch=1):
    """Lesion probability maps at each grey image's original size: preprocess to S×S, one
    eval-mode forward per batch, sigmoid, resize back (bilinear where it grows, area where
    it shrinks)."""
    s = model.input_size
    out = []
    for start in range(0, len(images), batch):
        group = images[start:start + batch]
        x = np.stack([preprocess_image(g, s) for g in group])[:, None]
        if isinstance(model, OnnxModel):
            prob = model.probability(x)[:, 0]
        else:
            model.eval()
            device = next(model.parameters()).device
            prob = torch.sigmoid(model(torch.from_numpy(x).to(device))).cpu().numpy()[:, 0]
        out.extend(resize_gray(p, g.shape[1], g.shape[0]) for p, g in zip(prob, group))
    return out


def save_png(path, pixels):
    Image.fromarray(pixels).save(path, format="PNG")


def predict_to_folder(model, files, out_dir, pp, batch=1):
    """Writes NAME_mask.png (0/255), NAME_prob.png (probability × 255) and
    NAME_overlay.png per input file into out_dir, as `rca-gpu infer` does. Yields
    (file, mask) per image as it is written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(files), batch):
        group = files[start:start + batch]
        greys = [load_image_gray(f) for f in group]
        for f, grey, prob in zip(group, greys, predict_probabilities(model, greys, batch)):
            mask = post_process(prob, **pp)
            save_png(out_dir / f"{f.stem}_mask.png", mask.astype(np.uint8) * 255)
            save_png(out_dir / f"{f.stem}_prob.png", to_u8(prob))
            save_png(out_dir / f"{f.stem}_overlay.png", overlay(grey, mask))
            yield f, mask


# ---------------------------------------------------------------------------------------
# Training (src/ops/loss.rs, src/ops/optim.rs, src/train/step.rs).


def bce_dice_loss(logits, masks):
    """½·BCE + ½·Dice per sample, averaged over the batch (MODEL.md Eq. 4–9). BCE is the
    pixel mean of softplus(z) − y·z (no overflow at large |z|); Dice is
    1 − (2·Σy·p + 1)/(Σy² + Σp² + 1), p = sigmoid(z)."""
    z, y = logits.flatten(1), masks.flatten(1)
    bce = (F.softplus(z) - y * z).mean(1)
    p = torch.sigmoid(z)
    dice = 1.0 - (2.0 * (y * p).sum(1) + DICE_EPS) / ((y * y).sum(1) + (p * p).sum(1) + DICE_EPS)
    return (0.5 * bce + 0.5 * dice).mean()


class KerasAdam(torch.optim.Optimizer):
    """Adam in Keras' form, as rca-gpu's kernel: lr_t = lr·√(1 − β2^t)/(1 − β1^t),
    param −= lr_t·m/(√v + ε). (torch.optim.Adam adds ε to √v̂ instead; the two differ
    when √v is comparable to ε.) t counts updates of the whole model."""

    def __init__(self, params, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.updates = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.updates += 1
        t = self.updates
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr_t = group["lr"] * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
            for p in group["params"]:
                # A parameter the loss does not reach keeps its value, as in Keras.
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["m"], state["v"]
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)


def train_step(model, optimizer, images, masks):
    """One training step (train-mode forward, loss, backward, Adam); the loss, not read
    back to the host."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = bce_dice_loss(model(images), masks)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------------
# Subcommands.


def add_post_process_args(p):
    """`rca-gpu infer`'s post-processing flags, with its defaults."""
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-area", type=int, default=64)
    p.add_argument("--min-relative-area", type=float, default=0.1)
    p.add_argument("--no-fill-holes", action="store_true")
    p.add_argument("--no-postprocess", action="store_true",
                   help="threshold only: no hole filling, no small-region removal")


def post_process_settings(args):
    if args.no_postprocess:
        return {"threshold": args.threshold, "fill": False, "min_area": 0, "min_relative_area": 0.0}
    return {"threshold": args.threshold, "fill": not args.no_fill_holes,
            "min_area": args.min_area, "min_relative_area": args.min_relative_area}


def post_process_flags(args):
    """The same settings as `rca-gpu infer` flags."""
    flags = ["--threshold", str(args.threshold), "--min-area", str(args.min_area),
             "--min-relative-area", str(args.min_relative_area)]
    if args.no_fill_holes:
        flags.append("--no-fill-holes")
    if args.no_postprocess:
        flags.append("--no-postprocess")
    return flags


def need_pillow():
    if Image is None:
        sys.exit("reading and writing images needs Pillow: pip install pillow")


def cmd_predict(args):
    need_pillow()
    model = OnnxModel(args.onnx) if args.onnx else load_checkpoint(args.checkpoint)
    files = collect_inputs(args.inputs)
    for f, mask in predict_to_folder(model, files, args.out, post_process_settings(args), args.batch):
        area = int(mask.sum())
        print(f"{f.stem}  {mask.shape[1]}x{mask.shape[0]}  lesion {area} px "
              f"({100.0 * area / mask.size:.2f} %)")
    what = (f"{args.onnx} (onnxruntime, S={model.input_size})" if args.onnx else
            f"the twin ({model.variant} F={model.width} S={model.input_size})")
    print(f"{len(files)} image(s) segmented by {what}; outputs in {args.out}", file=sys.stderr)


def read_png(path):
    with Image.open(path) as img:
        return np.asarray(img).astype(np.int16)


def cmd_check(args):
    need_pillow()
    files = collect_inputs(args.inputs)
    with tempfile.TemporaryDirectory(prefix="torch-twin-check-") as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        rust_dir, twin_dir = work / "rca-gpu", work / "twin"
        command = [args.rca_gpu, "infer", "--checkpoint", str(args.checkpoint),
                   "--out", str(rust_dir), *post_process_flags(args), *map(str, files)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
        model = OnnxModel(args.onnx) if args.onnx else load_checkpoint(args.checkpoint)
        for _ in predict_to_folder(model, files, twin_dir, post_process_settings(args)):
            pass
        print(f"{'image':<24} {'size':>9} {'mask px':>8} {'differ':>7} {'prob max |Δ|':>13} "
              f"{'prob px Δ':>10} {'overlay px Δ':>13}")
        any_mask_differs = jpeg_differs = False
        worst_prob = 0
        for f in files:
            out = {}
            for kind in ("mask", "prob", "overlay"):
                a = read_png(rust_dir / f"{f.stem}_{kind}.png")
                b = read_png(twin_dir / f"{f.stem}_{kind}.png")
                if a.shape != b.shape:
                    sys.exit(f"{f.stem}_{kind}.png: rca-gpu wrote {a.shape}, the twin {b.shape}")
                out[kind] = (a, b)
            mask_a, mask_b = out["mask"]
            prob_a, prob_b = out["prob"]
            over_a, over_b = out["overlay"]
            differ = int((mask_a != mask_b).sum())
            prob_delta = int(np.abs(prob_a - prob_b).max())
            any_mask_differs |= differ > 0
            worst_prob = max(worst_prob, prob_delta)
            jpeg = f.suffix.lower() in (".jpg", ".jpeg")
            jpeg_differs |= jpeg and differ > 0
            print(f"{f.stem + (' *' if jpeg else ''):<24} {mask_a.shape[1]:>4}x{mask_a.shape[0]:<4} "
                  f"{int((mask_a > 0).sum()):>8} {differ:>7} {prob_delta:>13} "
                  f"{int((prob_a != prob_b).sum()):>10} "
                  f"{int((over_a != over_b).any(axis=-1).sum()):>13}")
        verdict = "masks identical" if not any_mask_differs else "MASKS DIFFER"
        print(f"{len(files)} image(s): {verdict}; probability PNGs within {worst_prob} grey level(s)")
        if jpeg_differs:
            print("* JPEG: Pillow's decoder and rca-gpu's (zune-jpeg) differ by a grey level on "
                  "some pixels, which can move a mask boundary pixel")
    return 1 if any_mask_differs else 0


def cmd_check_train(args):
    """One training step on the same batch in rca-gpu and in the twin: rca-gpu trains one
    epoch from the checkpoint on a BUSI folder whose training split fits in one batch, so
    its epoch loss is the loss of that one step and its last.safetensors the weights after
    it."""
    need_pillow()
    with tempfile.TemporaryDirectory(prefix="torch-twin-train-") as tmp:
        run = Path(args.out or tmp) / "run"
        command = [args.rca_gpu, "train", "--data", str(args.data), "--format", "busi",
                   "--init", str(args.checkpoint), "--epochs", "1", "--batch", str(args.batch),
                   "--no-augment", "--bn-momentum", str(args.bn_momentum), "--out", str(run)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
        train = json.loads((run / "split.json").read_text())["train"]
        if len(train) > args.batch:
            sys.exit(f"the training split has {len(train)} images, more than one batch of "
                     f"{args.batch}: use a smaller data set or a larger --batch")
        rust_loss = json.loads((run / "metrics.json").read_text())[0]["train_loss"]
        after = load_file(str(run / "last.safetensors"))
        lr = json.loads((run / "config.json").read_text())["lr"]

    model = load_checkpoint(args.checkpoint, args.bn_momentum)
    s = model.input_size
    images, masks = [], []
    for name in train:
        path = Path(args.data) / name
        grey = load_image_gray(path)
        images.append(preprocess_image(grey, s))
        mask = np.zeros(grey.shape, bool)
        for m in busi_masks(path):
            mask |= load_mask(m)
        masks.append(preprocess_mask(mask, s))
    images, masks = (torch.from_numpy(np.stack(planes)[:, None]) for planes in (images, masks))
    loss = train_step(model, KerasAdam(model.parameters(), lr=lr), images, masks).item()

    twin = model.state_dict()
    trainable = {n for n, _ in model.named_parameters()}
    delta = {n: np.abs(twin[n].numpy() - after[n]) for n in after}
    running_delta = max(float(d.max()) for n, d in delta.items() if n not in trainable)
    weights = np.concatenate([d.ravel() for n, d in delta.items() if n in trainable])
    far = int((weights > 1e-5).sum())
    loss_ok = abs(loss - rust_loss) <= 1e-5 * abs(rust_loss)
    print(f"{len(train)} training images at {s}×{s}, one step from {args.checkpoint}")
    print(f"loss: twin {loss:.8f}, rca-gpu {rust_loss:.8f} (|Δ| = {abs(loss - rust_loss):.2e})")
    print(f"after the step: BN running statistics max |Δ| = {running_delta:.2e}; "
          f"{far} of {weights.size} trainable values differ by more than 1e-5 "
          f"(max {weights.max():.2e})")
    # Adam's first step is about ±lr wherever |g| ≫ ε, so a gradient that is zero up to
    # rounding may step either way in the two engines: a few such values are expected.
    return 0 if loss_ok and running_delta <= 1e-4 and far <= 1e-3 * weights.size else 1


def cmd_time(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = RcaIUnet(args.variant, args.width, args.size).to(device)
    images = torch.rand(args.batch, 1, args.size, args.size, device=device)
    if args.train:
        masks = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.7).float()
        optimizer = KerasAdam(model.parameters())

        def work():
            train_step(model, optimizer, images, masks)
    else:
        model.eval()

        def work():
            with torch.no_grad():
                model(images)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # One untimed run: allocator warm-up and lazy kernel selection (oneDNN, cuDNN).
    work()
    sync()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        work()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({
        "task": "train" if args.train else "infer", "variant": args.variant,
        "size": args.size, "width": args.width, "batch": args.batch,
        "threads": args.threads, "device": str(device), "reps": args.reps,
        "median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3), "torch": torch.__version__,
    }))


class Probability(nn.Module):
    """What the ONNX model computes: image → sigmoid(logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return torch.sigmoid(self.model(image))


def cmd_export_onnx(args):
    model = load_checkpoint(args.checkpoint)
    s = model.input_size
    wrapped = Probability(model).eval()
    torch.manual_seed(0)
    example = torch.rand(2, 1, s, s)
    # One self-contained file (weights inside), any batch size; S is fixed by the model.
    torch.onnx.export(wrapped, (example,), args.out, input_names=["image"],
                      output_names=["probability"], dynamo=True, external_data=False,
                      dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1)}})
    print(f"wrote {args.out}: image (N, 1, {s}, {s}) in [0, 1] → probability (N, 1, {s}, {s})")
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: the exported model was not checked")
        return 0
    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3):
        x = torch.rand(n, 1, s, s)
        with torch.no_grad():
            want = wrapped(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"onnxruntime vs twin, batches 1 and 3: max |Δprobability| = {worst:.2e}")
    return 0 if worst < 1e-4 else 1


def cmd_params(args):
    total, trainable, running = parameter_counts(RcaIUnet(args.variant, args.width))
    print(f"Total params: {total:,}")
    print(f"Trainable params: {trainable:,}")
    print(f"Non-trainable params: {running:,} (BN running mean and variance)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment images like `rca-gpu infer`")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an rca-gpu checkpoint, run by the twin")
    source.add_argument("--onnx", help="a file from export-onnx, run by onnxruntime")
    p.add_argument("--out", default="predictions")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    add_post_process_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("check", help="compare the twin's outputs with `rca-gpu infer`'s")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", help="compare this file from export-onnx (run by onnxruntime) "
                   "instead of the twin")
    p.add_argument("--rca-gpu", default="target/release/rca-gpu", help="the rca-gpu binary")
    p.add_argument("--out", help="keep both sets of outputs in this folder")
    add_post_process_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("check-train", help="compare one training step with rca-gpu's")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True,
                   help="a BUSI-layout folder whose training split fits in one batch")
    p.add_argument("--rca-gpu", default="target/release/rca-gpu", help="the rca-gpu binary")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--bn-momentum", type=float, default=BN_MOMENTUM)
    p.add_argument("--out", help="keep rca-gpu's run folder here")
    p.set_defaults(run=cmd_check_train)

    p = sub.add_parser("time", help="time inference or a training step")
    p.add_argument("--variant", default="rca-iunet", choices=list(VARIANTS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda where torch has it")
    p.add_argument("--train", action="store_true", help="time a training step instead")
    p.set_defaults(run=cmd_time)

    p = sub.add_parser("export-onnx", help="export a checkpoint to ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="model.onnx")
    p.set_defaults(run=cmd_export_onnx)

    p = sub.add_parser("params", help="parameter totals of a variant and width")
    p.add_argument("--variant", default="rca-iunet", choices=list(VARIANTS))
    p.add_argument("--width", type=int, default=16)
    p.set_defaults(run=cmd_params)

    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())

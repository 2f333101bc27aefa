#!/usr/bin/env python3
"""Open an rca-gpu checkpoint with the Python `safetensors` package (pip install safetensors
numpy), verify its SHA-256 the way rca-gpu computes it, and print its metadata and totals.

    python3 tools/check_checkpoint.py runs/NAME/best.safetensors
"""
import hashlib
import json
import sys

from safetensors import safe_open
from safetensors.numpy import load_file


def main(path):
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(path)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(tensors[name].astype("<f4").tobytes())
    ok = digest.hexdigest() == meta.get("sha256")
    running = sum(t.size for n, t in tensors.items() if n.endswith(("running_mean", "running_var")))
    total = sum(t.size for t in tensors.values())
    print(f"{path}: {meta.get('format')} v{meta.get('format_version')}, variant {meta.get('variant')}, "
          f"F={meta.get('width')}, input {meta.get('input_size')}, epoch {meta.get('epoch')}")
    print(f"{len(tensors)} tensors, {total:,} values ({total - running:,} trainable, {running:,} BN running statistics)")
    print(f"sha256 {'matches' if ok else 'DOES NOT MATCH'}; history: {json.loads(meta.get('history', 'null'))}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

#!/usr/bin/env python3
"""Time rca-gpu and its PyTorch twin (tools/torch_twin.py) on the same network, back to back
in one run, and print the ratios: inference and a training step (forward, loss, backward,
Adam), at each size and batch asked.

    pip install torch numpy safetensors
    cargo build --release
    python3 tools/side_by_side.py                      # 256² and 128², batch 1 and 8
    python3 tools/side_by_side.py --sizes 128 --batches 1 --reps 2

Each configuration runs rca-gpu (`rca-gpu bench`, median wall time) and then the twin
(`torch_twin.py time`, median wall time, `--threads` CPU threads) before the next one, so
the two sides of a ratio see the same machine state. Measure on an otherwise idle machine.
A Markdown table goes to stdout; `--json` also writes every figure with the adapter, the
driver and the torch version.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent


def rca_gpu(binary, size, width, batch, reps, task):
    """Median wall ms per batch of `rca-gpu bench` for one task, and the batch it ran (a
    training batch is lowered when the adapter cannot bind it)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [binary, "bench", "--size", str(size), "--width", str(width),
               "--batches", str(batch), "--train-batch", str(batch), "--reps", str(reps),
               "--json", str(out)]
        cmd.append("--no-train" if task == "inference" else "--no-infer")
        subprocess.run(cmd, check=True, capture_output=True)
        report = json.loads(out.read_text())
    (result,) = [r for r in report["results"] if r["task"] == task]
    return result["wall_ms"]["median"], result["batch"], report


def torch_twin(size, width, batch, reps, threads, task):
    """Median wall ms per batch of the twin, and its report."""
    cmd = [sys.executable, str(TOOLS / "torch_twin.py"), "time", "--size", str(size),
           "--width", str(width), "--batch", str(batch), "--reps", str(reps),
           "--threads", str(threads)]
    if task == "training":
        cmd.append("--train")
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(line.strip().splitlines()[-1])
    return report["median_ms"], report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rca-gpu", default="target/release/rca-gpu", help="the rca-gpu binary")
    p.add_argument("--sizes", default="256,128", help="input sides, comma-separated")
    p.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    p.add_argument("--width", type=int, default=16, help="base width F")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    if not Path(args.rca_gpu).exists():
        sys.exit(f"{args.rca_gpu}: no such binary (cargo build --release first)")

    rows, adapter, torch_version = [], None, None
    for size in map(int, args.sizes.split(",")):
        for batch in map(int, args.batches.split(",")):
            for task in ("inference", "training"):
                ours, ran, report = rca_gpu(args.rca_gpu, size, args.width, batch,
                                            args.reps, task)
                theirs, treport = torch_twin(size, args.width, ran, args.reps,
                                             args.threads, task)
                adapter = f"{report['adapter']} ({report['backend']}, {report['driver']})"
                torch_version = treport["torch"]
                rows.append({"task": task, "size": size, "batch_asked": batch, "batch": ran,
                             "rca_gpu_ms": round(ours, 1), "pytorch_ms": round(theirs, 1),
                             "ratio": round(ours / theirs, 2)})
                print(f"{task} {size}² batch {ran}: rca-gpu {ours:.1f} ms, "
                      f"PyTorch {theirs:.1f} ms", file=sys.stderr)

    print(f"RCA-IUnet F={args.width}; rca-gpu on {adapter}; PyTorch {torch_version} CPU, "
          f"{args.threads} threads; median of {args.reps}; "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}\n")
    print("| task | size | batch | PyTorch ms | rca-gpu ms | rca-gpu / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        batch = r["batch"] if r["batch"] == r["batch_asked"] else \
            f"{r['batch']} (asked {r['batch_asked']})"
        print(f"| {r['task']} | {r['size']}² | {batch} | {r['pytorch_ms']:.1f} | "
              f"{r['rca_gpu_ms']:.1f} | {r['ratio']:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "adapter": adapter, "torch": torch_version, "threads": args.threads,
            "width": args.width, "reps": args.reps, "date": time.strftime("%Y-%m-%d"),
            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

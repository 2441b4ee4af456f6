#!/usr/bin/env python3
"""PyTorch's cross-entropy on the GPU, side by side with rift's fused loss kernels (bench/run.ts --only cuda).

    python3 scripts/torch_loss_bench.py [--N 8192] [--V 151936] [--iters 20] [--out FILE]

The same problem as the fused SFT kernel's benchmark: bf16 logits (N, V), one target per row, token-mean loss,
forward + backward to the logits' gradient (the gradient the fused kernel writes). Cases:
  eager-bf16      F.cross_entropy on the bf16 logits (PyTorch's own bf16 log-softmax + NLL)
  eager-fp32      F.cross_entropy(logits.float()), the upcast HF's causal-LM loss does
  compiled-bf16   torch.compile of the bf16 case (inductor; fuses what it can)
  compiled-fp32   torch.compile of the upcast case
Each case: 3 warm-ups (compilation happens there and is reported apart), then --iters timed calls between CUDA
events, each ending with the gradient materialised; median and min in ms, GB/s counted as rift's benchmark
counts (4·N·V bytes: read the bf16 logits once, write the bf16 gradient once), and the peak memory above the
inputs. A case that fails (compile error, out of memory) is recorded and the script goes on; exit status 0.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, iters):
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, default=8192)
    ap.add_argument("--V", type=int, default=151936)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--cases", default="eager-bf16,eager-fp32,compiled-bf16,compiled-fp32")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.N < 1 or args.V < 2 or args.iters < 1:
        ap.error("--N >= 1, --V >= 2, --iters >= 1")
    doc = {"kind": "torch-loss", "torch": torch.__version__, "N": args.N, "V": args.V, "dtype": "bf16",
           "bytes": 4 * args.N * args.V, "bytesNote": "read N×V bf16 logits + write N×V bf16 gradient", "runs": []}
    if not torch.cuda.is_available():
        doc["skipped"] = "no CUDA device visible to torch"
        print(json.dumps(doc, indent=2))
        return 0
    doc["gpu"] = torch.cuda.get_device_name(0)
    N, V = args.N, args.V
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.rand(N, V, device="cuda", generator=g) * 8 - 4).to(torch.bfloat16)
    targets = torch.randint(0, V, (N,), device="cuda", generator=g)
    logits[torch.arange(N, device="cuda"), targets] = 14.0  # as rift's benchmark data: the target logit is 14
    z = logits.detach().requires_grad_(True)

    def ce_bf16(x, t):
        return F.cross_entropy(x, t)

    def ce_fp32(x, t):
        return F.cross_entropy(x.float(), t)

    fns = {"eager-bf16": ce_bf16, "eager-fp32": ce_fp32}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        r = {"case": name}
        try:
            if name.startswith("compiled-"):
                base = fns["eager-" + name.split("-", 1)[1]]
                fn = torch.compile(base)
            else:
                fn = fns[name]

            def step():
                z.grad = None
                loss = fn(z, targets)
                loss.backward()
                return loss

            torch.cuda.synchronize()
            t0 = time.time()
            loss = step()
            torch.cuda.synchronize()
            first = time.time() - t0
            for _ in range(2):
                step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_mem = torch.cuda.memory_allocated()
            times = timed(step, args.iters)
            med = times[len(times) // 2]
            r.update({"ok": True, "medianMs": round(med, 4), "minMs": round(times[0], 4),
                      "firstCallSeconds": round(first, 2), "gbps": round(doc["bytes"] / (med * 1e-3) / 1e9, 1),
                      "loss": float(loss), "gradDtype": str(z.grad.dtype),
                      "peakExtraGB": round((torch.cuda.max_memory_allocated() - base_mem) / 2**30, 3)})
        except Exception as e:  # noqa: BLE001 — record every failure, go on with the next case
            r.update({"ok": False, "error": type(e).__name__, "detail": str(e).split("\n")[0][:400]})
        doc["runs"].append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

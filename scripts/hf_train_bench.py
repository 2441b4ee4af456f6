#!/usr/bin/env python3
"""HF transformers training-step baseline for the engine's CUDA benchmark (bench/train.ts benchTrainCuda).

Runs on the lent GPU machine (torch + transformers, no network):

    python3 scripts/hf_train_bench.py [--out FILE] [--T 4096] [--steps 3] [--attn eager,sdpa]

Model: a random-init Qwen2ForCausalLM of the Qwen2.5-1.5B shape (hidden 1536, intermediate 8960, 28 layers,
12 / 2 heads, head_dim 128, vocab 151936, tied, q/k/v bias, rope_theta 1e6). Numerics: **fp32 master weights
under torch.autocast(bfloat16)**, i.e. GEMM operands rounded to bf16 with fp32 accumulation, fp32 gradients,
torch.optim.AdamW(fused=True) with fp32 state — the same numerics as the engine's precision 'bf16' (a pure-bf16
model with an fp32 master copy would be an extra weight copy and an extra cast per step; autocast is the
standard torch recipe for this). Gradient checkpointing is OFF (the engine keeps every activation too).

A step = forward + SFT token-mean loss (every position but the last of the row has its next token as target) +
backward + clip_grad_norm_(1.0) + AdamW step + zero_grad(set_to_none=True): the same work as bench/train.ts.
1 warm-up step, then --steps timed steps, each between CUDA events after a synchronize.

FLOPs per token (bench/train.ts's convention, reused exactly): 6·P_matmul + 6·L·Hq·D·(T+1), where P_matmul = every
parameter of a *_proj module (weights and their biases) + the lm_head matrix (tied: the embedding, V·C); the
embedding lookup is not a matmul. MFU = achieved FLOP/s ÷ 989e12 (H100 SXM dense bf16; the H200 has the same
tensor cores), and ÷ the bf16 GEMM peak measured here (torch.matmul 8192³, best of 10). Memory: torch.cuda.max_memory_allocated over the warm-up and timed steps.

Each attention implementation (default: eager — the HF baseline asked for — then sdpa, which uses
flash/memory-efficient kernels) runs in its own try block: a CUDA out-of-memory error is recorded in the JSON and
the script goes on and exits 0. The JSON goes to stdout and to --out.
"""

import argparse
import datetime
import gc
import json
import os
import re
import sys
import time

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

PEAK_BF16_DENSE = 989e12
SHAPE = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
             num_attention_heads=12, num_key_value_heads=2, head_dim=128, max_position_embeddings=32768,
             rms_norm_eps=1e-6, tie_word_embeddings=True)
ROPE_THETA = 1000000.0
SEED = 1


def make_config(attn):
    common = dict(SHAPE, attn_implementation=attn, use_sliding_window=False)
    if int(transformers.__version__.split(".")[0]) >= 5:
        return Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA})
    return Qwen2Config(**common, rope_theta=ROPE_THETA)


def matmul_params(model, cfg):
    """bench/train.ts: P − Σ(tensors that are neither '_proj.' nor 'lm_head*') + (tied ? V·C : 0)."""
    p = sum(t.numel() for n, t in model.named_parameters() if "_proj." in n or n.startswith("lm_head"))
    if cfg.tie_word_embeddings:
        p += cfg.vocab_size * cfg.hidden_size
    return p


def matmul_peak(n=8192, reps=10):
    """Measured dense bf16 GEMM peak (torch.matmul, n³, best of `reps` after 3 warm-ups), FLOP/s."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / best


def run_one(attn, B, T, steps, lr, measured_peak):
    torch.manual_seed(SEED)
    cfg = make_config(attn)
    result = {"attention": attn, "B": B, "T": T, "numerics": "fp32 master + torch.autocast(bfloat16), fused AdamW fp32 state",
              "gradientCheckpointing": False}
    model = opt = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with torch.device("cuda"):
            model = Qwen2ForCausalLM(cfg)
        model = model.to(device="cuda", dtype=torch.float32)
        model.train()
        if getattr(model, "is_gradient_checkpointing", False):
            model.gradient_checkpointing_disable()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=True)
        P = sum(t.numel() for t in model.parameters())
        Pm = matmul_params(model, cfg)
        D = cfg.head_dim
        attn_per_token = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * D * (T + 1)
        g = torch.Generator(device="cuda").manual_seed(SEED)
        ids = torch.randint(0, cfg.vocab_size, (B, T), device="cuda", generator=g)
        targets = torch.full_like(ids, -100)
        targets[:, :-1] = ids[:, 1:]

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=ids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(B * T, -1), targets.reshape(-1), ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        t0 = time.time()
        loss = step()  # warm-up: allocates grads, optimizer state, cuBLAS workspaces
        torch.cuda.synchronize()
        warm = time.time() - t0
        times = []
        for _ in range(steps):
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            loss = step()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        med = times[len(times) // 2]
        tok_s = B * T / (med / 1e3)
        flops6p, flops_all = 6 * Pm * tok_s, (6 * Pm + attn_per_token) * tok_s
        result.update({
            "ok": True, "params": P, "matmulParams": Pm, "tokensPerStep": B * T,
            "stepMs": round(med, 2), "stepMsAll": [round(t, 2) for t in times], "warmupSeconds": round(warm, 2),
            "tokensPerSec": round(tok_s, 1),
            "tflops6P": round(flops6p / 1e12, 2), "tflopsWithAttention": round(flops_all / 1e12, 2),
            "mfu6P": round(flops6p / PEAK_BF16_DENSE, 4), "mfuWithAttention": round(flops_all / PEAK_BF16_DENSE, 4),
            "mfuWithAttentionVsMeasured": round(flops_all / measured_peak, 4) if measured_peak else None,
            "loss": float(loss), "maxMemoryAllocatedGB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "maxMemoryReservedGB": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        })
    except torch.cuda.OutOfMemoryError as e:
        result.update({"ok": False, "error": "CUDA out of memory", "detail": str(e).split("\n")[0][:500],
                       "maxMemoryAllocatedGB": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
    except RuntimeError as e:  # cuBLAS / CUDA errors other than OOM: record, keep going
        result.update({"ok": False, "error": type(e).__name__, "detail": str(e).split("\n")[0][:500]})
    finally:
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--attn", default="eager,sdpa", help="comma-separated attn_implementation values")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/hf-train-<gpu>-<date>.json)")
    args = ap.parse_args()
    if args.B < 1 or args.T < 2 or args.steps < 1:
        ap.error("--B >= 1, --T >= 2 and --steps >= 1 are required")
    doc = {"kind": "hf-train", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
           "shape": "qwen2.5-1.5b", "config": dict(SHAPE, rope_theta=ROPE_THETA), "peakFlops": PEAK_BF16_DENSE,
           "flops": "6·P_matmul per token (+ causal attention 6·L·Hq·D·(T+1)), as bench/train.ts", "runs": []}
    if not torch.cuda.is_available():
        doc["skipped"] = "no CUDA device visible to torch"
        gpu = "none"
    else:
        gpu = torch.cuda.get_device_name(0)
        doc["gpu"] = gpu
        doc["memoryGB"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        torch.backends.cuda.matmul.allow_tf32 = True  # only fp32 GEMMs outside autocast (none in the step)
        try:
            peak = matmul_peak()
            doc["measuredBf16MatmulTflops"] = round(peak / 1e12, 1)
        except RuntimeError as e:
            peak = None
            doc["measuredBf16MatmulError"] = str(e).split("\n")[0][:300]
        for attn in [a.strip() for a in args.attn.split(",") if a.strip()]:
            r = run_one(attn, args.B, args.T, args.steps, 1e-5, peak)
            doc["runs"].append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")[:40]
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "results",
                                   f"hf-train-{slug}-{doc['date'][:10]}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(json.dumps(doc, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

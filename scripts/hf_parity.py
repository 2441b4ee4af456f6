#!/usr/bin/env python3
"""HF transformers reference for the engine's GPU parity check (bench/gpu-parity.ts reads what this writes).

Runs on the lent GPU machine (torch + transformers + safetensors, no network):

    python3 scripts/hf_parity.py --shape tiny          --out /tmp/rift-hf/tiny
    python3 scripts/hf_parity.py --shape qwen2.5-1.5b  --out /tmp/rift-hf/qwen2.5-1.5b
    node dist/bench/gpu-parity.js /tmp/rift-hf/qwen2.5-1.5b --device cuda

It builds a seeded random-init Qwen2ForCausalLM of the named shape in float32 (eager attention), saves it with
save_pretrained to <out>/model/ (config.json + model.safetensors), runs one fixed seeded batch through forward +
SFT token-mean loss + backward in float32 on the GPU (CPU when there is none) with TF32 disabled, and writes

    <out>/ref.safetensors   ids, targets, logits_index, logits_rows, token_logps, loss, grad.<every HF param>
    <out>/ref.json          shape, batch, the float64 loss, the gradient scale, tolerances, versions, timings

in the format documented at the top of bench/gpu-parity.ts (every tensor F32; ids/targets are integers < 2^24,
exact in F32). The batch: ids uniform in [0, V) from a seeded generator; HF labels = ids with the first `prompt`
positions set to -100; the engine's per-row targets are those labels shifted by one (targets[b, t] =
labels[b, t + 1], -100 at t = T - 1), and the loss is cross_entropy(logits, targets, ignore_index=-100) with the
mean over kept rows, which is exactly HF's shifted causal-LM loss.

Initialisation: every weight and bias ~ N(0, std), every RMSNorm weight ~ 1 + N(0, 0.1) (so biases and norm
weights carry non-trivial numbers), from torch.Generator seeds; std = 0.2 for tiny (as the checked-in fixture),
0.02 (HF's initializer_range) for qwen2.5-1.5b. Tied embeddings: one parameter, its gradient sums both uses.

Every check raises (exit status 1); nothing relies on `assert`.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

IGNORE = -100
FORMAT, VERSION = "rift-hf-parity", 1

# name: (config kwargs, batch, init std, logits rows (None = all), tolerances for bench/gpu-parity.ts)
# Tolerances, fp32 engine vs fp32 torch with TF32 off (metric: max|engine - ref| / max|ref| per tensor; grads
# against max(max|ref|, gradFloor * max over all grads)): different summation orders give ~sqrt(K)*2^-24 relative
# error per dot product (6e-6 at K = 8960), growing through the layers to ~1e-5..1e-4; the grad bound 1e-3 keeps
# 10x margin and stays 4x below one bf16 rounding (2^-8), so a bf16 GEMM leaking into fp32 fails. Logits of the
# 28-layer model get 2e-4 (tiny: 1e-4, the checked-in fixture's bound); the loss 2e-5 relative (tiny: 1e-5).
SHAPES = {
    "tiny": dict(
        config=dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                    rms_norm_eps=1e-6, tie_word_embeddings=True, rope_theta=10000.0),
        B=2, T=12, prompt=3, std=0.2, rows=None,
        tolerances=dict(logits=1e-4, tokenLogps=1e-4, loss=1e-5, grad=1e-3, gradFloor=1e-3)),
    "qwen2.5-1.5b": dict(
        config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                    num_attention_heads=12, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
                    rms_norm_eps=1e-6, tie_word_embeddings=True, rope_theta=1000000.0),
        B=1, T=512, prompt=8, std=0.02, rows=[0, 1, 128, 256, 510, 511],
        tolerances=dict(logits=2e-4, tokenLogps=2e-4, loss=2e-5, grad=1e-3, gradFloor=1e-3)),
}
SEED = 1234


def check(cond, msg):
    if not cond:
        raise RuntimeError("check failed: " + msg)


def make_config(kw):
    kw = dict(kw)
    theta = kw.pop("rope_theta")
    common = dict(kw, attn_implementation="eager", use_sliding_window=False)
    # transformers 5 keeps RoPE settings in rope_parameters; 4.x takes rope_theta.
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        cfg = Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": theta})
    else:
        cfg = Qwen2Config(**common, rope_theta=theta)
    return cfg, theta


def build_model(spec, device):
    cfg, theta = make_config(spec["config"])
    torch.manual_seed(SEED)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg)
    model = model.to(device=device, dtype=torch.float32)
    model.eval()  # no dropout either way
    check(model.config._attn_implementation == "eager", f"attention is {model.config._attn_implementation!r}")
    if cfg.tie_word_embeddings and model.lm_head.weight is not model.model.embed_tokens.weight:
        model.tie_weights()
    check((model.lm_head.weight is model.model.embed_tokens.weight) == cfg.tie_word_embeddings, "embedding tie")
    g = torch.Generator(device=device).manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            check(p.dtype == torch.float32, f"{name} is {p.dtype}")
            noise = torch.randn(p.shape, generator=g, device=device, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(spec["std"] * noise)
    # RoPE must have reached the rotary embedding: inv_freq = theta^(-2i/d).
    d = cfg.head_dim if getattr(cfg, "head_dim", None) else cfg.hidden_size // cfg.num_attention_heads
    want = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(torch.float32) / d))
    inv = [b for n, b in model.named_buffers() if n.endswith("inv_freq")]
    check(len(inv) > 0, "no inv_freq buffer")
    for b in inv:
        check(torch.allclose(b.float().cpu(), want, rtol=1e-6, atol=0), f"inv_freq does not match rope_theta={theta}")
    return model, cfg


def make_batch(spec, vocab):
    B, T, prompt = spec["B"], spec["T"], spec["prompt"]
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, vocab, (B, T), generator=g, dtype=torch.int64)
    labels = ids.clone()
    labels[:, :prompt] = IGNORE
    targets = torch.full((B, T), IGNORE, dtype=torch.int64)
    targets[:, :-1] = labels[:, 1:]
    return ids, labels, targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--out", required=True, help="output folder (model/, ref.safetensors, ref.json)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    args = ap.parse_args()
    t_start = time.time()
    spec = SHAPES[args.shape]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # fp32 everywhere, TF32 off: the reference is plain IEEE fp32 math.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_default_dtype(torch.float32)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    dev_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(f"python {sys.version.split()[0]}  torch {torch.__version__}  transformers {transformers.__version__}  "
          f"device {dev_name}  shape {args.shape}", flush=True)

    t0 = time.time()
    model, cfg = build_model(spec, device)
    n_params = sum(p.numel() for p in model.parameters())
    t_build = time.time() - t0
    ids, labels, targets = make_batch(spec, cfg.vocab_size)
    B, T, V = spec["B"], spec["T"], cfg.vocab_size

    t0 = time.time()
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids.to(device), use_cache=False).logits  # (B, T, V) fp32
    check(tuple(logits.shape) == (B, T, V) and logits.dtype == torch.float32, f"logits {tuple(logits.shape)} {logits.dtype}")
    flat = logits.reshape(B * T, V)
    tgt = targets.reshape(-1).to(device)
    loss = torch.nn.functional.cross_entropy(flat, tgt, ignore_index=IGNORE, reduction="mean")
    loss.backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_fwd_bwd = time.time() - t0

    with torch.no_grad():
        keep = tgt != IGNORE
        n_kept = int(keep.sum())
        check(n_kept == B * (T - spec["prompt"]), f"{n_kept} targets, want {B * (T - spec['prompt'])}")
        logp = torch.log_softmax(flat.double(), dim=-1)
        safe = torch.where(keep, tgt, torch.zeros_like(tgt))
        token_logps = torch.where(keep, logp.gather(1, safe.unsqueeze(1)).squeeze(1), torch.zeros((), dtype=torch.float64, device=device))
        loss64 = float(-token_logps.sum() / n_kept)
        check(abs(float(loss) - loss64) <= 1e-5 * abs(loss64), f"fp32 loss {float(loss)} vs float64 {loss64}")
        # HF's own shifted causal-LM loss on the labels is the same number (transformers >= 4.46 has loss_function).
        hf_loss = None
        if hasattr(model, "loss_function"):
            hf_loss = float(model.loss_function(logits=logits, labels=labels.to(device), vocab_size=V))
            check(abs(hf_loss - float(loss)) <= 1e-5 * abs(loss64), f"HF loss_function {hf_loss} vs {float(loss)}")
        rows = list(range(B * T)) if spec["rows"] is None else spec["rows"]
        logits_rows = flat[rows].float().cpu()
        del logp, logits, flat

    t0 = time.time()
    # safetensors (the default in 4.x, the only format in 5.x), one file: the 1.5B fp32 model is 6.2 GB, over the
    # 5 GB default shard size of 4.x (the engine reads sharded checkpoints too; one file is one open and one read)
    model.save_pretrained(os.path.join(out, "model"), max_shard_size="20GB")
    t_save_model = time.time() - t0

    t0 = time.time()
    tensors = {
        "ids": ids.float(),
        "targets": targets.float(),
        "logits_index": torch.tensor(rows, dtype=torch.float32),
        "logits_rows": logits_rows.contiguous(),
        "token_logps": token_logps.float().cpu(),
        "loss": torch.tensor([float(loss)], dtype=torch.float32),
    }
    grad_abs_max = 0.0
    names = []
    for name, p in model.named_parameters():
        check(p.grad is not None, f"no gradient for {name}")
        g = p.grad.detach()
        check(bool(torch.isfinite(g).all()), f"non-finite gradient for {name}")
        grad_abs_max = max(grad_abs_max, float(g.abs().max()))
        tensors["grad." + name] = g.float().cpu().contiguous()
        p.grad = None  # the host copy is all that is needed: free GPU memory as we go
        names.append(name)
    check(grad_abs_max > 0, "every gradient is zero")
    # One pass over ~6 GB of fp32 gradients for the 1.5B shape (fine on the 64 GB disk).
    save_file(tensors, os.path.join(out, "ref.safetensors"), metadata={"format": FORMAT, "version": str(VERSION)})
    t_save_ref = time.time() - t0

    meta = {
        "format": FORMAT, "version": VERSION, "shape": args.shape,
        "B": B, "T": T, "prompt": spec["prompt"], "seed": SEED, "initStd": spec["std"],
        "loss": loss64, "lossFp32": float(loss), "lossHf": hf_loss, "targets": n_kept,
        "gradAbsMax": grad_abs_max, "numParams": n_params, "gradTensors": len(names),
        "logitsRows": rows,
        "tolerances": spec["tolerances"],
        "tolerancesNote": "fp32 vs fp32 (TF32 off): rel = max|engine-ref|/max|ref| per tensor; grads against "
                          "max(max|ref|, gradFloor*gradAbsMax); 1e-3 sits 10x above fp32 reordering noise and 4x "
                          "below one bf16 rounding (2^-8)",
        "producer": {"script": "scripts/hf_parity.py", "python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "device": dev_name, "tf32": False,
                     "attention": "eager", "dtype": "float32"},
        "seconds": {"build": round(t_build, 2), "forwardBackward": round(t_fwd_bwd, 2),
                    "saveModel": round(t_save_model, 2), "saveRef": round(t_save_ref, 2),
                    "total": round(time.time() - t_start, 2)},
    }
    with open(os.path.join(out, "ref.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    size = os.path.getsize(os.path.join(out, "ref.safetensors"))
    print(f"{args.shape}: params {n_params:,}  loss {loss64:.9f}  grad |max| {grad_abs_max:.3e}  "
          f"ref.safetensors {size / 2**20:.1f} MiB  seconds {json.dumps(meta['seconds'])}", flush=True)
    check(math.isfinite(loss64), "loss is not finite")


if __name__ == "__main__":
    main()

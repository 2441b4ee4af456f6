#!/usr/bin/env python3
"""Make the HF-transformers parity fixtures for the rift decoder engine.

Run once, on a machine with torch 2.x and transformers 5.x (CPU is enough; no GPU, no network):

    python3 scripts/make_parity_fixture.py --out test/fixtures/parity

It builds two tiny *random* (untrained) float32 models on the CPU with a fixed seed, a Qwen2 (tied embeddings,
q/k/v biases) and a Llama (untied, no biases), saves each with `save_pretrained` (config.json +
model.safetensors), runs one forward + backward on a fixed batch with prompt-masked labels, and writes
<out>/tiny-qwen2.bin and <out>/tiny-llama.bin in the RIFTPAR1 format described in <out>/FORMAT.md:
input_ids, labels, logits, loss, hidden_last and the gradient of every parameter.

No tokenizer is written: the engine tests feed token ids directly.

Every check raises (exit status 1); nothing here relies on `assert`, so `python -O` checks the same.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SEED = 1234
B, T = 2, 12            # batch rows, tokens per row
PROMPT = 3              # labels[:, :PROMPT] = -100 (prompt masking)
IGNORE = -100
MAX_BIN_BYTES = 200_000

MAGIC = b"RIFTPAR1"
VERSION = 1
DT_F32, DT_I32, DT_F64 = 0, 1, 2
NP_DTYPE = {DT_F32: "<f4", DT_I32: "<i4", DT_F64: "<f8"}   # explicit little-endian

# Keys the engine's config reader needs (docs: docs/design.md §3.1). rope theta is checked separately because
# transformers 5 writes it as rope_parameters.rope_theta, older checkpoints as top-level rope_theta.
CONFIG_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings"]


def check(cond, msg):
    if not cond:
        raise RuntimeError("check failed: " + msg)


# ----------------------------------------------------------------------------------------------------------
# models

def make_configs():
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  attn_implementation="eager")
    # transformers 5: RoPE settings live in `rope_parameters` (the old `rope_theta=` kwarg is only a BC shim);
    # rope_type "default" = plain RoPE, no scaling.
    qwen2 = Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    llama = LlamaConfig(**common, rms_norm_eps=1e-5, tie_word_embeddings=False,
                        attention_bias=False, mlp_bias=False,
                        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    return [
        # name,        class,            config, rope theta, tied
        ("tiny-qwen2", Qwen2ForCausalLM, qwen2, 10000.0, True),
        ("tiny-llama", LlamaForCausalLM, llama, 500000.0, False),
    ]


def build_model(cls, config, theta, tied):
    torch.manual_seed(SEED)
    model = cls(config).to(dtype=torch.float32)
    model.eval()  # dropout is 0 anyway; eval() makes it explicit

    check(model.config._attn_implementation == "eager",
          f"attn implementation is {model.config._attn_implementation!r}, want 'eager'")

    # transformers 5 ties in post_init(); tie again only if that did not happen. The tie must be the same
    # Parameter object, so that named_parameters() lists it once and its .grad sums both uses.
    if tied and model.lm_head.weight is not model.model.embed_tokens.weight:
        model.tie_weights()
    emb = model.model.embed_tokens.weight
    check((model.lm_head.weight is emb) == tied,
          f"lm_head tied to embed_tokens is {model.lm_head.weight is emb}, want {tied}")

    # Re-initialise every parameter so that every code path carries non-trivial numbers (HF's init leaves
    # biases at 0 and norm weights at 1): weights and biases ~ N(0, 0.2), RMSNorm weights ~ 1 + N(0, 0.1).
    # named_parameters() lists a tied tensor once, so the tie survives.
    with torch.no_grad():
        for name, p in model.named_parameters():
            check(p.dtype == torch.float32, f"{name} is {p.dtype}")
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))

    names = [n for n, _ in model.named_parameters()]
    check(("lm_head.weight" in names) != tied, f"lm_head.weight listed: {'lm_head.weight' in names}")
    if isinstance(model, Qwen2ForCausalLM):
        check("model.layers.0.self_attn.q_proj.bias" in names, "Qwen2 has no q_proj bias")
    else:
        check(not any(n.endswith(".bias") for n in names), "Llama has a bias")

    # The config must have reached the rotary embedding: plain RoPE inv_freq = theta^(-2i/d).
    head_dim = config.hidden_size // config.num_attention_heads
    want = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
    inv = [(n, b) for n, b in model.named_buffers() if n.endswith("inv_freq")]
    check(len(inv) > 0, "no inv_freq buffer found")
    for n, b in inv:
        check(b.shape == want.shape and torch.allclose(b.float().cpu(), want, rtol=1e-6, atol=0),
              f"{n} does not match rope_theta={theta}")
    return model


# ----------------------------------------------------------------------------------------------------------
# one forward + backward

def make_batch(vocab_size):
    g = torch.Generator().manual_seed(SEED)
    input_ids = torch.randint(0, vocab_size, (B, T), generator=g, dtype=torch.int64)
    labels = input_ids.clone()
    labels[:, :PROMPT] = IGNORE
    return input_ids, labels


def reference_loss(logits, labels):
    """Float64 loss with the documented shift: logits[b, t] predicts labels[b, t + 1]; mean over kept targets."""
    z = logits[:, :-1, :].double()
    y = labels[:, 1:]
    keep = y != IGNORE
    logp = torch.log_softmax(z, dim=-1)
    nll = -logp[keep].gather(1, y[keep].unsqueeze(1)).squeeze(1)
    return nll.mean().item(), int(keep.sum())


def run(model, input_ids, labels):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=input_ids, labels=labels, output_hidden_states=True, use_cache=False)
    V, H = model.config.vocab_size, model.config.hidden_size
    logits, loss = out.logits, out.loss
    check(tuple(logits.shape) == (B, T, V) and logits.dtype == torch.float32, f"logits {logits.shape} {logits.dtype}")
    check(loss is not None and loss.dim() == 0, "no scalar loss")

    # transformers 5 (`capture_outputs`, tie_last_hidden_states=True for language models) replaces
    # hidden_states[-1] with last_hidden_state, i.e. the output of the final RMSNorm. Check it: feeding it to
    # lm_head must reproduce the logits (the raw last-layer output would not).
    hs = out.hidden_states
    check(hs is not None and len(hs) == model.config.num_hidden_layers + 1, "hidden_states missing or wrong length")
    hidden_last = hs[-1]
    check(tuple(hidden_last.shape) == (B, T, H), f"hidden_last shape {tuple(hidden_last.shape)}")
    with torch.no_grad():
        relogits = model.lm_head(hidden_last)
    check(torch.allclose(relogits, logits, rtol=0, atol=1e-5), "lm_head(hidden_states[-1]) != logits: not post-norm")

    ref, n_targets = reference_loss(logits.detach(), labels)
    check(n_targets == B * (T - PROMPT), f"{n_targets} targets, want {B * (T - PROMPT)}")
    check(abs(loss.item() - ref) <= 1e-5 * abs(ref), f"HF loss {loss.item()} vs float64 reference {ref}")

    loss.backward()
    grads = []
    for name, p in model.named_parameters():
        check(p.grad is not None, f"no gradient for {name}")
        g = p.grad.detach()
        check(bool(torch.isfinite(g).all()), f"non-finite gradient for {name}")
        check(float(g.abs().max()) > 0, f"all-zero gradient for {name}")
        grads.append((name, g))
    return logits.detach(), loss.detach(), hidden_last.detach(), grads


# ----------------------------------------------------------------------------------------------------------
# RIFTPAR1 writer / reader

def to_record(name, tensor, dtype_code):
    t = tensor.detach().cpu().contiguous()
    if dtype_code == DT_I32:
        check(int(t.min()) >= -2**31 and int(t.max()) < 2**31, f"{name} out of i32 range")
        t = t.to(torch.int32)
    elif dtype_code == DT_F32:
        t = t.to(torch.float32)
    else:
        t = t.to(torch.float64)
    shape = list(t.shape) if t.dim() > 0 else [1]
    data = t.numpy().astype(NP_DTYPE[dtype_code], copy=False).tobytes()  # row-major (C order)
    check(len(data) == math.prod(shape) * t.element_size(), f"{name}: byte count")
    return name, dtype_code, shape, data


def write_bin(path, records):
    parts = [MAGIC, struct.pack("<II", VERSION, len(records))]
    for name, dtype_code, shape, data in records:
        nb = name.encode("utf-8")
        check(len(nb) < 2**16 and len(shape) < 2**8, f"{name}: name or ndim too long")
        parts.append(struct.pack("<H", len(nb)))
        parts.append(nb)
        parts.append(struct.pack("<BB", dtype_code, len(shape)))
        parts.append(struct.pack("<%dI" % len(shape), *shape))
        parts.append(data)
    blob = b"".join(parts)
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)


def read_bin(path):
    with open(path, "rb") as f:
        buf = f.read()
    check(buf[:8] == MAGIC, "bad magic")
    version, count = struct.unpack_from("<II", buf, 8)
    check(version == VERSION, f"version {version}")
    off, records = 16, []
    for _ in range(count):
        (n,) = struct.unpack_from("<H", buf, off)
        off += 2
        name = buf[off:off + n].decode("utf-8")
        off += n
        dtype_code, ndim = struct.unpack_from("<BB", buf, off)
        off += 2
        shape = list(struct.unpack_from("<%dI" % ndim, buf, off))
        off += 4 * ndim
        check(dtype_code in NP_DTYPE, f"{name}: dtype code {dtype_code}")
        nbytes = math.prod(shape) * {DT_F32: 4, DT_I32: 4, DT_F64: 8}[dtype_code]
        data = buf[off:off + nbytes]
        check(len(data) == nbytes, f"{name}: truncated")
        off += nbytes
        records.append((name, dtype_code, shape, data))
    check(off == len(buf), f"{len(buf) - off} trailing bytes")
    return records


# ----------------------------------------------------------------------------------------------------------
# checks on what save_pretrained wrote

def check_saved(model_dir, model, config, theta, tied):
    cfg_path = os.path.join(model_dir, "config.json")
    st_path = os.path.join(model_dir, "model.safetensors")
    check(os.path.isfile(cfg_path) and os.path.isfile(st_path), f"{model_dir}: config.json or model.safetensors missing")

    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    for k in CONFIG_KEYS:
        check(k in cfg, f"config.json lacks {k}")
        check(cfg[k] == getattr(config, k), f"config.json {k}={cfg[k]!r}, want {getattr(config, k)!r}")
    # transformers 5 writes {"rope_parameters": {"rope_type": "default", "rope_theta": ...}}; older writers a
    # top-level "rope_theta". Accept either, and no RoPE scaling of any kind.
    rope = cfg.get("rope_parameters") or {}
    for d in (rope, cfg.get("rope_scaling") or {}):
        check(d.get("rope_type", d.get("type", "default")) == "default", f"config.json has RoPE scaling {d}")
    rope_key = "rope_parameters.rope_theta" if "rope_theta" in rope else "rope_theta"
    saved_theta = rope.get("rope_theta", cfg.get("rope_theta"))
    check(saved_theta is not None and float(saved_theta) == theta, f"config.json rope theta {saved_theta!r}")

    sd = load_file(st_path)
    for name, p in model.named_parameters():
        check(name in sd, f"model.safetensors lacks {name}")
        check(sd[name].dtype == torch.float32 and torch.equal(sd[name], p.detach()), f"model.safetensors {name} differs")
    extra = sorted(set(sd) - {n for n, _ in model.named_parameters()})
    if tied:
        # HF drops the tied duplicate; accept it kept only if identical.
        check(extra in ([], ["lm_head.weight"]), f"unexpected tensors {extra}")
        if extra:
            check(torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"]), "saved lm_head != embed")
    else:
        check(extra == [], f"unexpected tensors {extra}")
    return rope_key


# ----------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder, e.g. test/fixtures/parity (relative to cwd)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)  # bit-reproducible reductions on the CPU
    print(f"python {sys.version.split()[0]}  torch {torch.__version__}  transformers {transformers.__version__}")

    for name, cls, config, theta, tied in make_configs():
        model = build_model(cls, config, theta, tied)
        input_ids, labels = make_batch(config.vocab_size)
        logits, loss, hidden_last, grads = run(model, input_ids, labels)

        model_dir = os.path.join(out, name)
        model.save_pretrained(model_dir)  # transformers 5: always safetensors (safe_serialization was removed)
        rope_key = check_saved(model_dir, model, config, theta, tied)

        sources = [
            ("input_ids", input_ids, DT_I32),
            ("labels", labels, DT_I32),
            ("logits", logits, DT_F32),
            ("loss", loss.double().reshape(1), DT_F64),
            ("hidden_last", hidden_last, DT_F32),
        ] + [("grad." + n, g, DT_F32) for n, g in grads]
        records = [to_record(*s) for s in sources]
        bin_path = os.path.join(out, name + ".bin")
        size = write_bin(bin_path, records)
        check(size < MAX_BIN_BYTES, f"{bin_path} is {size} bytes")

        back = read_bin(bin_path)
        check([r[0] for r in back] == [r[0] for r in records], "record names differ after re-read")
        for (n0, d0, s0, b0), (n1, d1, s1, b1), (_, src, _) in zip(records, back, sources):
            check(d0 == d1 and s0 == s1 and b0 == b1, f"{n0}: dtype/shape/bytes differ after re-read")
            # decode the bytes read back and compare with the tensor they came from, bit for bit
            got = torch.from_numpy(np.frombuffer(b1, dtype=NP_DTYPE[d1]).astype(NP_DTYPE[d1][1:]).reshape(s1))
            want = src.detach().cpu().reshape(s1).to(got.dtype)
            check(torch.equal(got, want), f"{n0}: decoded values differ from the source tensor")
        check(os.path.getsize(bin_path) == size, "file size")

        n_params = sum(p.numel() for _, p in model.named_parameters())
        print(f"{name}: params {n_params}  loss {loss.item():.9f}  {name}.bin {size} bytes  "
              f"records {len(records)}  config theta key {rope_key}")
    print("ok")


if __name__ == "__main__":
    main()

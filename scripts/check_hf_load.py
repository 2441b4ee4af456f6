"""Checks that a checkpoint directory written by rift's saveCheckpoint loads in HF transformers and gives the
logits rift computed. Run where torch + transformers exist (the lent GPU machine):
    python3 scripts/check_hf_load.py DIR     (DIR holds config.json, model.safetensors, rift-logits.json)
rift-logits.json: {"ids": [[...]], "logits": [[[...]]]} written by the engine for the same ids.
Exits non-zero when loading fails or the logits differ by more than 1e-4."""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main(d):
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ref = json.load(open(f"{d}/rift-logits.json"))
    ids = torch.tensor(ref["ids"], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    ours = torch.tensor(ref["logits"], dtype=torch.float32)
    diff = (logits - ours).abs().max().item()
    print(f"{d}: loaded {type(model).__name__} with {sum(p.numel() for p in model.parameters())} params; "
          f"max |logits(transformers) - logits(rift)| = {diff:.3e}")
    if not diff <= 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        main(d)

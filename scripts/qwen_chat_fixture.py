#!/usr/bin/env python3
"""Recomputes test/fixtures/qwen3-chat/prompts.json with transformers and prints it (the same JSON).

The fixture was produced without transformers (scripts/qwen-chat-fixture.js: the chat template rendered by hand,
an independent byte-level BPE). On a machine with transformers (and the repo's node_modules installed, for the
tokenizer files), this script takes the fixture's conversations and recomputes every case's text and ids with
transformers' own apply_chat_template on the same files:

    pip install transformers
    python3 scripts/qwen_chat_fixture.py > /tmp/prompts.json
    diff /tmp/prompts.json test/fixtures/qwen3-chat/prompts.json     # no output: transformers agrees

Not run in CI (there is no Python transformers there).
"""
import json
import os
import sys

from transformers import AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
FIXTURE = os.path.join(ROOT, 'test', 'fixtures', 'qwen3-chat', 'prompts.json')


def main():
    with open(FIXTURE, encoding='utf-8') as f:
        fixture = json.load(f)
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, fixture['tokenizer']))
    cases = []
    for c in fixture['cases']:
        kwargs = {'add_generation_prompt': c['add_generation_prompt']}
        if 'enable_thinking' in c:
            kwargs['enable_thinking'] = c['enable_thinking']
        text = tok.apply_chat_template(c['messages'], tokenize=False, **kwargs)
        ids = tok.apply_chat_template(c['messages'], tokenize=True, **kwargs)
        if isinstance(ids, dict):  # transformers >= 5 may return a BatchEncoding
            ids = ids['input_ids']
        out = {k: v for k, v in c.items() if k not in ('text', 'ids')}
        out['text'] = text
        out['ids'] = [int(i) for i in ids]
        cases.append(out)
    result = {'about': fixture['about'], 'tokenizer': fixture['tokenizer'], 'cases': cases}
    sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + '\n')


if __name__ == '__main__':
    main()

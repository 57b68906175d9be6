"""Benchmark: the special-token guard's cost per prompt, with its per-tokenizer facts cached and without.

Encodes the same seeded test prompts three ways in one run: `encode_prompt` as shipped (facts cached
per tokenizer), `encode_prompt` with the cache emptied before every prompt (what every prompt paid
before the cache), and a plain tokenizer call (no guard: the floor). Prints one JSON line.

    python eval/bench_encoding.py --data data/ml100k --template movie_verbal
"""

from __future__ import annotations

import argparse
import json
import time

from promptrec.lm import encoding
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_tokenizer
from promptrec.protocols.shots import select_examples
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template


def per_prompt_us(fn, prompts) -> float:
    start = time.perf_counter()
    for prompt in prompts:
        fn(prompt)
    return 1e6 * (time.perf_counter() - start) / len(prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/ml100k")
    parser.add_argument("--template", default="movie_verbal")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tokenizer = load_tokenizer(ModelConfig(args.model))
    template = load_template(args.template)
    examples = select_examples(load_split(args.data, "test"), args.examples, 0)
    prompts = [template.render_prompt(example, tokenizer) for example in examples]

    def uncached(prompt):
        encoding._FACTS.clear()
        return encoding.encode_prompt(tokenizer, prompt, template.chat)

    ways = {
        "cached": lambda p: encoding.encode_prompt(tokenizer, p, template.chat),
        "uncached": uncached,
        "plain": lambda p: tokenizer(p.text, add_special_tokens=not template.chat),
    }
    per_prompt_us(ways["plain"], prompts)  # warm-up: the tokenizer's first calls are slower
    times = {name: [] for name in ways}
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every way alike
        for name, fn in ways.items():
            times[name].append(per_prompt_us(fn, prompts))
    us = {name: min(values) for name, values in times.items()}  # the least disturbed round
    result = {"template": args.template, "chat": template.chat, "prompts": len(prompts)}
    result |= {f"{name}_us": value for name, value in us.items()}
    result |= {"speedup": us["uncached"] / us["cached"], "guard_overhead": us["cached"] / us["plain"] - 1}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()

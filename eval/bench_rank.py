"""Benchmark: shared-prefix ranking against scoring every (user, candidate) prompt from scratch.

Scores the same users x 20 candidates (MovieLens-100K leave-one-out, 10-item histories, an
item-kNN retriever's top 20) both ways in one run, checks the scores agree, and prints
candidates/s, the ratio, peak memory per phase, and the model's plain forward throughput on this
machine (the ceiling a scoring path can approach). Ends with one JSON line for tracking.

    python eval/bench_rank.py                                  # embedded model, CPU
    python eval/bench_rank.py --users 4 --template movie_rich   # facts after the candidate: less to share
    python eval/bench_rank.py --shape llama-7b --dtype bfloat16 --device cuda   # random 7B-shaped weights
    python eval/bench_rank.py --model DIR --quantization 4bit --device cuda

It also times `Scorer.score_group` with and without a hybrid's wide part on the same users (wide_overhead).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from promptrec.baselines.retrievers import build_candidates
from promptrec.baselines.wide import fit_wide
from promptrec.jobs.rank import RankConfig
from promptrec.lm import packed_attention
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model, load_tokenizer
from promptrec.lm.scoring import Scorer, score_sequences, score_shared_prefix
from promptrec.protocols.candidates import CandidateConfig
from promptrec.protocols.features import available_features
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.protocols.prepare import prepare_movielens
from promptrec.templates.template import load_template

SHAPES = {  # random-weight shapes: speed does not depend on the weights
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4),  # checks the script's path on CPU in seconds
}  # fmt: skip


class PeakMemory:
    """Peak resident memory (CPU, sampled) or peak allocated CUDA memory during a `with` block, in MiB."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak_mib = 0.0

    def _rss_mib(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096 / 2**20

    def _sample(self):
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self._rss_mib())
            time.sleep(0.01)

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()


def load(args, tmp: Path):
    if args.shape:
        from transformers import AutoModelForCausalLM, LlamaConfig

        tokenizer = load_tokenizer(ModelConfig())
        config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, **SHAPES[args.shape])
        dtype = getattr(torch, args.dtype if args.dtype != "auto" else "bfloat16")
        if args.quantization != "none":
            # Random weights saved once, then loaded through promptrec's own quantized path (bitsandbytes).
            with torch.device("cpu"):
                AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(tmp / "random")
            tokenizer.save_pretrained(tmp / "random")
            return load_model(ModelConfig(str(tmp / "random"), args.dtype, args.device, args.quantization))
        with torch.device(args.device if args.device != "auto" else "cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
        return model, tokenizer
    return load_model(ModelConfig(args.model, args.dtype, args.device, args.quantization))


def parameter_count(model) -> int:
    """Parameters as the unquantized model has them (a 4-bit layer packs two per stored byte)."""
    total = 0
    for parameter in model.parameters():
        total += parameter.numel() * (2 if parameter.dtype == torch.uint8 else 1)
    return total


def build_groups(args, tokenizer) -> tuple[list[list[list[int]]], int, list[list[dict]]]:
    """Token sequences per user (one per candidate) through the real candidate and template path, and the examples."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        prepare_movielens(args.source, data, history_len=10, protocol="next-item")
        catalog = load_catalog(data)
        rows, _ = build_candidates(catalog, "test", CandidateConfig("itemknn", args.candidates, True, args.seed))
        contexts, builder = catalog.contexts("test"), CandidateExamples(catalog)
    rows = random.Random(args.seed).sample(rows, args.users)
    scorer = Scorer(None, tokenizer, load_template(args.template))
    examples = [[builder.build(contexts[r["user_id"]], item) for item in r["candidates"]] for r in rows]
    groups = [[scorer.encode(example) for example in group] for group in examples]
    return groups, scorer.answers, examples


def wide_overhead(model, tokenizer, args, examples: list[list[dict]]) -> dict:
    """`Scorer.score_group` with and without a wide part on the same users, interleaved (ABAB) so drift cancels.

    The wide part's weights do not change its cost; it is fitted on the candidates with alternating labels.
    """
    flat = [example for group in examples for example in group]
    wide = fit_wide(flat, [i % 2 for i in range(len(flat))], available_features(flat), l2=1.0)
    template = load_template(args.template)
    plain = Scorer(model, tokenizer, template, candidates_per_pass=args.candidates_per_pass)
    hybrid = Scorer(model, tokenizer, template, candidates_per_pass=args.candidates_per_pass, wide=wide)
    seconds = {"plain": 0.0, "hybrid": 0.0}
    for group in examples:
        for name, scorer in (("plain", plain), ("hybrid", hybrid), ("hybrid", hybrid), ("plain", plain)):
            start = time.perf_counter()
            scorer.score_group(group)
            seconds[name] += time.perf_counter() - start
    start = time.perf_counter()
    wide.logits(flat)
    logits_seconds = time.perf_counter() - start
    return {
        "wide_features": list(wide.names),
        "score_group_plain_s": seconds["plain"],
        "score_group_hybrid_s": seconds["hybrid"],
        "wide_overhead": seconds["hybrid"] / seconds["plain"] - 1,
        "wide_logits_us_per_candidate": 1e6 * logits_seconds / len(flat),
        # the wide part's own cost against a candidate's scoring time: what the ABAB wall-clock
        # difference (within this machine's run-to-run noise) estimates
        "wide_logit_share": logits_seconds / (seconds["plain"] / 2),
    }


def timed(fn, device: str):
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return result, seconds, memory.peak_mib


def forward_throughput(model, length: int, batch: int, repeats: int = 2) -> float:
    """Tokens/s of a plain batched forward pass (no padding, last-position logits)."""
    device = next(model.parameters()).device
    ids = torch.randint(100, 1000, (batch, length), device=device)
    with torch.no_grad():
        model(input_ids=ids, logits_to_keep=1)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids, logits_to_keep=1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return repeats * batch * length / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/ml-100k", help="raw MovieLens-100K directory")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--template", default="movie_next", help="movie_next (ranking) or e.g. movie_rich")
    parser.add_argument("--batch-size", type=int, default=10, help="prompts per forward pass of the naive path")
    parser.add_argument(
        "--candidates-per-pass", type=int, default=RankConfig().candidates_per_pass,
        help="continuations packed after the prefix (the shared path); default: rank's",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="random weights of this shape instead of --model")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak (H100/H200 bf16: 989) for the roof")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


def run(args, tmp: Path) -> None:
    model, tokenizer = load(args, tmp)
    device = str(next(model.parameters()).device)
    groups, answers, examples = build_groups(args, tokenizer)
    pad, num = tokenizer.pad_token_id, sum(len(g) for g in groups)
    lengths = [len(s) for g in groups for s in g]
    print(f"model {args.shape or args.model} on {device}; {len(groups)} users x {args.candidates} candidates, "
          f"template {args.template}, prompt tokens mean {np.mean(lengths):.0f}")  # fmt: skip
    per_pass = args.candidates_per_pass
    score_shared_prefix(model, groups[0], answers, pad, per_pass)  # warm-up (allocator, kernels)

    naive, naive_s, naive_mib = timed(
        lambda: [score_sequences(model, g, answers, pad, args.batch_size) for g in groups], device
    )

    def shared():
        return [score_shared_prefix(model, g, answers, pad, per_pass) for g in groups]

    cached, cached_s, cached_mib = timed(shared, device)
    with mock.patch.object(packed_attention, "supports", lambda model: False):  # ablation: SDPA on the dense mask
        _, dense_s, _ = timed(shared, device)
    prefix_tokens = [p for _, p in cached]
    max_abs_diff = max(float(np.max(np.abs(n - c))) for n, (c, _) in zip(naive, cached))
    processed = sum(p + sum(len(s) - p for s in g) for g, p in zip(groups, prefix_tokens))
    ceiling = forward_throughput(model, int(np.mean(lengths)), args.batch_size)
    overhead = wide_overhead(model, tokenizer, args, examples)
    flops_per_token = 2 * parameter_count(model)  # forward pass, attention's quadratic term left out
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "model": args.shape or args.model,
        "dtype": str(next(model.parameters()).dtype),
        "quantization": args.quantization,
        "template": args.template,
        "users": len(groups),
        "candidates_per_user": args.candidates,
        "candidates_per_pass": per_pass,
        "mean_prompt_tokens": float(np.mean(lengths)),
        "mean_prefix_tokens": float(np.mean(prefix_tokens)),
        "naive_cands_per_s": num / naive_s,
        "cached_cands_per_s": num / cached_s,
        "speedup": naive_s / cached_s,
        "dense_mask_cands_per_s": num / dense_s,
        "block_attention_gain": dense_s / cached_s,
        "max_abs_diff": max_abs_diff,
        "naive_peak_mib": naive_mib,
        "cached_peak_mib": cached_mib,
        "cached_tokens_per_s": processed / cached_s,
        "forward_tokens_per_s": ceiling,
        "cached_tflops": processed / cached_s * flops_per_token / 1e12,
        "forward_tflops": ceiling * flops_per_token / 1e12,
        "peak_tflops": args.peak_tflops,
        **overhead,
    }
    print(
        f"naive  (every prompt from scratch): {result['naive_cands_per_s']:8.2f} candidates/s, peak {naive_mib:.0f} MiB"
    )
    print(
        f"cached (shared prefix once)       : {result['cached_cands_per_s']:8.2f} candidates/s, "
        f"peak {cached_mib:.0f} MiB"
    )
    print(
        f"speedup {result['speedup']:.2f}x; max |score difference| {max_abs_diff:.2e}; "
        f"prefix {result['mean_prefix_tokens']:.0f} of {result['mean_prompt_tokens']:.0f} tokens"
    )
    print(f"the same shared path, SDPA on the dense packed mask: {result['dense_mask_cands_per_s']:.2f} candidates/s "
          f"(block attention {result['block_attention_gain']:.2f}x faster)")  # fmt: skip
    print(f"cached path runs {result['cached_tokens_per_s']:.0f} tokens/s; a plain forward pass of this shape "
          f"runs {ceiling:.0f} tokens/s ({result['cached_tokens_per_s'] / ceiling:.0%} of it)")  # fmt: skip
    print(
        f"hybrid (shared prefix + wide part): {overhead['wide_overhead']:+.2%} time vs the same path without it "
        f"({overhead['wide_logits_us_per_candidate']:.0f} us per candidate for the wide logit itself, "
        f"{overhead['wide_logit_share']:.3%} of the scoring time)"
    )
    if args.peak_tflops:
        share = result["cached_tflops"] / args.peak_tflops
        print(f"FLOP roof: cached path {result['cached_tflops']:.1f} TFLOP/s, plain forward "
              f"{result['forward_tflops']:.1f}, of {args.peak_tflops:.0f} peak ({share:.0%})")  # fmt: skip
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

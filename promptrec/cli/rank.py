"""CLI verbs of batch ranking: `candidates` writes candidate sets, `rank` scores them."""

from __future__ import annotations

from promptrec.baselines.retrievers import build_candidates
from promptrec.cli.common import (
    adapter_defaults,
    add_config_flags,
    add_model_flags,
    command_parser,
    model_flags,
    output_path,
    print_json,
    resolve_path,
)
from promptrec.core.config import resolve
from promptrec.jobs.rank import RankConfig, rank
from promptrec.lm.adapter import open_adapters
from promptrec.protocols.candidates import CandidateConfig, protocol_path, write_candidates
from promptrec.protocols.next_item import load_catalog

CANDIDATES_EXAMPLES = r"""examples:
  promptrec data prepare movielens --source ../shared/data/ml-100k --protocol next-item --out data/ml100k-next
  promptrec candidates --data data/ml100k-next --retriever itemknn --num 20 --out runs/cands-knn20.jsonl
  promptrec candidates --data data/ml100k-next --split valid --include-target --seed 1 --out runs/cands-valid.jsonl"""
RANK_EXAMPLES = r"""examples:
  promptrec rank --data data/ml100k-next --candidates runs/cands-knn20.jsonl --top-k 10 --out runs/ranked.jsonl
  promptrec rank --data data/ml100k-next --candidates runs/cands-knn20.jsonl --adapter adapters/next-64 \
      --out runs/ranked-lora.jsonl --resume          # finish a run that crashed
  accelerate launch --multi_gpu --num_processes 2 -m promptrec rank --data data/ml100k-next \
      --candidates runs/cands-knn20.jsonl --quantization 4bit --out runs/ranked.jsonl"""


def add_candidates_parser(sub) -> None:
    parser = command_parser(
        sub, "candidates", "Write each user's candidate items (a retriever's top N, shuffled).", CANDIDATES_EXAMPLES
    )
    parser.add_argument("--data", required=True, help="next-item dir from `data prepare ... --protocol next-item`")
    parser.add_argument("--split", default="test", help="valid or test: whose held-out item is the target")
    parser.add_argument(
        "--retriever",
        default="popularity",
        help="popularity, itemknn, kg (KG embeddings; a dir prepared with --kg and pip install 'promptrec[kg]'), "
        "or search (query from the purchase's category path)",
    )
    parser.add_argument("--num", type=int, default=20, help="candidates per user")
    parser.add_argument("--include-target", action="store_true", help="force the held-out item into each list")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate order shuffle and user sample")
    parser.add_argument("--max-users", type=int, default=0, help="a seeded sample of N users (default all)")
    parser.add_argument("--out", required=True, help="candidate .jsonl (a .protocol.json is written beside it)")
    parser.add_argument("--retriever-ranked", help="also write the retriever's own order here (for evaluate --ranked)")
    parser.set_defaults(handler=candidates_command)


def candidates_command(args) -> int:
    config = CandidateConfig(args.retriever, args.num, args.include_target, args.seed, args.max_users)
    out = output_path(args.out, "file")
    ranked = output_path(args.retriever_ranked, "file") if args.retriever_ranked else None
    rows, record = build_candidates(load_catalog(resolve_path(args.data)), args.split, config)
    write_candidates(rows, record, out, ranked)
    recall = record[f"recall_at_{config.num}"]
    forced = "before the target was forced in; the reranker's ceiling is 1"
    ceiling = forced if config.include_target else "the reranker's ceiling"
    print(
        f"wrote {args.out}: {len(rows)} users x {config.num} candidates ({config.retriever}); "
        f"retriever Recall@{config.num} = {recall:.4f} ({ceiling}); protocol in {protocol_path(args.out)}"
    )
    return 0


def add_rank_parser(sub) -> None:
    parser = command_parser(
        sub, "rank", "Score each user's candidates and write ranked lists (resumable, sharded).", RANK_EXAMPLES
    )
    parser.add_argument("--data", required=True, help="next-item dir from `data prepare ... --protocol next-item`")
    parser.add_argument("--candidates", required=True, help="candidate .jsonl from `promptrec candidates` or your own")
    parser.add_argument("--split", help="whose contexts the prompts show (default test)")
    parser.add_argument("--adapter", nargs="+", help="adapter dir (omit: zero-shot; several: a seed ensemble)")
    parser.add_argument("--template", help="template (default: the adapter's, else movie_next)")
    parser.add_argument("--top-k", type=int, help="keep the top K items per user (default all)")
    parser.add_argument("--probabilities", action="store_true", help="also write sigmoid(score) per item")
    parser.add_argument(
        "--candidates-per-pass",
        type=int,
        help="candidates packed in one forward pass after the shared prefix (default 10)",
    )
    parser.add_argument("--out", required=True, help="ranked .jsonl, one user per line")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run of the same job")
    parser.add_argument("--overwrite", action="store_true", help="discard a previous run into --out")
    add_config_flags(parser)
    add_model_flags(parser)
    parser.set_defaults(handler=rank_command)


def rank_command(args) -> int:
    flags = {"split": args.split, "template": args.template, "top_k": args.top_k} | model_flags(args)
    flags |= {"probabilities": args.probabilities or None, "candidates_per_pass": args.candidates_per_pass}
    adapters = open_adapters(args.adapter)
    config = resolve(RankConfig, args.config, args.set, flags, defaults=adapter_defaults(adapters))
    summary = rank(
        config, resolve_path(args.data), resolve_path(args.candidates), output_path(args.out, "file"),
        adapters, resume=args.resume, overwrite=args.overwrite, progress=True,
    )  # fmt: skip
    print_json(summary)
    return 0


def add_parser(sub) -> None:
    add_candidates_parser(sub)
    add_rank_parser(sub)

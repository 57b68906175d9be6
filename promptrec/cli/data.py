"""CLI verbs `data prepare` (MovieLens, table and Amazon sources, optional `--kg` facts) and `data import`
(TALLRec's published instruction files), each into a prepared dir.

The handlers turn flags into calls of `promptrec.protocols` (and `promptrec.data.amazon` for Amazon
files), and print what was written, what was repaired and the knowledge-load warnings. Both refuse
an existing prepared dir unless `--overwrite` is given, before reading any data. Preparing
examples is not here: it is `promptrec.protocols`.
"""

from __future__ import annotations

import argparse
import sys

from promptrec.cli.common import command_parser, resolve_path
from promptrec.core.errors import ConfigError
from promptrec.core.files import write_json
from promptrec.data.amazon import load_amazon
from promptrec.knowledge.graph import RANKINGS, Budget, KnowledgeSpec, knowledge_warnings
from promptrec.protocols.prepare import (
    PROTOCOLS,
    check_pool_protocol,
    load_warnings,
    prepare_dataset,
    prepare_movielens,
    prepare_table,
)
from promptrec.protocols.splits import check_out_dir
from promptrec.protocols.tallrec_import import import_tallrec

EXAMPLES = r"""examples:
  promptrec data prepare movielens --source ../shared/data/ml-100k --out data/ml100k
  promptrec data prepare table --interactions ratings.csv --items items.csv --out data/mine
  promptrec data prepare amazon --reviews ../shared/data/amazon-gift_cards/Gift_Cards_5.json.gz \
      --meta ../shared/data/amazon-gift_cards/meta_Gift_Cards.json.gz --protocol search --out data/gift-search
  promptrec data prepare movielens --source ../shared/data/ml-100k --out data/ml100k-kg \
      --kg imdb=../shared/data/ml-kg/imdb-rkge/auxiliary.txt --kg dbpedia=../shared/data/ml-kg/dbpedia-ml1m
  promptrec data prepare movielens --source ../shared/data/ml-100k --protocol global-time --out data/ml100k-time
  promptrec data import tallrec --train book/train.json --valid book/valid.json --test book/test.json --out data/book
  promptrec data prepare movielens --source ../shared/data/ml-100k --out data/ml100k --overwrite"""


def add_parser(sub) -> None:
    parser = command_parser(sub, "data", "Prepare pointwise examples from raw data or TALLRec's files.", EXAMPLES)
    verbs = parser.add_subparsers(dest="verb", required=True)
    prepare = verbs.add_parser("prepare", help="build train/valid/test examples")
    sources = prepare.add_subparsers(dest="source_kind", required=True)
    movielens = sources.add_parser("movielens", help="raw MovieLens-100K files (u.data, u.item, u.user, u.genre)")
    movielens.add_argument("--source", required=True, help="directory of the raw MovieLens-100K files")
    table = sources.add_parser("table", help="CSV/JSONL tables with named columns")
    table.add_argument("--interactions", required=True, help="user_id,item_id,timestamp and rating or label")
    table.add_argument("--items", help="item_id,title,... (other columns become attributes)")
    table.add_argument("--users", help="user_id,... (other columns become attributes)")
    amazon = sources.add_parser("amazon", help="Amazon 2018 reviews (5-core .json.gz or ratings .csv) + metadata")
    amazon.add_argument("--reviews", required=True, help="*_5.json.gz reviews, or the ratings-only CSV (no header)")
    amazon.add_argument("--meta", required=True, help="meta_*.json.gz product metadata (JSON lines)")
    amazon.add_argument(
        "--drop-items-without-meta", action="store_true", help="drop reviewed items lacking metadata (default: keep)"
    )
    for source in (movielens, table, amazon):
        source.add_argument("--out", required=True, help="output dir for train/valid/test.jsonl + manifest.json")
        source.add_argument("--overwrite", action="store_true", help="replace a prepared dir already in --out")
        source.add_argument("--history-len", type=int, default=10)
        source.add_argument(
            "--max-examples",
            type=int,
            default=10000,
            help="tallrec protocol only: keep the last N examples (TALLRec: 10000)",
        )
        source.add_argument(
            "--protocol",
            choices=PROTOCOLS,
            default="tallrec",
            help="tallrec: pointwise like/dislike examples, each user's windows cut 80/10/10; global-time: the "
            "same examples, all ratings on one timeline cut 80/10/10; next-item: leave-one-out for "
            "candidates/rank; search: product search with category-path queries (needs item categories or brand)",
        )
        source.add_argument(
            "--history-pool",
            type=int,
            default=0,
            metavar="N",
            help="tallrec and global-time: the history is the --history-len items of the user's last N most similar "
            "to the target (item-kNN over earlier ratings, as in ReLLa), in time order; 0 (default): the last items",
        )
        _add_knowledge_flags(source)
        source.set_defaults(handler=data_prepare)
    _add_import_parser(verbs)


def _add_import_parser(verbs) -> None:
    importer = verbs.add_parser("import", help="turn published instruction files into a prepared dir")
    formats = importer.add_subparsers(dest="format", required=True)
    tallrec = formats.add_parser(
        "tallrec", help="TALLRec's Alpaca-style JSON ({instruction, input, output} records) of any domain"
    )
    tallrec.add_argument("--train", required=True, help="train.json (TALLRec's instruction file)")
    tallrec.add_argument("--valid", help="valid.json (without it, train with --valid or --set valid_examples=0)")
    tallrec.add_argument("--test", help="test.json")
    tallrec.add_argument("--out", required=True, help="output dir for <split>.jsonl + manifest.json")
    tallrec.add_argument("--overwrite", action="store_true", help="replace a prepared dir already in --out")
    tallrec.set_defaults(handler=data_import)


def data_import(args) -> int:
    out = resolve_path(args.out)
    check_out_dir(out, args.overwrite)
    paths = {split: resolve_path(path) for split in ("train", "valid", "test") if (path := getattr(args, split))}
    manifest = import_tallrec(paths, out)
    counts = ", ".join(f"{name} {info['num_examples']}" for name, info in manifest["splits"].items())
    print(f"wrote {args.out}: {counts}")
    return 0


def data_prepare(args) -> int:
    out = resolve_path(args.out)
    check_out_dir(out, args.overwrite)  # before loading: a refused --out costs nothing
    check_pool_protocol(args.protocol, args.history_pool)
    if args.source_kind == "amazon":
        manifest = _prepare_amazon(args)
    elif args.source_kind == "movielens":
        knowledge = _knowledge_spec(args)
        source = resolve_path(args.source)
        manifest = prepare_movielens(
            source, out, args.history_len, args.max_examples, args.protocol, knowledge, args.history_pool
        )
    else:
        manifest = prepare_table(
            args.interactions,
            args.items,
            args.users,
            out,
            history_len=args.history_len,
            max_examples=args.max_examples,
            protocol=args.protocol,
            knowledge=_knowledge_spec(args),
            history_pool=args.history_pool,
        )
    counts = ", ".join(f"{name} {info['num_examples']}" for name, info in manifest["splits"].items())
    print(f"wrote {args.out}: {counts}")
    _print_time_cut(manifest)
    _print_knowledge(manifest)
    for warning in load_warnings(manifest):  # repairs made while loading (e.g. duplicate rows dropped)
        print(f"promptrec: warning: {warning}", file=sys.stderr)
    return 0


def _print_time_cut(manifest: dict) -> None:
    if manifest["name"] != "global-time":
        return
    for split in ("train", "valid", "test"):
        counts = manifest["counts"][split]
        print(
            f"{split}: {counts['num_interactions']} interactions from {counts['first_timestamp']} to "
            f"{counts['last_timestamp']}, {counts['num_without_full_history']} without a full history"
        )


def _prepare_amazon(args) -> dict:
    """Load Amazon files, print what was repaired (counts), prepare, save the load report beside the splits."""

    missing_meta = "drop" if args.drop_items_without_meta else "keep"
    dataset, report = load_amazon(resolve_path(args.reviews), resolve_path(args.meta), missing_meta)
    print(report.summary())
    for line in report.warnings():
        print(f"promptrec: warning: {line}", file=sys.stderr)
    out = resolve_path(args.out)
    knowledge = _knowledge_spec(args)
    manifest = prepare_dataset(
        dataset, out, args.protocol, args.history_len, 3.0, args.max_examples, knowledge, args.history_pool
    )
    write_json(out / "load_report.json", report.to_dict())
    rates = ", ".join(f"{name} {info['positive_rate']}" for name, info in manifest["splits"].items())
    rule = "rating > 3" if args.protocol in ("tallrec", "global-time") else "label 1"
    print(f"positive rate ({rule}): {rates}")
    return manifest


def _add_knowledge_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kg",
        action="append",
        default=[],
        metavar="KIND=VALUE",
        help="add knowledge-graph facts to every example as 'kg' (repeatable): imdb=auxiliary.txt, "
        "dbpedia=DIR[,MAPPING.tsv], triples=FILE.tsv (columns head,relation,tail), "
        "attributes=brand,categories,price,also_buy",
    )
    parser.add_argument("--kg-max-facts", type=int, help="facts about the candidate per example (default 3)")
    parser.add_argument("--kg-max-links", type=int, help="candidate-history links per example (default 2)")
    parser.add_argument(
        "--kg-rank-by",
        choices=RANKINGS,
        help="which facts and links win the budget: rarity (default) or embedding (closest to the liked "
        "history in KG-embedding space; trains PyKEEN TransE once: pip install 'promptrec[kg]')",
    )


def _knowledge_spec(args):
    limits = {"max_facts": args.kg_max_facts, "max_links": args.kg_max_links, "rank_by": args.kg_rank_by}
    if not args.kg:
        if any(value is not None for value in limits.values()):
            raise ConfigError(
                "--kg-max-facts, --kg-max-links and --kg-rank-by need --kg; add --kg KIND=VALUE or drop them"
            )
        return None

    return KnowledgeSpec(tuple(args.kg), Budget(**{k: v for k, v in limits.items() if v is not None}))


def _print_knowledge(manifest: dict) -> None:
    record = manifest.get("knowledge")
    if record:
        print(f"knowledge: {record['num_facts']} facts on {record['num_items']} items ({record['file']})")
    for warning in knowledge_warnings(manifest):
        print(f"promptrec: warning: {warning}", file=sys.stderr)

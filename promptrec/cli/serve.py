"""CLI verbs `serve` (the HTTP ranking service) and `playground` (the same app, template playground on)."""

from __future__ import annotations

import sys

from promptrec.cli.common import (
    adapter_defaults,
    add_config_flags,
    add_model_flags,
    command_parser,
    model_flags,
    resolve_path,
)
from promptrec.core.config import resolve
from promptrec.jobs.api import bind, create_app, run
from promptrec.jobs.playground import Playground
from promptrec.jobs.serve import ServeConfig, Service
from promptrec.lm.adapter import open_adapters

EXAMPLES = r"""examples:
  promptrec serve --data data/ml100k-next --adapter adapters/next-64       # http://127.0.0.1:8000
  curl -s localhost:8000/v1/rank -H 'content-type: application/json' \
      -d '{"user_id": "7", "candidates": ["1", "50", "181"]}'
  promptrec serve --model embedded --template movie_next --data data/ml100k-next --port 8080 --playground"""
PLAYGROUND_EXAMPLES = r"""examples:
  promptrec playground --data data/ml100k                # then open http://127.0.0.1:8000/playground
  promptrec playground --data data/ml100k --adapter adapters/tallrec-64 --templates-dir my_templates"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub) -> None:
    serve = command_parser(sub, "serve", "Serve ranking over HTTP (POST /v1/rank, /v1/score).", EXAMPLES)
    add_serve_flags(serve, data_help="next-item dir: requests may name its users and items by id")
    serve.add_argument("--playground", action="store_true", help="also serve the template playground at /playground")
    serve.set_defaults(handler=lambda args: serve_command(args, args.playground))
    playground = command_parser(
        sub, "playground", "Edit, lint, render, diff and score templates in the browser.", PLAYGROUND_EXAMPLES
    )
    add_serve_flags(playground, data_help="prepared data dir whose splits the page renders and scores")
    playground.set_defaults(handler=lambda args: serve_command(args, True))


def add_serve_flags(parser, data_help: str) -> None:
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--adapter", nargs="+", help="adapter dir (omit: zero-shot; several: a seed ensemble)")
    parser.add_argument("--template", help="template (default: the adapter's, else movie_next)")
    parser.add_argument("--split", help="whose contexts a request's user_id stands for (default test)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--templates-dir", default="templates", help="where the playground saves templates")
    parser.add_argument("--max-candidates", type=int, help="candidates per /v1/rank request (default 200)")
    parser.add_argument("--max-prompt-tokens", type=int, help="tokens per prompt (default 4096, or the model's max)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    add_config_flags(parser)
    add_model_flags(parser)


def serve_command(args, playground: bool) -> int:
    adapters = open_adapters(args.adapter)
    flags = {"template": args.template, "split": args.split, "max_candidates": args.max_candidates}
    flags |= {"max_prompt_tokens": args.max_prompt_tokens} | model_flags(args)
    config = resolve(ServeConfig, args.config, args.set, flags, defaults=adapter_defaults(adapters))
    data_dir = resolve_path(args.data) if args.data else None
    sock = bind(args.host, args.port)  # a port in use fails now, not after the model has loaded
    service = Service(config, adapters, data_dir)
    page = Playground(service, data_dir, resolve_path(args.templates_dir)) if playground else None
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"promptrec serve: template {service.template.name}, model {config.model.model}, at {url}", flush=True)
    if page is not None:
        print(f"playground: {url}/playground", flush=True)
    if args.host not in LOOPBACK and not args.host.startswith("127."):
        print(
            f"promptrec: note: listening on {args.host}; put a reverse proxy with TLS and auth in front",
            file=sys.stderr,
        )
    run(create_app(service, page), sock, access_log=not args.no_access_log)
    return 0

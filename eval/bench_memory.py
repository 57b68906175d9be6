"""Benchmark: peak resident memory of `promptrec train` and `promptrec evaluate`, before and after.

Each command runs as a fresh subprocess on the embedded model; its peak RSS is the kernel's figure
for that child (`os.wait4` rusage, ru_maxrss), so nothing is sampled and nothing is missed.
"before" reproduces the old path in the same run: one forward/backward pass per optimizer batch
(`--micro-batch-size` = `--batch-size`, no gradient checkpointing) and the C library's default
allocator policy (the command's handler is called without the CLI's process setup); "after" is the
plain command. Prints one JSON line per command, with the load average around it.

    python eval/bench_memory.py --data data/ml100k                 # train movie_rich 64 shots, evaluate 100
    python eval/bench_memory.py --data data/ml100k --variants after --template tallrec_plain
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The CLI's handler without `main()`'s process setup: the allocator as the C library leaves it.
BARE_HANDLER = (
    "import sys; from promptrec.cli.main import build_parser, quiet_third_party; quiet_third_party(); "
    "args = build_parser().parse_args(sys.argv[1:]); sys.exit(args.handler(args))"
)
ONE_PASS = ["--micro-batch-size", "8", "--set", "gradient_checkpointing=false"]
VARIANTS = {  # name -> (launcher, extra train flags)
    "before": ([sys.executable, "-c", BARE_HANDLER], ONE_PASS),
    "after": ([sys.executable, "-m", "promptrec"], []),
}


def run_measured(argv: list[str], env: dict) -> dict:
    """Run one command to completion; its own peak RSS (MiB), wall seconds and CPU seconds."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    stderr = child.stderr.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}):\n{stderr[-2000:]}")
    return {
        "peak_rss_mib": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def commands(args, work: Path, variant: str) -> dict[str, list[str]]:
    _, train_extra = VARIANTS[variant]
    adapter = work / f"adapter-{variant}"
    train = ["train", "--data", str(args.data), "--template", args.template, "--shots", str(args.shots),
             "--set", f"num_epochs={args.epochs}", "--model", args.model, "--out", str(adapter), "--overwrite",
             *train_extra]  # fmt: skip
    evaluate = ["evaluate", "--data", str(args.data), "--template", args.template, "--limit", str(args.limit),
                "--model", args.model, "--out", str(work / f"eval-{variant}"), "--overwrite"]  # fmt: skip
    return {"train": train, "evaluate": evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/ml100k", help="prepared TALLRec movie split (data prepare movielens)")
    parser.add_argument("--template", default="movie_rich")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (the peak comes in the first)")
    parser.add_argument("--limit", type=int, default=100, help="test examples scored by evaluate")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--commands", nargs="+", default=["train", "evaluate"], choices=["train", "evaluate"])
    args = parser.parse_args()

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        for command in args.commands:  # variants side by side per command, so load drift hits both alike
            for variant in args.variants:
                launcher, _ = VARIANTS[variant]
                argv = [*launcher, *commands(args, Path(tmp), variant)[command]]
                result = {"command": command, "variant": variant, "template": args.template, "model": args.model}
                result |= {"shots": args.shots, "epochs": args.epochs} if command == "train" else {"limit": args.limit}
                print(json.dumps(result | run_measured(argv, env)), flush=True)


if __name__ == "__main__":
    main()

"""Run the benchmark and print (and, for a full run, write) the results table.

    python -m bench            # full run, several minutes; writes docs/PERFORMANCE.md
    python -m bench --smoke    # tiny sizes, seconds: the same code paths, for CI

Every process it starts (daemons, fake providers, the bare app, wrk) is stopped when a phase
ends, also on an exception or Ctrl-C; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import phases, postgres, scale
from bench.common import ROOT, Workdir, export_revision, install_plugin, stop_on_sigterm
from bench.measure import load_average
from bench.results import Results, format_row, render_markdown
from bench.sizes import FULL, SMOKE

PHASES = ("accept", "sustained", "delivery", "postgres", "tenants", "reads")
DOC = ROOT / "docs" / "PERFORMANCE.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds in total")
    parser.add_argument(
        "--only", action="append", choices=PHASES, help="run only this phase (repeatable)"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy the daemon in accept, sustained and delivery (default: on, off with --smoke)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"write the Markdown report here (a full run of every phase: {DOC})",
    )
    parser.add_argument(
        "--postgres",
        metavar="DSN|off",
        default=postgres.server_dsn(),
        help="the PostgreSQL server to make the PostgreSQL rows' databases on (default"
        f" $BENCH_POSTGRES_DSN or {postgres.DEFAULT_DSN}); off: leave the phase out",
    )
    parser.add_argument(
        "--against",
        metavar="REV|DIR",
        help="A/B: also run the daemon of git revision REV (exported with git archive) or of the"
        " source tree DIR in the accept, sustained and postgres phases, alternately with this"
        " tree's, and print the ratios",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    profile = (not args.smoke) if args.profile is None else args.profile
    chosen = args.only or list(PHASES)
    # only a full run of every phase rewrites the report by default
    full = not args.smoke and args.only is None and args.against is None
    output = args.output if args.output is not None else (DOC if full else None)
    command = "python -m bench" + (" --smoke" if args.smoke else "")
    stop_on_sigterm()

    results = Results(smoke=args.smoke)
    results.load_before = load_average()
    if results.load_before > 0.5:
        print(
            f"warning: load average {results.load_before:.2f} before the run: other work on this"
            " machine will lower the numbers",
            file=sys.stderr,
        )
    folder = Path(tempfile.mkdtemp(prefix="pipecored-bench-"))
    started = time.monotonic()
    try:
        (folder / "logs").mkdir()
        work = Workdir(folder, install_plugin(folder / "plugin-site"))
        if args.against:
            tree = Path(args.against)
            if not tree.is_dir():  # a revision: exported; a directory: a tree as it is
                tree = export_revision(args.against, folder / "against")
            work.against = (args.against, tree)
        if "accept" in chosen:
            phases.accept(work, sizes, results, profile)
        if "sustained" in chosen:
            phases.sustained(work, sizes, results, profile)
        if "delivery" in chosen:
            phases.delivery(work, sizes, results, profile)
        if "postgres" in chosen and args.postgres != "off":
            postgres.postgres(work, sizes, results, args.postgres)
        if "tenants" in chosen:
            scale.tenants(work, sizes, results)
        if "reads" in chosen:
            scale.reads(work, sizes, results)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work dir kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results.load_after = load_average()

    print(f"\nresults ({time.monotonic() - started:.0f} s):")
    for row in results.rows:
        print(f"  {format_row(row)}")
    if args.json is not None:
        args.json.write_text(json.dumps(results.to_json(), indent=2), encoding="utf-8")
    if output is not None:
        output.write_text(render_markdown(results, command), encoding="utf-8")
        print(f"written: {output}")
    return 0

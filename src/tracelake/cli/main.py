"""``tracelake``: one command, one subcommand per job, all reading the same YAML config.

Every user-facing failure is a ``TracelakeError`` and becomes one line on stderr and exit status 2;
"trace not found" is exit status 1, like ``grep``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from tracelake.backend import open_backend
from tracelake.config import DEFAULT_TENANT, Config, load_config
from tracelake.db import TraceDB
from tracelake.errors import TracelakeError
from tracelake.logs import setup_logging

EXIT_NOT_FOUND = 1
EXIT_ERROR = 2

log = logging.getLogger("tracelake")


def _open_db(cfg: Config) -> TraceDB:
    return TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)


def cmd_import(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.cli.progress import Progress
    from tracelake.importer import import_files

    total = sum(Path(p).stat().st_size for p in args.files if Path(p).is_file())
    progress = Progress(total, "importing")
    db = _open_db(cfg)
    try:
        stats = import_files(db, args.tenant, args.files, cfg.ingester.max_block_bytes, progress.update)
    finally:
        progress.close()
        db.close()
    print(
        f"imported {stats.spans} spans from {stats.files} file(s) into {len(stats.blocks)} "
        f"block(s) of tenant {args.tenant}"
    )
    for reason, count in sorted(stats.rejected.items()):
        print(f"warning: skipped {count} span(s): {reason.replace('_', ' ')}", file=sys.stderr)
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cmd_blocks(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.block.meta import rfc3339

    db = _open_db(cfg)
    try:
        blocks = db.block_list(args.tenant)
    finally:
        db.close()
    metas = sorted(blocks.metas, key=lambda m: (m.start_unix_nano, m.block_id))
    for error in blocks.unreadable:  # left out of the list: say so, and exit 1
        print(f"unreadable: {error}", file=sys.stderr)
    code = 1 if blocks.unreadable else 0
    if args.json:
        print(json.dumps([m.to_json(with_row_groups=False) for m in metas], indent=2))
        return code
    rows = [("BLOCK ID", "START", "END", "TRACES", "SPANS", "SIZE", "LEVEL")]
    for m in metas:
        rows.append(
            (
                m.block_id,
                rfc3339(m.start_unix_nano),
                rfc3339(m.end_unix_nano),
                str(m.total_traces),
                str(m.total_spans),
                _size(m.size),
                str(m.compaction_level),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    print(
        f"{len(metas)} block(s), {sum(m.total_traces for m in metas)} traces, "
        f"{sum(m.total_spans for m in metas)} spans, {_size(sum(m.size for m in metas))}"
    )
    return code


def cmd_trace(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.codec.encode import spans_to_traces_data
    from tracelake.model.ids import parse_trace_id
    from tracelake.otlp import request_to_otlp_json

    trace_id = parse_trace_id(args.trace_id)
    db = _open_db(cfg)
    try:
        spans = db.find_trace(args.tenant, trace_id)
    finally:
        db.close()
    if spans is None:
        print(f"trace {trace_id.hex()} not found in tenant {args.tenant}", file=sys.stderr)
        return EXIT_NOT_FOUND
    trace = spans_to_traces_data(spans)
    if args.format == "proto":
        sys.stdout.buffer.write(trace.SerializeToString())
        sys.stdout.buffer.flush()
    else:
        print(json.dumps(request_to_otlp_json(trace), indent=2 if args.pretty else None))
    return 0


def cmd_generate(args: argparse.Namespace, cfg: Config) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from tracelake.otlp import request_to_otlp_json
    from tracelake.synth import SynthConfig, generate_request_bytes

    synth = SynthConfig(traces=args.traces, seed=args.seed, services=args.services)
    spans = 0
    with open(args.output, "wb") as out:
        # Serialized requests concatenate into one valid request (repeated fields merge).
        for payload in generate_request_bytes(synth):
            request = ExportTraceServiceRequest.FromString(payload)
            spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            if args.format == "proto":
                out.write(payload)
            else:
                out.write(json.dumps(request_to_otlp_json(request)).encode() + b"\n")
    print(f"wrote {args.traces} traces ({spans} spans) to {args.output}")
    return 0


def cmd_loadgen(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.cli.loadgen import run_loadgen

    accepted = run_loadgen(args.endpoint, args.rate, args.seconds, args.tenant, args.seed)
    print(f"sent {accepted} traces to {args.endpoint}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracelake", description="A distributed-tracing backend on Parquet blocks."
    )
    parser.add_argument(
        "--config",
        help="YAML config file (default: ./tracelake.yaml if present, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level", help="debug, info, warning or error (default: warning; info for servers)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def tenant_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", default=DEFAULT_TENANT, help=f"tenant (default {DEFAULT_TENANT})")

    p = sub.add_parser("import", help="write OTLP files (protobuf, JSON, JSON lines; .gz/.zst) as blocks")
    p.add_argument("files", nargs="+", metavar="FILE")
    tenant_arg(p)
    p.set_defaults(run=cmd_import)

    p = sub.add_parser("blocks", help="list a tenant's blocks")
    tenant_arg(p)
    p.add_argument("--json", action="store_true", help="print the block metas as JSON")
    p.set_defaults(run=cmd_blocks)

    p = sub.add_parser("trace", help="print one trace as OTLP JSON (or protobuf)")
    p.add_argument("trace_id", metavar="TRACE_ID", help="1 to 32 hex characters")
    tenant_arg(p)
    p.add_argument("--format", choices=("json", "proto"), default="json")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(run=cmd_trace)

    p = sub.add_parser("generate", help="write realistic synthetic traces to an OTLP file")
    p.add_argument("output", metavar="FILE")
    p.add_argument("--traces", type=int, default=1000)
    p.add_argument("--services", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("proto", "jsonl"), default="proto")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("loadgen", help="send synthetic traces over OTLP/HTTP at a steady rate")
    p.add_argument("--endpoint", default="http://localhost:4318", help="OTLP/HTTP base URL")
    p.add_argument("--rate", type=float, default=20.0, help="traces per second")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    p.add_argument("--tenant", default=None, help="X-Scope-OrgID to send")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_loadgen, logs="info")

    # Services add their own commands (serve, ...) through entry points: the core never imports them.
    for entry in entry_points(group="tracelake.commands"):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or getattr(args, "logs", "warning"))
    try:
        cfg = load_config(args.config)
        for key in cfg.unknown_keys():
            log.info("config key %s is not used by this version of tracelake", key)
        return args.run(args, cfg)
    except TracelakeError as exc:
        print(f"tracelake: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tracelake: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tracelake trace ID | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""``broker bench``: the load generator (``fanout``, ``chat``, ``idle``, ``connect``,
``recovery``, ``presence``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.bench.params import BenchParams
    from broker.bench.processes import Children
    from broker.bench.runner import Progress

__all__ = ["register"]

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

_SCENARIO_HELP = {
    "fanout": "one room, many members, one publisher: deliveries/s, latency, CPU per delivery",
    "chat": "many small rooms, every member saying at a fixed rate",
    "idle": "many idle joined connections: server RSS per connection",
    "connect": "a reconnect storm: connections/s and time to joined",
    "recovery": "a recovery storm: clients of a SIGKILLed node rejoin another with since",
    "presence": "who is in a big quiet room: presence reply time and CPU per request",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _natural_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _cluster_masters(text: str) -> int:
    value = int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"a Redis Cluster needs at least 3 masters, got {value}")
    return value


def _source_count(text: str) -> int:
    value = _positive_int(text)
    if value > 253:
        raise argparse.ArgumentTypeError(f"at most 253 (127.0.0.2-127.0.0.254), got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("target")
    target.add_argument(
        "--url",
        dest="urls",
        action="append",
        default=[],
        metavar="URL",
        help="WebSocket URL of a running node (repeat for several; clients spread "
        "round-robin); default ws://127.0.0.1:8765/ws unless --spawn",
    )
    target.add_argument(
        "--spawn", action="store_true", help="start the broker(s) for this run (memory backend)"
    )
    target.add_argument(
        "--nodes", type=_positive_int, default=1, help="nodes to spawn (>1 needs a Redis)"
    )
    target.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="spawn the nodes on this Redis (implies --spawn)",
    )
    target.add_argument(
        "--spawn-redis",
        action="store_true",
        help="start a private redis-server and spawn the nodes on it (implies --spawn)",
    )
    target.add_argument(
        "--spawn-redis-cluster",
        action="store_true",
        help="start a private Redis Cluster (--cluster-masters masters, one replica each) and "
        "spawn the nodes on it with --redis-cluster (implies --spawn); the table adds what "
        "each shard served",
    )
    target.add_argument(
        "--cluster-masters",
        type=_cluster_masters,
        metavar="N",
        help="masters of --spawn-redis-cluster (default 3, the least Redis Cluster allows)",
    )
    target.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="spawn each node as `broker serve --workers N` (N processes on one port with "
        "SO_REUSEPORT; needs --spawn-redis or --redis); CPU and RSS are the workers' sum",
    )
    target.add_argument(
        "--server-pid",
        dest="server_pids",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="PID of a given node, to measure its CPU and RSS (repeat per node)",
    )
    target.add_argument(
        "--server-args",
        default="",
        metavar="ARGS",
        help="extra `broker serve` options for spawned nodes, in one quoted string",
    )
    target.add_argument(
        "--history-size",
        type=_natural_int,
        metavar="N",
        help="--history-size of spawned nodes (0: history and positions off; default: the "
        "nodes' own, 100); --server-args can say it too and has the last word",
    )
    target.add_argument(
        "--redis-pid",
        type=int,
        metavar="PID",
        help="PID of the redis-server the nodes use, to measure its CPU (--spawn-redis "
        "knows it already)",
    )
    target.add_argument(
        "--compare",
        choices=["textbook"],
        help="also run the same load against the textbook baseline (needs --spawn)",
    )
    load = common.add_argument_group("load generator")
    load.add_argument(
        "--clients-procs",
        type=_positive_int,
        metavar="N",
        help="worker processes for the members (default: one per 500 connections, at most 4, "
        "but at least one per 15,000 so that none nears its file-descriptor limit)",
    )
    load.add_argument(
        "--connect-concurrency",
        type=_positive_int,
        default=64,
        metavar="N",
        help="handshakes in flight per worker (default 64)",
    )
    load.add_argument(
        "--connect-rate",
        type=_positive_float,
        metavar="R",
        help="start at most R connections per second overall (default: as fast as "
        "--connect-concurrency allows)",
    )
    load.add_argument(
        "--source-addresses",
        type=_source_count,
        metavar="N",
        help="connect from N loopback addresses, 127.0.0.2 onwards (default: as many as the "
        "ephemeral port range needs for the connections to one node URL; none below that)",
    )
    load.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="abort the whole run after this long (default 120)",
    )
    load.add_argument(
        "--drain",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="after the last reply, wait this long for deliveries still in flight (default 10)",
    )
    load.add_argument(
        "--json", action="store_true", help="print one JSON record on stdout (the table on stderr)"
    )
    return common


def _messages(parser: argparse.ArgumentParser, messages: int, help_text: str) -> None:
    parser.add_argument("--messages", type=int, default=messages, metavar="M", help=help_text)
    parser.add_argument(
        "--body-size",
        type=_positive_int,
        default=200,
        metavar="BYTES",
        help="JSON body size (default 200)",
    )
    parser.add_argument(
        "--window",
        type=_positive_int,
        default=64,
        metavar="N",
        help="says a publisher may have without an ok (default 64)",
    )


def register(subparsers: Any) -> None:
    """Add ``bench`` and one sub-subcommand per scenario."""
    from broker.bench.report import column_help

    bench = subparsers.add_parser(
        "bench",
        help="measure a broker: fan-out, chat, idle memory, connect and recovery storms, presence",
        description=(
            "Drive a running broker (--url) or one started for the run (--spawn) and "
            "report throughput, latency, server CPU per delivery and memory. Every "
            "delivery is checked: a missing, duplicate or reordered message fails the run."
        ),
        epilog=(
            "Each scenario's table is explained row by row in `broker bench SCENARIO --help`. "
            "A measured window under 1 s gives rough numbers: the run warns and suggests a size "
            "that would measure about 1 s."
        ),
    )
    scenarios = bench.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    common = _common()
    parsers = {
        name: scenarios.add_parser(
            name,
            parents=[common],
            help=text,
            description=text,
            epilog=column_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, text in _SCENARIO_HELP.items()
    }
    fanout = parsers["fanout"]
    fanout.add_argument(
        "--members",
        type=_positive_int,
        default=1000,
        metavar="S",
        help="receiving members (default 1000)",
    )
    _messages(fanout, 1000, "messages the publisher says (default 1000)")
    fanout.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="offer R deliveries/s (paced says) instead of saturating; reports whether it held",
    )
    chat = parsers["chat"]
    chat.add_argument("--rooms", type=_positive_int, default=100, help="rooms (default 100)")
    chat.add_argument(
        "--room-size",
        type=_positive_int,
        default=10,
        metavar="K",
        help="members per room (default 10)",
    )
    chat.add_argument(
        "--say-rate",
        type=_positive_float,
        default=2.0,
        metavar="R",
        help="says per second of each member (default 2)",
    )
    _messages(chat, 20, "messages each member says (default 20)")
    recovery = parsers["recovery"]
    recovery.add_argument(
        "--connections",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="clients of the node that is killed (default 2000)",
    )
    recovery.add_argument(
        "--rooms", type=_positive_int, default=1, help="rooms they are spread over (default 1)"
    )
    recovery.add_argument(
        "--gap",
        type=_positive_int,
        default=50,
        metavar="M",
        help="messages said per room while the clients are away (default 50; at most the "
        "nodes' --history-size, or nothing can be recovered)",
    )
    presence = parsers["presence"]
    presence.add_argument(
        "--members",
        type=_positive_int,
        default=10000,
        metavar="S",
        help="members of the room besides the asker (default 10000)",
    )
    presence.add_argument(
        "--requests",
        type=_positive_int,
        default=500,
        metavar="N",
        help="presence requests the asker sends (default 500)",
    )
    presence.add_argument(
        "--in-flight",
        type=_positive_int,
        default=1,
        metavar="K",
        help="requests the asker has without a reply (default 1: one after the other)",
    )
    parsers["idle"].add_argument(
        "--idle-seconds",
        type=_positive_float,
        metavar="S",
        help="after the memory reading, let every connection idle S seconds and report the "
        "server's CPU as %% of one core (take at least 2 of the nodes' --ping-interval, "
        "default 20, so that keepalive pings are in it)",
    )
    for name, default in (("idle", 5000), ("connect", 1000)):
        parsers[name].add_argument(
            "--connections",
            type=_positive_int,
            default=default,
            metavar="N",
            help=f"client connections (default {default})",
        )
        parsers[name].add_argument(
            "--room-size",
            type=_positive_int,
            default=10,
            metavar="K",
            help="members per room (default 10)",
        )
    bench.set_defaults(func=_bench)


def _params(args: argparse.Namespace) -> BenchParams:
    from broker.bench.params import BenchParams

    spawn = bool(args.spawn or args.redis_url or args.spawn_redis or args.spawn_redis_cluster)
    if sum(map(bool, (args.redis_url, args.spawn_redis, args.spawn_redis_cluster))) > 1:
        raise ValueError("give one of --redis URL, --spawn-redis and --spawn-redis-cluster")
    if args.cluster_masters is not None and not args.spawn_redis_cluster:
        raise ValueError("--cluster-masters sizes --spawn-redis-cluster: give it too")
    if args.compare and args.scenario == "recovery":
        raise ValueError("--compare has no baseline for recovery (the textbook keeps no history)")
    if args.compare and args.scenario == "presence":
        raise ValueError("--compare has no baseline for presence (the textbook keeps none)")
    if args.compare and not spawn:
        raise ValueError("--compare needs --spawn (the baseline is started by the run)")
    if args.nodes > 1 and not (args.redis_url or args.spawn_redis or args.spawn_redis_cluster):
        raise ValueError("--nodes > 1 needs --redis URL, --spawn-redis or --spawn-redis-cluster")
    if args.workers > 1 and not (args.redis_url or args.spawn_redis):
        raise ValueError("--workers > 1 needs --spawn-redis or --redis URL (workers share Redis)")
    if spawn and args.urls:
        raise ValueError("give either --url or --spawn, not both")
    if args.history_size is not None and not spawn:
        raise ValueError(
            "--history-size sets spawned nodes: give --spawn (or say it to your nodes)"
        )
    if args.scenario == "recovery" and (args.nodes < 2 or not spawn):
        raise ValueError(
            "recovery kills a node it started: give --spawn-redis (or --redis URL) and --nodes 2"
        )
    if getattr(args, "messages", 1) < 0:
        raise ValueError("--messages must not be negative")
    known = {
        key: value
        for key, value in vars(args).items()
        if key in BenchParams.__dataclass_fields__ and value is not None
    }
    known["urls"] = tuple(args.urls or ([] if spawn else ["ws://127.0.0.1:8765/ws"]))
    known["server_pids"] = tuple(args.server_pids)
    known["spawn"] = spawn
    return BenchParams(**known)


async def _bounded(params: BenchParams, children: Children, progress: Progress) -> dict[str, Any]:
    """The run under ``--timeout``; SIGTERM cancels it like Ctrl-C does."""
    import asyncio
    import signal

    from broker.bench.runner import run_bench

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with asyncio.timeout(params.timeout):
        return await run_bench(params, children, progress)


def _bench(args: argparse.Namespace) -> int:
    import asyncio

    from broker.bench.processes import Children
    from broker.bench.report import format_table
    from broker.bench.runner import Progress
    from broker.bench.worker import raise_open_file_limit
    from broker.runtime import run_async

    try:
        params = _params(args)
    except ValueError as exc:
        print(f"broker bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise_open_file_limit()  # spawned nodes inherit it: thousands of sockets
    children = Children()
    progress = Progress()
    failure: tuple[str, int] | None = None
    try:
        record = run_async(_bounded(params, children, progress))
    except TimeoutError:
        failure = (f"aborted after --timeout {params.timeout:g} s", EXIT_TIMEOUT)
    except (KeyboardInterrupt, asyncio.CancelledError):
        failure = ("interrupted", EXIT_INTERRUPTED)
    except (RuntimeError, OSError) as exc:
        failure = (str(exc), EXIT_PROBLEMS)
    finally:
        children.end_all()
    if failure is not None:
        message, code = failure
        print(
            f"broker bench: {message} (while {progress.phase}); every process it started "
            "has been ended",
            file=sys.stderr,
        )
        return code
    table = format_table(record)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(record))
    else:
        print(table)
    return 0 if record["ok"] else EXIT_PROBLEMS

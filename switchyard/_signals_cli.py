"""``switchyard signals simulate``: simulated classrooms writing SignalFrames to the
``classroom-signals`` topic (or, with --stdout, printing them as JSON lines).

By default each classroom sends one frame a second, in real time, as its devices would;
--rate R sends R frames a second overall instead (--rate 0: as fast as the broker
takes them), with the device clocks in the past so ingest takes every frame.
--grant-consent SHARE first records guardians' opt-ins for that share of the simulated
students through ingest's ConsentService (without consent ingest drops a student's signals).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone

from switchyard._settings import Settings
from switchyard.signals import (
    DEFAULT_TENANT,
    SignalProducer,
    SimulationConfig,
    consent_plan,
    count_signals,
    frame_to_json,
    grant_consents,
    simulate,
)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def add_signals_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="signals_action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "simulate", help="simulated classrooms send SignalFrames to classroom-signals",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("--classrooms", type=int, default=4, help="classrooms (default 4)")
    p.add_argument("--seats", type=int, default=30, help="seats per classroom (default 30)")
    p.add_argument("--seconds", type=int, default=60,
                   help="seconds of class to simulate (default 60)")
    p.add_argument("--rate", type=float, default=None,
                   help="frames per second overall (default: real time, one frame per "
                        "classroom a second; 0: as fast as possible)")
    p.add_argument("--json", action="store_true",
                   help="send frames as JSON instead of protobuf")
    p.add_argument("--tenant", default=DEFAULT_TENANT,
                   help=f"the school (tenant) the frames belong to (default {DEFAULT_TENANT})")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--duplicates", type=_share, default=0.0, metavar="SHARE",
                   help="share of frames sent twice")
    p.add_argument("--late", type=_share, default=0.0, metavar="SHARE",
                   help="share of frames sent 20-90 s after the second they observed")
    p.add_argument("--flooding", type=int, default=0, metavar="N",
                   help="the last N classrooms have a faulty camera sending 20 frames a "
                        "second of noise")
    p.add_argument("--absent-classrooms", type=int, default=0, metavar="N",
                   help="the first N classrooms have an attendance problem")
    p.add_argument("--grant-consent", type=_share, default=None, metavar="SHARE",
                   help="first grant class-analytics consent to this share of the students "
                        "(and individual support to 60%% and fairness monitoring to 80%% of "
                        "those) through ingest's ConsentService")
    p.add_argument("--stdout", action="store_true",
                   help="print the frames as JSON lines instead of sending them")


def config_from(args: argparse.Namespace) -> SimulationConfig:
    realtime = args.rate is None
    start = datetime.now(timezone.utc).replace(microsecond=0) if realtime and not args.stdout \
        else None
    return SimulationConfig(
        classrooms=args.classrooms, seats=args.seats, seconds=args.seconds,
        tenant_id=args.tenant, seed=args.seed, start=start, duplicate_rate=args.duplicates,
        late_rate=args.late, flooding_classrooms=args.flooding,
        anomalous_classrooms=args.absent_classrooms)


async def simulate_to_broker(settings: Settings, config: SimulationConfig,
                             rate: float | None, as_json: bool) -> str:
    async with SignalProducer(settings) as producer:
        report = await producer.produce(simulate(config), rate=rate or None,
                                        realtime=rate is None, as_json=as_json)
    return report.line()


def run_signals(args: argparse.Namespace, settings: Settings) -> int:
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"switchyard signals simulate: {exc}", file=sys.stderr)
        return 2
    if args.rate is not None and args.rate < 0:
        print("switchyard signals simulate: --rate must be 0 or more", file=sys.stderr)
        return 2
    if args.stdout:
        frames = signals = 0
        try:
            for emission in simulate(config):
                sys.stdout.write(frame_to_json(emission.frame).decode() + "\n")
                frames += 1
                signals += count_signals(emission.frame)
        except BrokenPipeError:   # `| head`: the reader has what it wanted
            return 0
        print(f"{frames} frames, {signals} signals", file=sys.stderr)
        return 0
    if args.grant_consent is not None:
        import grpc

        grants = consent_plan(config, class_analytics=args.grant_consent)
        try:
            granted = asyncio.run(grant_consents(settings, grants))
        except grpc.aio.AioRpcError as exc:
            print(f"switchyard signals simulate: consent refused ({exc.code().name}: "
                  f"{exc.details()})", file=sys.stderr)
            return 1
        students = len({g.subject_ref for g in grants})
        print(f"granted {granted} consents for {students} of "
              f"{config.classrooms * config.seats} students (tenant {config.tenant_id})")
    pace = "in real time" if args.rate is None else \
        "as fast as possible" if args.rate == 0 else f"at {args.rate:g} frames/s"
    print(f"simulating {config.classrooms} classrooms x {config.seats} seats for "
          f"{config.seconds}s of class, {pace}, as {'JSON' if args.json else 'protobuf'}",
          file=sys.stderr)
    print(asyncio.run(simulate_to_broker(settings, config, args.rate, args.json)))
    return 0

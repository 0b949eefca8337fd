"""``python -m netpersona.probe listen|send``: see :mod:`netpersona.probe`."""

from __future__ import annotations

import argparse
import json
import sys

from netpersona.probe.listen import Group, listen
from netpersona.probe.send import hold_session, run_probes


def _group(text: str) -> Group:
    address, _, port = text.rpartition(":")
    return Group(address.strip("[]"), int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netpersona.probe")
    sub = parser.add_subparsers(dest="command", required=True)
    receive = sub.add_parser("listen", help="receive probes; one JSON line per probe")
    receive.add_argument("--tcp", type=int, action="append", default=[], metavar="PORT")
    receive.add_argument("--udp", type=int, action="append", default=[], metavar="PORT")
    receive.add_argument("--group", type=_group, action="append", default=[], metavar="ADDR:PORT")
    receive.add_argument("--ifname", help="the interface to join groups on")
    receive.add_argument("--duration", type=float, default=60.0)
    receive.add_argument("--no-ipv6", action="store_true")
    send = sub.add_parser("send", help="send probes given as a JSON list; print results")
    send.add_argument("probes", help="JSON list of probes, or - for stdin")
    hold = sub.add_parser("hold", help="hold one TCP connection; send a probe per stdin line")
    hold.add_argument("dst")
    hold.add_argument("port", type=int)
    args = parser.parse_args(argv)
    if args.command == "hold":
        hold_session(args.dst, args.port, sys.stdin, sys.stdout)
        return 0
    if args.command == "listen":
        listen(
            args.tcp,
            args.udp,
            args.group,
            ifname=args.ifname,
            duration=args.duration,
            ipv6=not args.no_ipv6,
        )
        return 0
    text = sys.stdin.read() if args.probes == "-" else args.probes
    print(json.dumps(run_probes(json.loads(text))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`pipeline serve --run RUN` (the run's person model) or `--model M`: the webcam page, on loopback
unless told otherwise."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from fertransfer.errors import StageError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def allowed_host_names(host: str, extra: list[str] | None) -> list[str]:
    """The Host names the server answers (each meaning the served port): the loopback names, the
    address it is bound to unless that is a wildcard, and the names given with --allowed-host."""
    names = [*LOOPBACK_NAMES]
    if not is_loopback(host) and host not in WILDCARD_HOSTS:
        names.append(f"[{host.strip('[]')}]" if ":" in host else host)
    return [*names, *(extra or [])]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, opened before serving so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise StageError(f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port") from None
    sock.listen(128)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import numpy as np
    import uvicorn

    from fertransfer.classify.cli import load_model_and_detector
    from fertransfer.classify.predict import predict_image

    from .app import create_app

    run_dir = Path(args.run) if args.run else None
    if run_dir is not None and not run_dir.is_dir():
        raise StageError(f"--run {run_dir}: no such run folder")
    if args.threads < 0:
        raise StageError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    classifier, detector = load_model_and_detector(args)
    predict_image(classifier, np.zeros((480, 640, 3), np.uint8), detector)  # load the networks before the first visitor
    if not is_loopback(args.host):
        print(f"warning: serving on {args.host}, not loopback: anyone who can reach this machine can send it images"
              f"{' and read the run pages' if run_dir else ''}; browsers allow the camera only on https or "
              f"localhost, so other machines get the photo upload only", file=sys.stderr)
        if args.host in WILDCARD_HOSTS and not args.allowed_host:
            print("warning: no --allowed-host given: requests that name this machine otherwise than localhost "
                  "are refused (400); pass --allowed-host NAME for each name or address clients use",
                  file=sys.stderr)
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    app = create_app(classifier, detector, run_dir=run_dir, port=port,
                     allowed_hosts=allowed_host_names(args.host, args.allowed_host))
    shown = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    print(f"serving {classifier.engine} model ({', '.join(classifier.classes)}) on http://{shown}:{port}/"
          f"  (Ctrl+C stops)", flush=True)
    # log_config=None keeps the logging main() set up; uvicorn's own would replace every handler,
    # and absl's (imported with keras) closes its stream when replaced.
    uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning")).run(sockets=[sock])
    return 0


def add_commands(subparsers) -> None:
    from fertransfer.classify.cli import add_model_arguments

    p = subparsers.add_parser("serve", help="a web page that classifies the faces in your camera's frames and photos")
    add_model_arguments(p, min_face_size=80,
                        run_help="a run folder: its classify/person_model is the model when --model is not given, "
                                 "and the page serves its report.html and gallery pages and the pictures they show "
                                 "(nothing else of it) and links them")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a Host name (or name:port) clients use to reach the server, repeatable; localhost, "
                        "127.0.0.1, [::1] and the --host address are always allowed, with the served port")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default, every core); one is fastest on a shared machine")
    p.set_defaults(func=cmd_serve)

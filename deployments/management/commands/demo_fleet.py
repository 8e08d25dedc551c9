"""Run the demo fleet until interrupted: ``manage.py demo_fleet [--port 8080] [--no-nginx]``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from deployments.demo.fleet import DemoFleet


class Command(BaseCommand):
    help = "Start sample instances (two slots) behind a private nginx (or the static router) for the demo."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8080, help="nginx listen port on 127.0.0.1")
        parser.add_argument("--no-nginx", action="store_true", help="use the static router even with nginx")
        parser.add_argument("--once", action="store_true", help="set up, print, stop (for checks)")

    def handle(self, *args: Any, **options: Any) -> None:
        fleet = DemoFleet(settings.DATA_DIR, port=options["port"], use_nginx=not options["no_nginx"])
        stopping = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        env = fleet.start()
        try:
            router = f"nginx on {fleet.url}" if fleet.url else "static router (nginx not installed)"
            self.stdout.write(f"demo fleet: environment {env} with 4 instances, {router}")
            for instance in env.instances.order_by("name"):
                self.stdout.write(f"  {instance.name:8} {instance.slot:6} {instance.address}")
            self.stdout.flush()
            if not options["once"]:
                stopping.wait()
        finally:
            fleet.stop()

"""Evaluate alert rules and send webhook attempts, in a loop (model: healthchecks' sendalerts).

Run any number of these: each rule is claimed with a conditional UPDATE per tick
and each webhook attempt with another, so nothing fires or is sent twice.
SIGTERM/SIGINT stop it after the current pass.
"""

import signal
import threading

from django.core.management.base import BaseCommand

from analytics import alerts


class Command(BaseCommand):
    help = "Evaluate alert rules and deliver webhooks, in a loop."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between passes")

    def handle(self, *args, **options):
        stopping = threading.Event()

        def stop(signum, frame):
            self.stdout.write("run_alerts: stopping after the current pass")
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        passes = 0
        while not stopping.is_set():
            evaluated, sent = alerts.tick()
            passes += 1
            if evaluated or sent:
                self.stdout.write(f"run_alerts: evaluated {evaluated} rule(s), sent {sent} webhook attempt(s)")
                self.stdout.flush()
            if options["once"]:
                break
            stopping.wait(options["interval"])
        self.stdout.write(f"run_alerts: stopped after {passes} pass(es)")

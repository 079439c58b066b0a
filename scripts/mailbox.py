#!/usr/bin/env python3
"""A real SMTP server for the tests and the demo: aiosmtpd (PyPI), keeping every message it
accepts as a file, so that a test or the demo reads what a buyer would have received.

    mailbox.py --port 2525 --dir DIR

Each accepted message is written to DIR/NNNNNN.eml (the message as sent, headers and body)
with its envelope in DIR/NNNNNN.json, written to a temporary name first and renamed, so a
reader never sees half a message. A recipient whose local part starts with "refuse" is
refused at RCPT (550, as a server refuses an unknown mailbox); one starting with "busy" is
refused for now (451, as a greylisting server does). Prints "ready HOST:PORT" once it listens.
"""

import argparse
import asyncio
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, directory):
        self.directory = directory
        self.lock = threading.Lock()
        self.count = len([n for n in os.listdir(directory) if n.endswith(".eml")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("refuse"):
            return "550 5.1.1 no such mailbox here"
        if local.startswith("busy"):
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = "%06d" % self.count
        path = os.path.join(self.directory, name)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(path + ".eml.tmp", "wb") as f:
            f.write(data)
        with open(path + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(path + ".json.tmp", path + ".json")
        os.rename(path + ".eml.tmp", path + ".eml")
        return "250 2.0.0 kept as " + name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Keep(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print("ready %s:%d" % (args.host, args.port), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()

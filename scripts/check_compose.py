"""Checks the compose file without a Docker engine: valid YAML, every service defined with an
image or a build, the raffle services configured through the variables the code reads."""
import re
import sys
from pathlib import Path

import yaml

path = Path(sys.argv[1])
doc = yaml.safe_load(path.read_text())
services = doc.get("services") or {}
problems = []
if not services:
    problems.append("no services")
PREFIX = r"(?:RAFFLE|DATABASE|KAFKA|INGEST|ADMIN)_"
known = set()
for source in [*Path(".").glob("*/src/**/*.rs"), *Path("src").glob("**/*.rs")]:
    known |= set(re.findall(r'"(' + PREFIX + r'[A-Z0-9_]+)"', source.read_text()))
for name, svc in services.items():
    if "image" not in svc and "build" not in svc:
        problems.append(f"service {name} has neither image nor build")
    if "build" not in svc:
        continue  # third-party images (Kafka, Postgres) have variables of their own
    env = svc.get("environment") or {}
    for var in env:
        if re.match("^" + PREFIX, var) and var not in known:
            problems.append(f"service {name} sets {var}, which the code never reads")
for p in problems:
    print(f"compose: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)

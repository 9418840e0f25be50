"""`streampair-producer` / `python -m producer`."""

from __future__ import annotations

import sys

from streampair.settings import load_settings

from producer.app import build_runtime
from producer.settings import ProducerSettings


def main() -> None:
    settings = load_settings(ProducerSettings, "streampair-producer")
    sys.exit(build_runtime(settings).run())


if __name__ == "__main__":
    main()

"""`streampair-consumer` / `python -m consumer`."""

from __future__ import annotations

import sys

from streampair.settings import load_settings

from consumer.app import build_runtime
from consumer.settings import ConsumerSettings


def main() -> None:
    settings = load_settings(ConsumerSettings, "streampair-consumer")
    sys.exit(build_runtime(settings).run())


if __name__ == "__main__":
    main()

"""``python -m model_server [key=value ...]``: the InferenceService container's entry point.

Serves ``GET /recommend/<user_id>``, the V1/V2 inference protocols and ``/metrics`` for the
registry version the ``serving`` config names, e.g.
``python -m model_server serving.http_port=8090 serving.alias=champion``.
"""

from __future__ import annotations

import sys

from model_server.server import load_config, run
from movierec_core.config import asks_help, split_overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if asks_help(args):
        print(__doc__)
        return 0
    if args:
        print(f"unknown arguments {args}; expected key=value overrides, e.g. "
              "serving.http_port=8090 serving.alias=champion", file=sys.stderr)
        return 2
    run(load_config(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m model_server [key=value ...]``: the InferenceService container's entry point."""

from __future__ import annotations

import sys

from model_server.server import load_config, run
from movierec_core.config import split_overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if args:
        print(f"unknown arguments {args}; expected key=value overrides, e.g. "
              "serving.http_port=8090 serving.alias=champion", file=sys.stderr)
        return 2
    run(load_config(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())

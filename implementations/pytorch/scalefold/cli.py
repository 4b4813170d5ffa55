"""`scalefold` command line. Sub-commands are added as their features land."""

from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from scalefold.model import AlphaFold, AlphaFoldConfig

    preset = getattr(AlphaFoldConfig, args.preset)()
    with torch.device("meta"):
        model = AlphaFold(preset)
    n = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} parameters={n:,} tensors={len(model.state_dict())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalefold", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="describe a model preset")
    info.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

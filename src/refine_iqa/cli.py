"""The `refine-iqa` command: checks, single workflow steps, curation, review, and scoring images."""

from __future__ import annotations

import argparse
import sys


def _params(path: str) -> dict:
    from refine_iqa.config import load_params, validate
    from refine_iqa.io_utils import read_json

    if path.endswith(".json"):  # the workflow's resolved settings
        return validate(read_json(path), source=path)
    return load_params(path)


def cmd_check(args) -> int:
    from refine_iqa.config import check_paths, load_params

    p = load_params(args.params)
    check_paths(p, args.params)
    print(f"{args.params}: valid ({'overlay ' + p['overlay'] if p['overlay'] else 'embedded configuration'})")
    return 0


def cmd_build_model(args) -> int:
    from refine_iqa.stages.model import build_model

    print(build_model(_params(args.params), args.out))
    return 0


def cmd_stage1(args) -> int:
    from refine_iqa.stages.stage1 import train_stage1

    train_stage1(_params(args.params), args.base, args.manifest, args.out, args.curve)
    return 0


def cmd_stage2(args) -> int:
    from refine_iqa.stages.stage2 import train_stage2

    train_stage2(_params(args.params), args.init, args.train, args.out, args.curve, variant=args.variant)
    return 0


def cmd_score(args) -> int:
    from refine_iqa.inference import run_score_cli

    return run_score_cli(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="refine-iqa", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate params.yaml and check every path it names")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("build-model", help="build the embedded tiny Qwen2.5-VL into a folder")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_build_model)

    p = sub.add_parser("train-stage1", help="Stage-1 GRPO (multi-task perception, no-think)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--base", required=True, help="model folder to start from")
    p.add_argument("--manifest", required=True, help="Refine-Perception manifest.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--curve", required=True, help="per-step training log (JSON Lines)")
    p.set_defaults(func=cmd_stage1)

    p = sub.add_parser("train-stage2", help="Stage-2 GRPO (scoring, think mode, PD reward, modified advantage)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--init", required=True, help="model folder to start from (Stage-1 or base)")
    p.add_argument("--train", required=True, help="scoring_train.jsonl")
    p.add_argument("--variant", default="main")
    p.add_argument("--out", required=True)
    p.add_argument("--curve", required=True)
    p.set_defaults(func=cmd_stage2)

    p = sub.add_parser("score", help="score images with a trained model")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--think", action="store_true", help="think mode (also prints the model's interpretation)")
    p.add_argument("--mode", choices=["prob", "numeric"], default="prob")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p.add_argument("--tags", choices=["paper", "xml"], default="paper")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=cmd_score)

    from refine_iqa.data.curate import register_cli as curate_cli
    from refine_iqa.review.cli import register_cli as review_cli

    curate_cli(sub)
    review_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from refine_iqa.config import ConfigError
    from refine_iqa.model.loading import ModelFolderError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ModelFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

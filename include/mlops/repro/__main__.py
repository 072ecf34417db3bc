"""python -m include.mlops.repro snapshot|train|evaluate|report|reproduce (dvc.yaml's stages, make report and make
reproduce)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.mlops.repro", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("snapshot", help="the snapshot's curated days (data/snapshot)")
    sub.add_parser("train", help="the model on the snapshot (build/model)")
    sub.add_parser("evaluate", help="metrics, gate checks and plot data (build/metrics.json, gate.json, plots/)")
    rep = sub.add_parser("report", help="report.md: this branch's model against the base revision's")
    rep.add_argument("--base-rev", required=True, help="the revision compared with (the default branch)")
    base = rep.add_mutually_exclusive_group(required=True)
    base.add_argument("--base-model", type=Path, help="the base revision's build/model, as DVC fetched it")
    base.add_argument("--no-base-model", action="store_true", help="the base revision has no model (first one)")
    rep.add_argument("--metrics-diff", type=Path, required=True, help="dvc metrics diff BASE --md, as a file")
    rep.add_argument("--params-diff", type=Path, required=True, help="dvc params diff BASE --md, as a file")
    rep.add_argument("--out", type=Path, default=Path("report.md"))
    again = sub.add_parser("reproduce", help="a registered version trained again from its DVC snapshot, compared")
    again.add_argument("--version", required=True, help="the registered version (a number)")
    again.add_argument("--dvc", default=".venv-dvc/bin/dvc", help="the dvc command (make reproduce passes it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from . import stages

    try:
        if args.cmd == "snapshot":
            stages.snapshot()
        elif args.cmd == "train":
            stages.train()
        elif args.cmd == "evaluate":
            stages.evaluate()
        elif args.cmd == "reproduce":
            from .rebuild import RebuildError, reproduce

            if not args.version.isdigit():
                print(f"error: VERSION={args.version!r}: a registered version's number", file=sys.stderr)
                return 2
            try:
                reproduce(args.version, args.dvc)
            except RebuildError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        else:
            from . import report

            decision = report.write(
                args.out,
                stages.MODEL_DIR,
                args.base_model,
                args.base_rev,
                args.metrics_diff.read_text(),
                args.params_diff.read_text(),
            )
            print(f"{args.out}: gate {'PASSED' if decision['passed'] else 'FAILED: ' + ', '.join(decision['failed'])}")
            return 0 if decision["passed"] else 1
    except stages.StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

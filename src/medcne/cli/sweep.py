"""`medcne sweep CONFIG --out DIR`: datasets x methods x seeds as run folders, resumable, with a report.

CONFIG is a TOML file or a shipped configuration (``paper``, ``quick``,
``head_init``, ``schedules``); or give a dataset instead for the shorthand
``medcne sweep DATA --presets simclr,rot90,rotate --seeds 3 --quick --out DIR``.
Rerunning the same command skips finished cells and resumes interrupted ones;
``medcne sweep --report DIR`` writes the tables and figure at any time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..defaults import BACKBONES, DEVICES, HEAD_INITS, PRECISIONS, shipped_configs
from ..errors import MedcneError
from ..params import check_all
from .common import add_data_options, data_spec
from .fit import parse_lr

# Values of the data options when none is given (a config's datasets carry their own).
SHIPPED = shipped_configs()
DATA_DEFAULTS = dict(format="auto", channels="keep", seed=0, skip_bad=False, path_column="path", allow_outside=False)


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="which augmentations suit my data? datasets x methods x seeds, resumable",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", metavar="CONFIG|DATA",
                   help=f"a .toml config, a shipped one ({', '.join(SHIPPED)}), or a dataset for the shorthand")
    p.add_argument("--out", metavar="DIR", help="the sweep folder (one run folder per cell)")
    p.add_argument("--report", metavar="DIR", help="only write the report of the sweep in DIR")
    p.add_argument("--list", action="store_true", help="print the cells and their status; run nothing")
    p.add_argument("--data", action="append", metavar="PATH",
                   help="run the config on this dataset instead of its own (repeat for several)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the config's relative dataset paths live (default $MEDCNE_DATA, else the config's "
                        "[sweep] data_dir, else the config's folder)")
    p.add_argument("--datasets", help="only these datasets of the config (comma-separated)")
    p.add_argument("--methods", help="only these methods of the config, or of the shorthand's --presets and "
                   "--baselines (comma-separated)")
    g = p.add_argument_group("shorthand (a dataset instead of a config)")
    g.add_argument("--presets", default=None, help="t-SimCNE presets, e.g. simclr,rot90,rotate (the default)")
    g.add_argument("--baselines", default="", help="baseline methods too, e.g. tsne-pixels,tsne-simclr")
    g.add_argument("--seeds", default=None, help="a count N (seeds 0..N-1) or a list 0,1,2 (default 1; a config's own)")
    g = p.add_argument_group("t-SimCNE settings for every t-SimCNE cell (win over the config)")
    g.add_argument("--quick", action="store_true", help="fast CPU settings (as `medcne fit --quick`)")
    g.add_argument("--paper", action="store_true",
                   help="the paper's settings and schedule also on a CPU (as `medcne fit --paper`); without it, "
                        "a CPU cell that names no epochs trains within a 15-minute budget")
    g.add_argument("--epochs", help="epochs of the three stages, e.g. 12,1,6")
    g.add_argument("--warmup", help="warm-up epochs per stage")
    g.add_argument("--batch-size", type=int, help="images per batch")
    g.add_argument("--lr", help="peak learning rate or 'auto'")
    g.add_argument("--width", type=int, help="backbone base channels")
    g.add_argument("--backbone", choices=BACKBONES, help="the ResNet (default resnet18)")
    g.add_argument("--head-init", choices=HEAD_INITS, help="stage 2's fresh 2D layer (as `medcne fit --head-init`)")
    g.add_argument("--device", choices=DEVICES, help="where to train (default auto: a GPU when there is one)")
    g.add_argument("--precision", choices=PRECISIONS, help="backbone arithmetic (as `medcne fit --precision`)")
    g.add_argument("--budget", metavar="TIME",
                   help="a time budget per t-SimCNE cell, e.g. 15m (as `medcne fit --budget`)")
    g.add_argument("--quiet", action="store_true", help="no training progress bars inside cells")
    add_data_options(p)
    p.set_defaults(func=run)


def overrides(args) -> dict:
    """The t-SimCNE settings given on the command line."""
    lr = parse_lr(args.lr)
    if lr is not None:
        check_all({"lr": lr})
    given = dict(quick=args.quick or None, paper=args.paper or None, epochs=args.epochs, warmup=args.warmup, batch_size=args.batch_size,
                 lr=lr, width=args.width, backbone=args.backbone, head_init=args.head_init, device=args.device,
                 precision=args.precision, budget=args.budget)
    given = {k: v for k, v in given.items() if v is not None}
    # Checked as given, so that a bad value names its option, whatever config it would go into.
    check_all(given)
    return given


def build_config(args):
    """The configuration: a file or shipped name, or the shorthand around a dataset."""
    from ..sweep import load_config, shipped, shorthand, with_data
    from ..sweep.config import parse_seeds

    target = args.config
    spec = data_spec(args)
    is_config = target.endswith(".toml") or (not Path(target).exists() and target in shipped())
    if not is_config:
        if not Path(target).exists():
            raise MedcneError(f"{target}: no such dataset or config; give a dataset, a .toml file or one of "
                              f"{', '.join(shipped())}")
        if args.data:
            raise MedcneError("give the dataset once: either DATA or --data PATH")
        presets = (args.presets or "simclr,rot90,rotate").split(",")
        baselines = [b for b in args.baselines.split(",") if b]
        config = shorthand(target, spec, [p.strip() for p in presets if p.strip()], baselines, args.seeds or 1)
        return _select(config, args)
    if args.presets or args.baselines:
        raise MedcneError("--presets and --baselines are for the shorthand (a dataset); a config lists its methods")
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise MedcneError(f"--data-dir {args.data_dir}: no such folder; give the folder that holds the config's "
                          "datasets")
    config = load_config(target, data_dir=args.data_dir, allow_outside=args.allow_outside)
    changed = [k for k, v in spec.items() if v != DATA_DEFAULTS.get(k) and k != "allow_outside"]
    if args.data:
        missing = [p for p in args.data if not Path(p).exists()]
        if missing:
            raise MedcneError(f"--data {missing[0]}: no such file or folder; check the path")
        config = with_data(config, args.data, spec)
    elif changed:
        raise MedcneError(f"--{changed[0].replace('_', '-')} applies to --data PATH; a config's datasets set "
                          "their options in their [datasets.NAME] table")
    if args.seeds:
        config.seeds = parse_seeds(args.seeds)
    return _select(config, args)


def _select(config, args):
    """``config`` with only the --datasets and --methods given (in their order); an unknown name is refused,
    also in the shorthand, whose methods are its --presets and --baselines."""
    from ..sweep.config import COMMAND_LINE

    shorthand = {"datasets": "DATA", "methods": "--presets and --baselines"}
    for key in ("datasets", "methods"):
        chosen = getattr(args, key)
        if chosen is None:
            continue
        table = getattr(config, key)
        source = shorthand[key] if config.source == COMMAND_LINE else config.source
        names = [n.strip() for n in chosen.split(",") if n.strip()]
        if not names:
            raise MedcneError(f"--{key}: give names separated by commas; choose from {', '.join(table)}")
        for n in names:
            if n not in table:
                raise MedcneError(f"--{key}: no {key[:-1]} {n!r} in {source}; choose from {', '.join(table)}")
        setattr(config, key, {n: table[n] for n in names})
    return config


def _given_with_report(args) -> list[str]:
    """The arguments of `medcne sweep` given besides --report (those whose value is not the parser's default)."""
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    given = []
    for action in sub.choices["sweep"]._actions:
        if action.dest in ("help", "report") or getattr(args, action.dest, action.default) == action.default:
            continue
        given.append(action.option_strings[-1] if action.option_strings else f"CONFIG ({args.config})")
    return given


def _refuse_extras_with_report(args) -> None:
    """--report DIR writes the report and nothing else: a config, --out or sweep options given with it would
    be ignored, so they are refused with one line."""
    given = _given_with_report(args)
    if not given:
        return
    named = given[0] if len(given) == 1 else ", ".join(given[:-1]) + " and " + given[-1]
    raise MedcneError(
        f"--report DIR only writes the report of the sweep in DIR ({args.report}); {named} "
        f"{'was' if len(given) == 1 else 'were'} given too: drop {'it' if len(given) == 1 else 'them'}, "
        "or drop --report to run the sweep"
    )


def run(args) -> int:
    if args.report:  # --report and --list only read (every file of DIR is written atomically): no lock
        from ..sweep import write_report
        from ..sweep.run import rewrite_status

        _refuse_extras_with_report(args)
        report = write_report(args.report)
        rewrite_status(args.report)  # cells.csv as the report found the cells; not while a sweep runs into DIR
        return _print_report(report)
    if not args.config:
        raise MedcneError(f"give a config (a .toml file, {', '.join(SHIPPED)}) or a dataset, with --out DIR; "
                          "or --report DIR")
    if args.list:
        return _list(build_config(args), args)
    if not args.out:
        raise MedcneError("give --out DIR: the sweep folder (or --list to see the cells)")
    from ..runs.outputs import dataset_inputs, lock, refuse_inputs
    from ..sweep import cells

    config = build_config(args)
    settings = overrides(args)
    plan = cells(config, settings)  # planned and checked once, here; the sweep runs this plan
    # Before anything is written (the lock file, sweep.json): never into a dataset a cell reads.
    refuse_inputs(args.out, [p for c in plan if c.data_path for p in dataset_inputs(c.data_path)])
    # The sweep folder's lock (medcne.sweep.run.sweep_lock), held to the report: a second sweep into DIR
    # stops at once, naming this process.
    with lock(Path(os.path.abspath(args.out))):
        return _sweep(config, args, settings, plan)


def _sweep(config, args, settings: dict, plan: list) -> int:
    from ..sweep import run_sweep

    result = run_sweep(config, args.out, settings, verbose=not args.quiet, plan=plan)
    _print_report(result["report"])
    problems = result["failed"] + result["no_data"]
    if problems:
        print(f"medcne sweep: {result['failed']} cell(s) failed, {result['no_data']} without data; see "
              f"{Path(args.out) / 'cells.csv'}; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def _list(config, args) -> int:
    """Print each cell with what a sweep into --out would do with it (the verdict of the sweep itself)."""
    from ..sweep import cells
    from ..sweep.run import FINISHED, NO_DATA, OTHER, cell_status, read_sweep

    out = Path(args.out) if args.out else None
    specs = (read_sweep(out) or {}).get("cells", {}) if out is not None and out.is_dir() else {}
    plan = cells(config, overrides(args))
    refused = False
    for cell in plan:
        if out is None:
            status, message = (NO_DATA, "") if cell.data_path is None else ("to run", "")
        else:
            status, message = cell_status(cell, out, specs)
        refused |= status == OTHER
        shown = {FINISHED: "finished", NO_DATA: "no data", OTHER: f"made with other settings ({message})"}
        print(f"{cell.name:50s} {shown.get(status, 'to run')}")
    for line in dict.fromkeys(c.missing for c in plan if c.missing):
        print(line)
    if refused:
        print("a sweep refuses cells made with other settings: rename the method in the config, or give another "
              "--out")
    return 0


def _print_report(report: dict) -> int:
    for line in report["answers"]:
        print(line)
    print("report: " + ", ".join(str(p) for p in report["paths"].values()))
    return 0

"""`medcne fit DATA --out RUN`: train t-SimCNE and write a run folder.

The run folder (docs/design.md, "A run is a folder"): ``params.json``, ``history.csv`` (updated
after every epoch while training), ``checkpoint.pt`` (end of each stage and
every ``--checkpoint-minutes``), ``model.pt``, ``embedding.npz``,
``embedding.csv``, ``metrics.json`` and ``map.png``.

An existing non-empty ``--out`` is refused unless ``--overwrite`` is given: then
the new run is trained in ``.OUT.medcne-new`` beside it and its files replace
the old run's only once it is finished (nothing else in ``OUT`` is touched).
``--resume RUN`` continues an interrupted run from its ``checkpoint.pt`` (an
interrupted ``--overwrite`` run continues in its staging folder).

On a CPU, options not given come from settings that suit it (ResNet18 at width
16, batch 256), and a run that names no schedule (no ``--epochs``, ``--quick``
or ``--budget``) trains within a 15-minute time budget instead of the paper's
schedule, which takes days there; ``--paper`` asks for the paper's settings and
schedule on any device. On a GPU the defaults are the paper's.
``--quick`` fills every training option not given explicitly with settings that
finish the bundled 2,000-image sample in a few minutes on a 2-core CPU (narrow
backbone, short schedule); on a GPU it keeps the paper's backbone.

Several GPUs: ``--nproc N`` runs the same command in N processes on this
machine through torchrun's launcher (one per GPU; with ``--device cpu``, N CPU
processes over gloo); ``torchrun --nproc-per-node N [--nnodes ...] -m medcne fit
...`` does the same, also across machines. ``--batch-size`` is then the global
batch (see :mod:`medcne.train.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os

from ..defaults import (
    BACKBONES,
    CHECKPOINT_MINUTES,
    DEVICES,
    DIM,
    HEAD_INIT,
    HEAD_INITS,
    PRECISIONS,
    PRESET,
    PRESETS,
    TRAINING_KEYS,
    default_budget,
    training_settings,
)
from ..errors import MedcneError
from ..params import check_all, check_new_lr, check_split
from ..runfiles import MAP
from .common import add_data_options, data_spec


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="train t-SimCNE on a dataset and write a run folder with its 2D map",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="the dataset (see `medcne info`); with --resume only where the run's "
                   "dataset is now, if it moved")
    where = p.add_mutually_exclusive_group(required=True)  # one of the two, shown as required in the usage
    where.add_argument("--out", metavar="RUN", help="run folder to write")
    where.add_argument("--resume", metavar="RUN", help="continue the interrupted run in folder RUN")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing --out")
    g = p.add_argument_group(
        "training", "defaults: the paper's on a GPU; on a CPU, width 16, batch 256 and lr 0.12, and a 15-minute --budget "
                    "when no --epochs, --quick or --budget is given (--paper: the paper's settings anywhere)")
    g.add_argument("--quick", action="store_true", help="fast settings for a demo (minutes on a 2-core CPU)")
    g.add_argument("--paper", action="store_true",
                   help="the paper's settings and schedule (1000,50,450 epochs, width 64, batch 1024), also on a CPU")
    g.add_argument("--preset", default=PRESET, choices=PRESETS,
                   help=f"augmentations (default {PRESET}); 'rotate' suits microscopy and pathology")
    g.add_argument("--schedule", default="stages", metavar="{stages,anneal}",
                   help="stages (the default): the paper's three stages; anneal: one stage whose loss sees 128 output dims "
                        "going down to --dim (the reference's newer method); settings as anneal:key=value,... "
                        "with keys shape, hold_share, end_share, dof, dof_end, temperature, clip (dof and "
                        "temperature may be 'learned')")
    g.add_argument("--epochs", help="epochs of the three stages (paper: 1000,50,450); with --schedule anneal "
                                    "one number (reference: 1000) or the first of three")
    g.add_argument("--batch-size", type=int, help="images per batch (paper: 1024)")
    g.add_argument("--lr", help="peak learning rate (paper: auto, 0.03 * batch / 256; the CPU settings: 0.12, "
                               "--quick on a CPU: 0.06, whatever the batch); with --resume: continue "
                               "with this one (after a divergence)")
    g.add_argument("--stage3-lr-factor", type=float, help="stage-3 learning rate / lr (paper: 0.001; the CPU settings: 0.1)")
    g.add_argument("--warmup", help="warm-up epochs per stage (paper: 10,0,10)")
    g.add_argument("--backbone", choices=BACKBONES, help="ResNet depth (paper: resnet18)")
    g.add_argument("--width", type=int, help="backbone base channels (paper: 64; 16 for CPU)")
    g.add_argument("--dim", type=int, default=DIM, help="map dimension (2; 3 for a 3D map)")
    g.add_argument("--head-init", default=HEAD_INIT, choices=HEAD_INITS,
                   help=f"stage 2's fresh 2D layer: normal N(0,1) as the reference code, or PyTorch's uniform "
                        f"(default {HEAD_INIT})")
    g.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train: auto = a CUDA GPU when there is one, else the CPU")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="backbone arithmetic: auto = bf16 where the GPU or CPU has it natively, else fp32")
    g.add_argument("--budget", metavar="TIME",
                   help="a time budget such as 15m or 1h: timed steps choose the epochs of the stages "
                        "(in the proportions of --epochs) so that the run ends within it")
    g.add_argument("--compile", action="store_true", help="torch.compile the model and the training augmentation (GPU, long runs)")
    g.add_argument("--knn-every", type=int, default=0, help="kNN accuracy in history.csv every K epochs (default 0: never)")
    g.add_argument("--checkpoint-minutes", type=float, default=CHECKPOINT_MINUTES,
                   help=f"minutes between checkpoints inside a stage (0: every epoch; default {CHECKPOINT_MINUTES:g})")
    g.add_argument("--nproc", type=int, metavar="N",
                   help="train in N processes on this machine, one per GPU (torchrun); --batch-size is global")
    g.add_argument("--no-sync-bn", dest="sync_bn", action="store_const", const=False, default="auto",
                   help="with several processes, BatchNorm per process instead of over the global batch")
    g.add_argument("--stream", default="auto", choices=["auto", "on", "off"],
                   help="read training batches from disk in the background (auto: when the data does not fit in memory)")
    add_data_options(p)
    p.set_defaults(func=run)
    global _PARSER
    _PARSER = p


_PARSER: argparse.ArgumentParser | None = None


def parse_lr(text):
    """--lr as given: 'auto', a number, or the text itself (the parameter rules refuse it with one line)."""
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        return text


def training_params(args) -> dict:
    """Estimator parameters: explicit options, else --quick settings, else (on a CPU, without --paper)
    the CPU settings, else the paper's; on a CPU a run that names no schedule gets a time budget."""
    from ..device import resolve_device

    explicit = {k: getattr(args, k) for k in TRAINING_KEYS}
    explicit["lr"] = parse_lr(explicit["lr"])
    check_all({k: v for k, v in explicit.items() if v is not None})  # before the device is looked at
    device = resolve_device(args.device).type
    settings = training_settings(args.quick, device, explicit, budget=args.budget is not None, paper=args.paper)
    budget = default_budget(device, budget=args.budget, epochs=args.epochs, quick=args.quick, paper=args.paper)
    params = dict(
        settings, dim=args.dim, head_init=args.head_init, preset=args.preset, precision=args.precision,
        budget=budget, device=args.device, compile=args.compile,
        knn_every=args.knn_every, checkpoint_minutes=args.checkpoint_minutes, random_state=args.seed,
        sync_bn=args.sync_bn, stream={"auto": "auto", "on": True, "off": False}[args.stream],
        schedule=args.schedule,
    )
    check_all(params)
    return params


def run(args) -> int:
    from ..train import distributed

    if args.nproc is not None and args.nproc < 1:
        raise MedcneError(f"--nproc must be a positive number of processes; got {args.nproc}")
    if (args.nproc or 1) > 1 and not distributed.launched():
        return launch(args)
    try:
        distributed.setup(args.device)  # under torchrun: join the other processes (nothing otherwise)
        return _fit(args)
    except distributed.ReportedError:
        return 2  # rank 0 has printed it
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or a launcher gone: process 0 says so, once
        if distributed.local_rank_in_env() == 0:
            raise
        from . import Terminated

        return exc.status if isinstance(exc, Terminated) else 130
    finally:
        distributed.teardown()


def _fit(args) -> int:
    from ..runs import fit_run, resume_run
    from ..train import distributed

    if args.resume:
        refuse_changes(args)
        result = resume_run(args.resume, lr=resume_lr(args), data_path=args.data)
    elif args.data is None or args.out is None:
        raise MedcneError("give a dataset and --out RUN (or --resume RUN to continue a run)")
    else:
        params = training_params(args)
        if params["budget"] is not None and args.budget is None and distributed.world().is_main:
            print(f"no --epochs, --quick or --budget on a CPU: training within a {params['budget']} time budget "
                  "(--budget TIME to choose another, --paper for the paper's schedule)", flush=True)
        result = fit_run(args.data, args.out, params, data_spec=data_spec(args),
                         overwrite=args.overwrite, quick=args.quick)
    if result is None:  # a rank other than 0 of several processes: rank 0 reports
        return 0
    m = result.metrics
    if "knn_accuracy" in m:
        print(f"kNN accuracy {m['knn_accuracy']:.1f}%  silhouette {m['silhouette']:.3f}")
    print(f"map: {result.path / MAP}")
    return 0


def resume_lr(args) -> float | None:
    """The --lr of a resume: a new peak rate, to continue a run that diverged from its last good checkpoint
    with a lower one (checked before any process starts; 'auto' would be the run's own rate)."""
    lr = parse_lr(args.lr)
    check_new_lr(lr, given=args.lr)
    return lr


RESUME_TAKES = ("resume", "data", "lr", "nproc", "help")  # what --resume reads; the run's record holds the rest


def refuse_changes(args) -> None:
    """Refuse options given with --resume that would change the run: it continues as it was made."""
    given = [a.option_strings[-1] for a in _PARSER._actions
             if a.option_strings and a.dest not in RESUME_TAKES and getattr(args, a.dest, None) not in (None, a.default)]
    if given:
        raise MedcneError(f"--resume continues {args.resume} with the settings and data it was made with, so "
                          f"{', '.join(given)} cannot change it (only --lr can); start a new run with --out instead")


# -- several processes on this machine -----------------------------------------------------
INTERRUPTED = {130: 130, -2: 130, 143: 143, -15: 143, 129: 129, -1: 129}  # a process's exit code -> this command's


def launch(args) -> int:
    """Run this command in ``args.nproc`` processes through torchrun's own launcher (its library
    form, so that a failed process ends in one line instead of torchrun's report)."""
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    from ..datasets.load import check_data_path
    from ..device import resolve_device
    from ..runs import staging
    from ..runs.outputs import dataset_inputs

    n = args.nproc
    if resolve_device(args.device).type == "cuda" and n > torch.cuda.device_count():
        raise MedcneError(f"--nproc {n} but this machine has {torch.cuda.device_count()} GPU(s): "
                          "one process per GPU; lower --nproc (or use --device cpu)")
    if args.resume:
        refuse_changes(args)
        resume_lr(args)
    else:
        check_split(training_params(args)["batch_size"], n)
    if args.data is not None:  # said once here, before any process starts
        check_data_path(args.data)
    if not args.resume:  # an --out that may not be written, likewise (process 0 checks it again, locked)
        staging.check(args.out, args.overwrite, option="overwrite", inputs=dataset_inputs(args.data))
    # torchrun's default (and its warning about it): one thread per process
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    try:
        with quiet_launcher():
            torchrun(parse_args(["--standalone", "--nproc-per-node", str(n), "-m", "medcne", *worker_argv(args)]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode == 2:  # it printed its one line
            return 2
        if failure.exitcode in INTERRUPTED:  # interrupted (Ctrl-C, SIGTERM, SIGHUP): process 0 said so
            return INTERRUPTED[failure.exitcode]
        raise MedcneError(f"process {rank} of {n} stopped (exit code {failure.exitcode}); its message is "
                          "above") from None
    except SignalException as exc:  # Ctrl-C or SIGTERM here: passed on to the processes; process 0 says so
        return 128 + int(exc.sigval)
    return 0


@contextlib.contextmanager
def quiet_launcher():
    """While torchrun's launcher runs here: its processes know this one as their launcher
    (:func:`~medcne.train.distributed.watch_launcher`), and its log (a warning on Ctrl-C or
    SIGTERM, a report of a failed process) is not shown: the processes say what happened.
    Its loggers set their own level, so the log is switched off as a whole (nothing else runs here)."""
    from ..train.distributed import LAUNCHER_ENV

    before = logging.root.manager.disable
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(before)
        os.environ.pop(LAUNCHER_ENV, None)


def worker_argv(args) -> list[str]:
    """The arguments of this command without ``--nproc``: what each process runs."""
    argv = ["--debug"] if getattr(args, "debug", False) else []
    argv.append("fit")
    for action in _PARSER._actions:
        value = getattr(args, action.dest, None)
        if action.dest in ("help", "nproc") or value is None or value == action.default:
            continue
        if not action.option_strings:
            argv.append(str(value))
        elif action.nargs == 0:  # a flag
            argv.append(action.option_strings[-1])
        else:
            argv += [action.option_strings[-1], str(value)]
    return argv

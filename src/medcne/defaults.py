"""The paper's settings, the quick settings and the allowed choices: the one source.

Every default a user can meet (the estimator's parameters, the command-line
options, the stages, the baselines) is read from here, so that changing one
means changing one line. Imports nothing from medcne.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

# -- choices -------------------------------------------------------------------
BACKBONES = ("resnet18", "resnet34", "resnet50")
# "none" keeps orientation (no flips, no rotations): for data where left/right carry meaning.
PRESETS = ("simclr", "rot90", "rotate", "none")
DEVICES = ("auto", "cpu", "cuda")
# Precision of the backbone: bf16 autocast where the hardware computes bf16 natively
# (CUDA; CPUs with AVX512-BF16 or AMX), else float32. Head, loss and map are always float32.
PRECISIONS = ("auto", "fp32", "bf16")
LOSSES = ("cauchy", "cosine")  # t-SimCNE, SimCLR
# The paper's baselines: each maps features of the images (the pixels, ImageNet ResNet features, SimCLR's
# backbone) to 2D with a reducer (t-SNE, UMAP).
BASELINE_PARTS = {
    "tsne-pixels": ("pixels", "tsne"),
    "tsne-resnet18": ("resnet18", "tsne"),
    "tsne-resnet152": ("resnet152", "tsne"),
    "tsne-simclr": ("simclr", "tsne"),
    "umap-pixels": ("pixels", "umap"),
}
BASELINES = tuple(BASELINE_PARTS)
# The class readers give images without a label (a scan no label CSV row names, a tile outside every
# region, a store part converted without labels): shown as a class, left out of every score.
UNLABELLED = "unlabelled"
SWEEP_CONFIG_DIR = Path(__file__).resolve().parent / "sweep" / "configs"  # the shipped sweep configurations


def shipped_configs() -> list[str]:
    """Names of the sweep configurations shipped with medcne (``paper``, ``quick``, ...)."""
    return sorted(p.stem for p in SWEEP_CONFIG_DIR.glob("*.toml"))


# -- t-SimCNE as in the paper (docs/design.md, "The method") ----------------------------
PAPER_EPOCHS = (1000, 50, 450)
PAPER_WARMUP = (10, 0, 10)
LR_PER_256 = 0.03  # peak learning rate = 0.03 * batch_size / 256
STAGE3_LR_FACTOR = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
PRETRAIN_DIM = 128
SIMCLR_TEMPERATURE = 0.5
DIM = 2  # a map
# Stage 2's fresh output layer: weights ~ N(0, 1) as the reference code draws them
# ('normal'), or PyTorch's default U(±1/sqrt(1024)) ('uniform').
HEAD_INITS = ("normal", "uniform")
HEAD_INIT = "normal"
PRESET = "simclr"  # the paper's default augmentations
CHECKPOINT_MINUTES = 10.0

PAPER = MappingProxyType(dict(
    epochs=PAPER_EPOCHS, batch_size=1024, lr="auto", stage3_lr_factor=STAGE3_LR_FACTOR,
    warmup=PAPER_WARMUP, width=64, backbone="resnet18",
))
# Fast settings for a CPU, found by bench/quality.py (bench/RESULTS.md, section Training).
QUICK_CPU = MappingProxyType(dict(
    epochs=(12, 1, 6), batch_size=128, lr=0.06, stage3_lr_factor=0.1, warmup=(2, 0, 1), width=16,
))
# Fast settings on a GPU keep the paper's backbone and shorten the schedule.
QUICK_GPU = MappingProxyType(dict(
    epochs=(100, 5, 50), batch_size=256, lr="auto", stage3_lr_factor=0.1, warmup=(10, 0, 5), width=64,
))
# A time budget on a CPU: these settings, with the epochs as proportions that the budget
# scales; chosen on all of BloodMNIST in 15 minutes (bench/RESULTS.md, section "CPU budget
# schedule": batch 256 beat 128 and 512). On a GPU a budget scales the paper's.
BUDGET_CPU = MappingProxyType(dict(QUICK_CPU, batch_size=256, lr=0.12))
TRAINING_KEYS = tuple(PAPER)

# -- the SimCLR baseline (t-SNE of its features) -------------------------------
SIMCLR_EPOCHS = 1000

# -- evaluation (the paper's protocol) -----------------------------------------
KNN_K = 15
KNN_TEST_SIZE = 0.1
KNN_SPLITS = 5  # splits averaged for knn_accuracy_mean
PRESERVATION_QUERIES = 5000  # points scored for neighbourhood preservation
# Silhouette is exact up to this many points (N^2 distances: about 40 s at 327,680 on 2 CPU cores);
# above it, the silhouette of a seeded random sample of this many points.
SILHOUETTE_EXACT_MAX = 400_000

# -- reading -------------------------------------------------------------------
# Images read from a dataset at a time, by bytes, so that large images do not make large
# reads: 64 MB is about 28,500 images of 28 x 28 x 3, 2,400 of 96 x 96 x 3, 450 of 224 x 224 x 3.
READ_CHUNK_MB = 64


def read_chunk_bytes() -> int:
    """``READ_CHUNK_MB`` in bytes."""
    return READ_CHUNK_MB << 20


def chunk_rows(bytes_per_image: int, budget: int | None = None) -> int:
    """Images of ``bytes_per_image`` bytes that fill ``budget`` bytes (default ``READ_CHUNK_MB``),
    at least one: how many to read or convert at a time."""
    budget = read_chunk_bytes() if budget is None else budget
    return max(1, int(budget) // max(1, int(bytes_per_image)))


# A run on a CPU that names no schedule (no epochs, quick or budget) gets this time budget
# with the CPU settings, instead of the paper's schedule (days there); `paper` asks for that.
CPU_DEFAULT_BUDGET = "15m"


def training_settings(quick: bool, device_type: str, explicit: dict, budget: bool = False,
                      paper: bool = False) -> dict:
    """Training settings: each ``explicit`` value (not None), else the quick ones, else (on a
    CPU, unless ``paper``) the CPU budget settings, else the paper's.

    ``device_type`` ('cpu' or 'cuda') picks the quick and CPU settings; on a GPU a budget
    scales the paper's schedule. ``budget`` is kept for callers that pass it (the CPU
    settings apply on a CPU with or without one).
    """
    quick_values = (QUICK_GPU if device_type == "cuda" else QUICK_CPU) if quick else {}
    cpu_values = BUDGET_CPU if device_type == "cpu" and not paper else {}
    chosen = {k: v for k, v in explicit.items() if v is not None}
    return {**PAPER, **cpu_values, **quick_values, **chosen}


def default_budget(device_type: str, *, budget=None, epochs=None, quick: bool = False, paper: bool = False):
    """The time budget of a run: ``budget`` when given; on a CPU, when neither ``epochs``,
    ``quick`` nor ``paper`` names a schedule, :data:`CPU_DEFAULT_BUDGET`; else None."""
    if budget is not None:
        return budget
    if device_type == "cpu" and epochs is None and not quick and not paper:
        return CPU_DEFAULT_BUDGET
    return None

"""`Augmenter`: one random view per image of a batch, on the batch's device."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..defaults import PRESET
from ..errors import MedcneError
from .colour import colour
from .geometry import apply_geometry, dihedral_table
from .presets import AugmentConfig, resolve
from .sampling import ViewParams, draw_uniforms, order_table, params_from_uniforms

# Elements per image chunk of the torch engine on CPU: 2^20 floats (4 MiB) per
# intermediate keeps a chunk's working set in cache while the per-op overhead
# stays small.
CPU_CHUNK_ELEMENTS = 1 << 20
ENGINES = ("auto", "kernel", "torch")
COMPILE_BACKEND = "inductor"  # tests count compiles with a backend of their own


class Augmenter:
    """Random views of image batches for contrastive learning, in a few batched ops.

    Parameters
    ----------
    preset : {"simclr", "rot90", "rotate"}
        ``simclr``: random resized crop (scale (0.2, 1), ratio (3/4, 4/3)),
        horizontal flip p = 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8,
        grayscale p = 0.2. ``rot90`` adds vertical flip p = 0.5 and a rotation by
        k * 90 degrees (exact: pixels move, nothing is interpolated); ``rotate``
        adds vertical flip and a rotation by an angle uniform in [0, 360).
    crop, jitter, grayscale : bool
        Turn off one part of the recipe (the ablations of the paper's Table S1).
    fill : tuple of C floats in [0, 1], optional
        Colour of the corners a rotation uncovers (see :func:`border_colour`);
        black when None.
    engine : {"auto", "kernel", "torch"}
        ``kernel``: the compiled CPU engine (numba; each image worked on while
        it sits in cache, threads over images); ``torch``: batched tensor
        operations, for any device. ``auto`` (default) takes the kernel for CPU
        batches and torch otherwise. Both give the same views to float32
        rounding (about 1e-6; up to ~1e-4 where a rotation resamples sharp edges).
    **overrides
        Any of ``scale``, ``ratio``, ``brightness``, ``contrast``, ``saturation``,
        ``hue``, ``jitter_p``, ``grayscale_p``, ``hflip_p``, ``vflip_p``.

    Notes
    -----
    Per view, in order: rotation about the image centre, crop resized to the
    input size, flips (all one bilinear resampling), then brightness, contrast,
    saturation and hue in a random order per image, then grayscale.
    One-channel images skip saturation, hue and grayscale. Randomness comes only
    from the generator given to each call: one ``torch.rand`` per call, after
    which the views are a pure function of the batch and those numbers
    (:meth:`views_from_uniforms`): fixed shapes, constants made once per device,
    no host synchronisation, so a GPU never waits and ``torch.compile(fullgraph=True)``
    captures the whole of it (``compile=True``). Float inputs must already lie in
    [0, 1]; the input is never modified. The torch engine on a CPU works in
    cache-sized chunks of images.

    Examples
    --------
    >>> aug = Augmenter("rotate", fill=(0.8, 0.7, 0.9))
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    >>> view1, view2 = aug(x, g), aug(x, g)
    >>> view1.shape, view1.dtype
    (torch.Size([4, 3, 28, 28]), torch.float32)
    """

    def __init__(
        self, preset: str = PRESET, *, crop: bool = True, jitter: bool = True,
        grayscale: bool = True, fill: tuple[float, ...] | None = None, engine: str = "auto",
        compile: bool = False, **overrides,
    ):
        self.config: AugmentConfig = resolve(preset, crop, jitter, grayscale, fill, overrides)
        self.engine = check_engine(engine)
        self.compile = bool(compile)
        self._constants: dict = {}
        self._compiled = None

    def __repr__(self) -> str:
        return f"Augmenter({self.config.as_dict()}, engine={self.engine!r})"

    @property
    def preset(self) -> str:
        return self.config.preset

    def settings(self) -> dict:
        """Every resolved parameter as plain JSON values."""
        return self.config.as_dict()

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One random view of each image.

        Parameters
        ----------
        batch : Tensor (B, C, H, W), uint8 or float in [0, 1]
            C = 1 or 3, on any device.
        generator : torch.Generator
            On the same device as ``batch``; the only source of randomness.
        out : FloatTensor (B, C, H, W), optional
            Contiguous float32 on the batch's device to write the views into.
            Reusing one buffer spares the allocation of a new result (on CPU,
            the page faults of touching fresh memory).

        Returns
        -------
        FloatTensor (B, C, H, W)
            float32 in [0, 1], on the device of ``batch`` (``out`` when given).
        """
        x = check_batch(batch, self.config.fill)
        _check_generator(generator, x.device)
        u = draw_uniforms(self.config, x.shape[0], generator, x.device)
        if use_kernel(self.engine, x.device):
            return render(x, self._params(x, u), self.config.fill, engine="kernel", out=_check_out(out, x))
        out = _check_out(out, x)
        chunk = self.chunk_size(x)
        if chunk >= x.shape[0] and out is None:
            return self._views_fn()(x, u, *self.constants(x))
        if out is None:
            out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        fn, consts = self._views_fn(), self.constants(x)
        for start in range(0, x.shape[0], chunk):
            part = slice(start, min(start + chunk, x.shape[0]))
            out[part] = fn(x[part], u[part], *consts)
        return out

    def views_from_uniforms(self, x: torch.Tensor, u: torch.Tensor, orders: torch.Tensor | None,
                            table: torch.Tensor | None) -> torch.Tensor:
        """The torch engine's views of ``x`` from the uniforms ``u`` of :func:`draw_uniforms`.

        A pure function of its tensor arguments (``orders`` and ``table`` are the
        constants of :meth:`constants`), which is what ``torch.compile`` captures.
        """
        b, _, h, w = x.shape
        params = params_from_uniforms(self.config, u, h, w, orders)
        return colour(apply_geometry(x, params, self.config.fill, table), params)

    def constants(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(jitter orders, dihedral table) on ``x``'s device, made on first use there."""
        key = (x.device, x.shape[2], x.shape[3])
        if key not in self._constants:
            cfg = self.config
            exact_possible = not cfg.crop and cfg.rotation != "angle"
            self._constants[key] = (
                order_table(x.device) if cfg.jitter else None,
                dihedral_table(x.shape[2], x.shape[3], x.device) if exact_possible else None,
            )
        return self._constants[key]

    def _views_fn(self):
        if not self.compile:
            return self.views_from_uniforms
        if self._compiled is None:
            self._compiled = torch.compile(self.views_from_uniforms, backend=COMPILE_BACKEND, fullgraph=True,
                                           dynamic=False)
        return self._compiled

    def _params(self, x: torch.Tensor, u: torch.Tensor) -> ViewParams:
        return params_from_uniforms(self.config, u, x.shape[2], x.shape[3], self.constants(x)[0])

    def chunk_size(self, batch: torch.Tensor) -> int:
        """Images per chunk: on CPU, chunks small enough that every intermediate
        stays in cache (a full 96 x 96 batch would stream ~100 MB per step); on
        accelerators the whole batch."""
        if batch.device.type != "cpu":
            return max(1, batch.shape[0])
        return max(1, CPU_CHUNK_ELEMENTS // max(1, math.prod(batch.shape[1:])))

    def sample(self, batch: torch.Tensor, generator: torch.Generator) -> ViewParams:
        """The random parameters one call would use for ``batch`` (for inspection and tests)."""
        x = check_batch(batch, self.config.fill)
        _check_generator(generator, x.device)
        return self._params(x, draw_uniforms(self.config, x.shape[0], generator, x.device))


def render(
    x: torch.Tensor, params: ViewParams, fill: tuple[float, ...] | None = None, chunk: int | None = None,
    *, engine: str = "auto", out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The views of a batch with every random choice given explicitly.

    Parameters
    ----------
    x : Tensor (B, C, H, W)
        uint8, or float in [0, 1].
    params : ViewParams
        Crop boxes, flips, rotation, jitter and grayscale per image.
    fill : tuple of floats, optional
        Colour of uncovered corners (black when None).
    chunk : int, optional
        Torch engine: work on this many images at a time (the result does not
        depend on it).
    engine : {"auto", "kernel", "torch"}
        See :class:`Augmenter`.
    out : FloatTensor (B, C, H, W), optional
        Contiguous float32 tensor on ``x``'s device to write into.

    Returns
    -------
    FloatTensor (B, C, H, W), float32 in [0, 1]
    """
    out = _check_out(out, x)
    if use_kernel(check_engine(engine), x.device):
        from .kernel import render_cpu

        return render_cpu(x, params, fill, out=out)
    b = x.shape[0]
    chunk = b if chunk is None else max(1, int(chunk))
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for start in range(0, b, chunk):
        part = slice(start, min(start + chunk, b))
        _render_into(out[part], x[part], params.take(part), fill)
    return out


def _render_into(out: torch.Tensor, x: torch.Tensor, params: ViewParams, fill) -> None:
    out.copy_(colour(apply_geometry(x, params, fill), params))


@lru_cache(maxsize=1)
def kernel_available() -> bool:
    """Whether the compiled CPU engine can be used (numba imports; its llvmlite library may also fail
    to load, an OSError, as under a tight `ulimit -v`)."""
    try:
        from . import kernel  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise MedcneError(f"`engine` must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "kernel" and not kernel_available():
        raise MedcneError("engine='kernel' needs numba (pip install numba), or use engine='torch'")
    return engine


def use_kernel(engine: str, device: torch.device) -> bool:
    """Whether ``engine`` means the compiled engine for a batch on ``device``."""
    if engine == "kernel" and device.type != "cpu":
        raise MedcneError(f"engine='kernel' runs on CPU tensors; the batch is on {device} (use 'auto')")
    return engine == "kernel" or (engine == "auto" and device.type == "cpu" and kernel_available())


def _check_out(out, x: torch.Tensor):
    if out is None:
        return None
    if (
        not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != torch.float32
        or out.device != x.device or not out.is_contiguous()
    ):
        raise MedcneError(
            f"`out` must be a contiguous float32 tensor of shape {tuple(x.shape)} on {x.device}"
        )
    return out


def check_batch(batch, fill) -> torch.Tensor:
    """Validate a batch and return it as given (no copy)."""
    if not isinstance(batch, torch.Tensor):
        raise MedcneError(
            f"`batch` must be a torch tensor B x C x H x W; got {type(batch).__name__} "
            "(convert with torch.from_numpy(images).permute(0, 3, 1, 2))"
        )
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise MedcneError(
            f"`batch` must be B x C x H x W with C = 1 or 3; got shape {tuple(batch.shape)} "
            "(channels-last arrays need .permute(0, 3, 1, 2))"
        )
    if batch.dtype != torch.uint8 and not batch.dtype.is_floating_point:
        raise MedcneError(f"`batch` must be uint8 or float in [0, 1]; got {batch.dtype}")
    if fill is not None and len(fill) not in (1, batch.shape[1]):
        raise MedcneError(
            f"`fill` has {len(fill)} values but the images have {batch.shape[1]} channel(s); "
            "give one value per channel"
        )
    return batch


def _check_generator(generator, device: torch.device) -> None:
    if not isinstance(generator, torch.Generator):
        raise MedcneError(
            f"`generator` must be a torch.Generator; got {type(generator).__name__} "
            "(e.g. torch.Generator(device=batch.device).manual_seed(0))"
        )
    gen = generator.device
    same = gen.type == device.type and (
        gen.index is None or device.index is None or gen.index == device.index
    )
    if not same:
        raise MedcneError(
            f"`generator` is on {gen} but the batch is on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )

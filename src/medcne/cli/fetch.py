"""`medcne fetch NAME`: download an official MedMNIST file and print its path (`sample`: the bundled one's)."""

from __future__ import annotations

from ..datasets import SAMPLE_PATH, fetch_medmnist
from ..datasets.fetch import DEFAULT_TIMEOUT, MAX_TIMEOUT
from ..datasets.medmnist_info import MD5, SIZES
from ..errors import MedcneError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fetch", help="download an official MedMNIST 2D .npz (MD5-checked) and print its path",
    )
    # No argparse `choices`: fetch_medmnist's own error is one line listing them,
    # where argparse would print the whole usage.
    p.add_argument("name", help=f"dataset, one of: {', '.join(MD5)}; or `sample`: the path of the sample "
                                "bundled with medcne (2,000 BloodMNIST images, 28x28), nothing downloaded")
    p.add_argument("--size", type=int, default=28,
                   help=f"image size in pixels, one of {', '.join(map(str, SIZES))} (default: 28)")
    p.add_argument("--root", help="cache folder (default: $MEDCNE_CACHE or ~/.cache/medcne); a file of the "
                   "dataset's name there that is not the official one is refused, never replaced")
    p.add_argument("--timeout", type=float, default=None,
                   help=f"seconds to wait for the server, at most {MAX_TIMEOUT} (default: {DEFAULT_TIMEOUT})")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.name.lower() == "sample":
        if args.size != 28:
            raise MedcneError(f"--size {args.size}: the bundled sample is 28x28 only; drop --size, or fetch "
                              "bloodmnist at that size")
        for option, value in (("--root", args.root), ("--timeout", args.timeout)):
            if value is not None:  # the sample is neither downloaded nor copied: the option would do nothing
                raise MedcneError(f"{option}: the bundled sample is not downloaded or copied (its path is "
                                  f"printed); drop {option}, or fetch bloodmnist to have a copy there")
        print(SAMPLE_PATH)
        return 0
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    print(fetch_medmnist(args.name, size=args.size, root=args.root, timeout=timeout))
    return 0

"""`medcne fetch NAME`: download an official MedMNIST file and print its path (`sample`: the bundled one's)."""

from __future__ import annotations

from ..datasets import SAMPLE_PATH, fetch_medmnist
from ..datasets.fetch import MAX_TIMEOUT
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
    p.add_argument("--timeout", type=float, default=60,
                   help=f"seconds to wait for the server, at most {MAX_TIMEOUT} (default: 60)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.name.lower() == "sample":
        if args.size != 28:
            raise MedcneError(f"--size {args.size}: the bundled sample is 28x28 only; drop --size, or fetch "
                              "bloodmnist at that size")
        print(SAMPLE_PATH)
        return 0
    print(fetch_medmnist(args.name, size=args.size, root=args.root, timeout=args.timeout))
    return 0

"""Refuse to build a wheel or an sdist without the viewer's JavaScript bundle.

Everything else is in pyproject.toml. The bundle (src/medcne/viewer/static/medcne-viewer.js)
is built by `make viewer-assets` and is not in git, so a wheel built from a fresh clone
would install a `medcne view` that cannot work. Editable installs (`pip install -e .`,
which `make install` runs before `make viewer-assets`) read the source tree and are not checked.
A bundle older than its sources (see medcne/viewer/bundlestamp.py) is refused too.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist
from setuptools.errors import FileError

BUNDLE = Path("src", "medcne", "viewer", "static", "medcne-viewer.js")


def check_bundle(what: str) -> None:
    bundle = Path(__file__).resolve().parent / BUNDLE
    if not bundle.is_file():
        raise FileError(
            f"{BUNDLE.as_posix()} is missing: run `make viewer-assets` (Node.js and npm) "
            f"before building the {what}, so that it ships the viewer's JavaScript"
        )
    reason = _bundlestamp().stale_bundle(bundle, bundle.parent.parent / "js")
    if reason:
        raise FileError(f"{BUNDLE.as_posix()} is out of date ({reason}): run `make viewer-assets` before "
                        f"building the {what}, so that it ships the viewer its sources describe")


def _bundlestamp():
    """medcne/viewer/bundlestamp.py, loaded by its path (medcne itself is not importable while it builds)."""
    path = Path(__file__).resolve().parent / BUNDLE.parent.parent / "bundlestamp.py"
    spec = importlib.util.spec_from_file_location("medcne_bundlestamp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BdistWheelWithViewer(bdist_wheel):
    def run(self):
        check_bundle("wheel")
        super().run()


class SdistWithViewer(sdist):
    def run(self):
        check_bundle("sdist")
        super().run()


setup(cmdclass={"bdist_wheel": BdistWheelWithViewer, "sdist": SdistWithViewer})

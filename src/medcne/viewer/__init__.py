"""The interactive map viewer: an offline web page built from a run folder.

See :func:`build_viewer`; the page's JavaScript lives in ``viewer/js`` and is
bundled by ``make viewer-assets`` into ``viewer/static/medcne-viewer.js``.
"""

from .build import build_viewer, check_bundle
from .sprites import SpriteLayout, plan_layout, write_sprites

__all__ = ["SpriteLayout", "build_viewer", "check_bundle", "plan_layout", "write_sprites"]

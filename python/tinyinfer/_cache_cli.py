"""`python -m tinyinfer cache ls|clear`: the on-disk cache (tinyinfer.cache): conversions and prepacked weights."""

from __future__ import annotations

import time


def cmd_cache(args) -> int:
    from . import cache
    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entr{'y' if n == 1 else 'ies'} from {cache.cache_dir()}")
        return 0
    items = cache.entries(None)
    total = sum(e.size for e in items)
    print(f"{cache.cache_dir()}: {len(items)} entr{'y' if len(items) == 1 else 'ies'}, {total} bytes "
          f"(bound {cache.max_bytes()} bytes)")
    for e in items:
        print(f"  {e.key}  {e.kind:<11}  {e.size:>10}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.mtime))}")
    return 0


def add_parser(sub) -> None:
    c = sub.add_parser("cache", help="list or clear the on-disk cache: conversions and prepacked weights (TINYINFER_CACHE_DIR)")
    c.add_argument("action", choices=["ls", "clear"])
    c.set_defaults(fn=cmd_cache)

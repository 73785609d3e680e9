"""The ``vsrife`` command line (also ``python -m vsrife``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __name__ as _package
from .catalogue import release_names, releases
from .weights import WeightsError, cached_weights, fetch_weights, import_weights, model_dir, verify_cache

log = logging.getLogger(_package)


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def models_list(args: argparse.Namespace) -> int:
    print(f"cache: {model_dir()}")
    print(f"{'model':<12} {'family':<8} {'tta':<4} {'pad':>4}  {'cached':<10} source")
    for r in releases().values():
        path = cached_weights(r.name)
        cached = _human(path.stat().st_size) if path else "-"
        source = r.sources[0].describe() if r.sources else "import by hand (see note)"
        print(f"{r.name:<12} {r.family:<8} {'yes' if r.tta else 'no':<4} {r.modulo:>4}  {cached:<10} {source}")
    return 0


def models_download(args: argparse.Namespace) -> int:
    names = list(release_names()) if args.all else args.names
    if not names:
        raise CommandError("name at least one model (see `vsrife models list`) or pass --all")
    failed = []
    for name in names:
        try:
            path = fetch_weights(name, force=args.force, progress=not args.quiet)
        except (WeightsError, ValueError) as e:
            log.error("%s", e)
            failed.append(name)
            continue
        print(f"{name}: {path}")
    if failed:
        raise CommandError(f"could not fetch: {', '.join(failed)}")
    return 0


def models_import(args: argparse.Namespace) -> int:
    try:
        path = import_weights(args.file, args.model)
    except (WeightsError, ValueError) as e:
        raise CommandError(str(e)) from e
    print(f"{args.model}: {path}")
    return 0


def models_verify(args: argparse.Namespace) -> int:
    results = verify_cache()
    if not results:
        print(f"no models cached in {model_dir()}")
    for name, ok, message in results:
        print(f"{name:<12} {'ok' if ok else 'BAD':<4} {message}")
    bad = [name for name, ok, _ in results if not ok]
    if bad:
        raise CommandError(f"{len(bad)} cached model(s) failed verification: {', '.join(bad)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsrife", description="RIFE frame interpolation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list, download, import and verify network weights")
    sub = models.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every known model, and which are cached").set_defaults(run=models_list)
    dl = sub.add_parser("download", help="fetch and verify weights into the cache")
    dl.add_argument("names", nargs="*", metavar="NAME", help="model names, e.g. 4.0 4.25")
    dl.add_argument("--all", action="store_true", help="every model that has a download source")
    dl.add_argument("--force", action="store_true", help="fetch again even if cached")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(run=models_download)
    imp = sub.add_parser("import", help="check a weights file you downloaded yourself and cache it")
    imp.add_argument("file", help=".pkl, .pth or .safetensors file")
    imp.add_argument("--model", required=True, choices=release_names(), metavar="NAME", help="which model it is")
    imp.set_defaults(run=models_import)
    sub.add_parser("verify", help="re-hash every cached model").set_defaults(run=models_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="vsrife: %(message)s")  # fmt: skip
    try:
        return args.run(args)
    except CommandError as e:
        print(f"vsrife: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vsrife: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vsrife models list | head`
        sys.stdout = None  # type: ignore[assignment]  # nothing more can be written, not even at exit
        return 141

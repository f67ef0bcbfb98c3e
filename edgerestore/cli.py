"""The `edgerestore` command.

Each verb lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`; only the
module of the verb being run is imported, so `edgerestore camera` never imports torch and a broken
optional dependency breaks only the verbs that need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgerestore.errors import UserError

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("edgerestore.commands.info", "show the model zoo (params, MACs) and what this machine can run"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {verb:<10} {help_}" for verb, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="edgerestore",
        description="Bad-weather image restoration from training to a real-time camera loop.",
        epilog=f"commands:\n{lines}\n\nrun `edgerestore <command> --help` for a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from edgerestore import __version__

        print(f"edgerestore {__version__}")
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        print(
            f"edgerestore: error: unknown command {verb!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module_name, help_ = COMMANDS[verb]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"edgerestore: error: `{verb}` needs a package that is not installed ({exc.name or exc}); "
            "install the extras: pip install 'edgerestore[train]'",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog=f"edgerestore {verb}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"edgerestore {verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgerestore {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

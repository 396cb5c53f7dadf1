"""`python -m clarena`: the demo, the same as the `clarena-demo` command."""

from clarena_backbones.demo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

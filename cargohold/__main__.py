"""``python -m cargohold``: the same command line as the ``cargohold`` entry point."""

from cargohold.cli import main

if __name__ == "__main__":
    main(prog_name="cargohold")

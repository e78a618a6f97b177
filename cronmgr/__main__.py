"""`python -m cronmgr` is the CLI; the controller launches the daemon this way."""

from cronmgr.cli import main

if __name__ == "__main__":
    main()

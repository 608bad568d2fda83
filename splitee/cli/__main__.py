"""``python -m splitee.cli``: the same command as the ``splitee`` console script."""

from splitee.cli import main

main()

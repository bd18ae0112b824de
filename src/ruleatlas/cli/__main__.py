"""``python -m ruleatlas.cli``: the same as the ``ruleatlas`` console script."""

from ruleatlas.cli import main

main()

"""``python -m eir`` = ``eir``."""

from eir.cli import main

main()

"""``python -m eir.cli`` = ``eir``."""

from eir.cli import main

main()

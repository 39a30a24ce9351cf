"""``python -m emabench``."""

from emabench.cli import main

main()

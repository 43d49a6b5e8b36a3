"""`python -m wiz_executor` is `wiz`."""

from .cli import main

main()

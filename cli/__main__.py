"""`python -m cli`: the same as `rnnserve`."""

from cli import main

main()

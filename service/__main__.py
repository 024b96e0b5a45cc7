"""`python -m service`: the same as `rnnserve serve`."""

import sys

from service.cli import main

main(["serve", *sys.argv[1:]])

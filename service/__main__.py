"""`python -m service`: the same as `rnnserve serve`."""

from service.serve import main

main()

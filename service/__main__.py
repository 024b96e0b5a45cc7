"""`python -m service`: the same as `rnnserve serve`."""

import sys

from service.cli import serve

serve(sys.argv[1:])

"""``python -m tests.bench``: the chat fan-out benchmark (``--help`` for its flags)."""

import sys

from tests.bench.fanout import main

sys.exit(main())

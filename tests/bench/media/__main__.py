"""``python -m tests.bench.media``: the media benchmarks (``--help`` for the flags)."""

import sys

from tests.bench.media.run import main

sys.exit(main())

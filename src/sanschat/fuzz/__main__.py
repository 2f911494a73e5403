"""``python -m sanschat.fuzz``: see `sanschat.fuzz.main`."""

import sys

from ._cli import main

sys.exit(main())

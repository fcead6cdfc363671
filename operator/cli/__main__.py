"""`python -m kubetune.operator.cli`: the `kubetune` command without its console script."""

import sys

from kubetune.operator.cli.main import main

sys.exit(main())

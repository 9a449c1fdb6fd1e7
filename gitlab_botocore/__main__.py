"""``python -m gitlab_botocore``: the same as the ``gitlab-botocore`` command."""

import sys

from .tools.cli import main

sys.exit(main())

"""Started with every Python process the tests start, on botocore < 1.31 only.

tests/old_botocore.py puts this directory on ``PYTHONPATH`` there, so example scripts
run by the tests reach the local fakes through ``AWS_ENDPOINT_URL`` as they do on newer
botocore.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_gitlab_botocore_old_botocore", Path(__file__).parent.parent / "old_botocore.py"
)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.honour_endpoint_variables()

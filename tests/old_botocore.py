"""What the test harness needs to run on the oldest botocore of the version matrix.

botocore reads ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` from 1.31 on. The
library resolves the STS endpoint itself on every version, but the tests' own clients
(``boto3.client("s3")`` and the like) rely on the variables to reach the local fakes.
On older botocore, :func:`honour_endpoint_variables` makes clients read them as newer
botocore does, in this process and (through ``old_botocore_site/sitecustomize.py`` on
``PYTHONPATH``) in the Python processes the tests start; on newer botocore it does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import botocore
import botocore.configprovider

HAS_ENDPOINT_VARIABLES = hasattr(botocore.configprovider, "ConfiguredEndpointProvider")
"""Whether this botocore honours ``AWS_ENDPOINT_URL`` itself (botocore >= 1.31)."""


SITE_DIRECTORY = Path(__file__).parent / "old_botocore_site"


def honour_endpoint_variables(*, in_child_processes: bool = False) -> None:
    """Route clients made without an ``endpoint_url`` to the one in the environment."""
    if HAS_ENDPOINT_VARIABLES:
        return
    botocore.register_initializer(_route_clients)
    if in_child_processes:
        paths = [str(SITE_DIRECTORY), *filter(None, [os.environ.get("PYTHONPATH")])]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)


def _route_clients(session: Any) -> None:
    create_client = session.create_client

    def create_client_honouring_variables(service_name: str, *args: Any, **kwargs: Any) -> Any:
        ignored = os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true"
        if kwargs.get("endpoint_url") is None and len(args) < 4 and not ignored:
            service = service_name.upper().replace("-", "_")
            endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service}") or os.environ.get(
                "AWS_ENDPOINT_URL"
            )
            if endpoint:
                kwargs["endpoint_url"] = endpoint
        return create_client(service_name, *args, **kwargs)

    session.create_client = create_client_honouring_variables

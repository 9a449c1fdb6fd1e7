"""Tools around the runtime: the ``gitlab-botocore`` command, ``doctor`` and trust policies.

The runtime (the package root) never imports this package.
"""

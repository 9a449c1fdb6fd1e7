#!/usr/bin/env python
"""Django's command-line utility for the example project.

In a GitLab job (see ../.gitlab-ci.yml):
    python examples/django_project/manage.py gitlab_aws_whoami
    python examples/django_project/manage.py publish_report nightly.txt
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

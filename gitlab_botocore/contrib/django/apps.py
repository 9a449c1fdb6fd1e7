"""The Django app that activates gitlab-botocore."""

from __future__ import annotations

import logging
import os

from django.apps import AppConfig

from gitlab_botocore.installation import install
from gitlab_botocore.settings import EnvVar, install_disabled

logger = logging.getLogger(__name__)


class GitLabBotocoreConfig(AppConfig):  # type: ignore[misc]
    """Installs the provider when Django starts, as ``import gitlab_botocore`` does."""

    name = "gitlab_botocore.contrib.django"
    label = "gitlab_botocore"
    verbose_name = "gitlab-botocore"

    def ready(self) -> None:
        if install_disabled(os.environ):
            logger.debug("%s is set: the provider is not installed.", EnvVar.DISABLE)
            return
        install()

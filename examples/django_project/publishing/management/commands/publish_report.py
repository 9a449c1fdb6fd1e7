"""``manage.py publish_report NAME``: write a small report to the default storage (S3)."""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):  # type: ignore[misc]
    help = "Write a report to the default storage, which is S3 in this project."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="file name, for example nightly.txt")

    def handle(self, *args: Any, **options: Any) -> None:
        pipeline = os.environ.get("CI_PIPELINE_ID", "local")
        report = ContentFile(f"Report of pipeline {pipeline}\n".encode())
        try:
            saved = default_storage.save(options["name"], report)
        except (BotoCoreError, ClientError) as error:  # GitLabOIDCError is a BotoCoreError
            raise CommandError(f"Cannot publish the report: {error}") from error
        key = "/".join(part for part in (default_storage.location, saved) if part)
        self.stdout.write(f"Published s3://{default_storage.bucket_name}/{key}")

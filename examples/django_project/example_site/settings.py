"""Settings of the example project: gitlab-botocore's app and S3 storage (django-storages).

No AWS keys anywhere: the app ``gitlab_botocore.contrib.django`` makes every boto3 session,
including the one django-storages creates, assume the job's role with its ID token.
"""

from __future__ import annotations

import os

SECRET_KEY = "example-project-not-a-secret"  # noqa: S105 - the project serves no requests
DEBUG = False
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}

INSTALLED_APPS = [
    "gitlab_botocore.contrib.django",
    "storages",
    "publishing",
]

STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("REPORTS_BUCKET", "example-reports"),
            "location": "reports",
        },
    },
}
# Do not set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_S3_ACCESS_KEY_ID, ...) here:
# django-storages would hand those keys to boto3 and the job's role would never be used.
# To pick a named profile (gitlab_role_arn = ...), set AWS_S3_SESSION_PROFILE instead.

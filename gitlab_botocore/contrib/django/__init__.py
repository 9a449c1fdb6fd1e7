"""Django integration: ``INSTALLED_APPS += ["gitlab_botocore.contrib.django"]``.

The app puts gitlab-botocore's provider into every botocore session when Django starts
(unless ``GITLAB_BOTOCORE_DISABLE=1``) and adds the ``gitlab_aws_whoami`` command.
"""

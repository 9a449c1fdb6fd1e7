"""An example Django project that stores files in S3 with the GitLab job's role."""

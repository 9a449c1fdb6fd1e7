"""Offline GitLab and AWS stand-ins for tests and demos. Not imported by the library itself."""

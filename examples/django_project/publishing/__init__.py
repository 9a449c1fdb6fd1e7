"""The example project's only app: a command that publishes a report to the default storage."""

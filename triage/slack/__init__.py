"""Slack: the Web API client, escaping, Block Kit cards and request verification."""

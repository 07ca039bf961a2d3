"""Notifications: outbox events become inbox rows per member and, when SMTP is configured, one mail each."""

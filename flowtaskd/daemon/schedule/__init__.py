"""Schedules: apscheduler driven by our own crontab and interval triggers, with catch-up."""

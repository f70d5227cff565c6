"""Scheduled jobs: schedules, runs, the runner and the scheduler loop."""

"""The bot as a server: webhook receiver, job queue, de-duplication, metrics."""

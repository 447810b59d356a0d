"""Real local services for integration tests and local set-ups, all bound to 127.0.0.1.

Each launcher is a context manager that starts the service on a free port in a temp
folder, waits until it answers, yields how to reach it, and stops it afterwards.
"""

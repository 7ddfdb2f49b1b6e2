"""What the service keeps: storage (SQLite by default, PostgreSQL by URL), the card log written
off the request path, and the outcome report.

May import: the engine (the card it records), ``contract``. Used by ``web`` and ``cli`` only.
"""

"""The HTTP face: the app factory, the blueprints (discovery, hooks, feedback, health, OpenAPI,
guidance pages),
client JWTs, metrics, logging set-up and the gunicorn configuration.

May import: the engine, ``store``, ``config`` and every stage below.
"""

"""The comparison point: a bare Flask endpoint that parses the same JSON body and answers
{"cards": []}, run under the same gunicorn settings as the service."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> ResponseReturnValue:  # noqa: ARG001 - same route shape
        request.get_json()
        return jsonify({"cards": []})

    return app

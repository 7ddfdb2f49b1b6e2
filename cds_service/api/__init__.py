"""HTTP face of the service: thin Flask blueprints over the engine."""

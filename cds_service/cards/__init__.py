"""Decisions -> CDS Hooks cards: one module per rule family, the shared parts (wording, the
history note, suggested orders, tables) in their own modules, and the static card page.

May import: ``clinical``, ``fhir``, ``knowledge``, ``contract``.
"""

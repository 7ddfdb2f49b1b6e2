"""The contract every stage speaks: the CDS Hooks wire models and the service's typed errors.

Owns: ``wire`` (request models that allow extensions, response models that forbid them) and
``errors`` (one root, each error knowing its HTTP status).
May import: nothing of the service (it is the bottom layer).
"""

"""Clinical knowledge as data: loading and checking hooks/knowledge and a site folder.

Owns: the loader (fail fast on bad knowledge), the rule ids, value sets and code system URIs,
the name patterns compiled from the knowledge, and a site's orderables and rule modes.
May import: ``contract``.
"""

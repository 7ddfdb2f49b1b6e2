"""Clinical reasoning, pure and without I/O: the patient record, orders and their names, the
post-treatment scenario, the last report and the pathway, contrast and implants, the guidance
decisions (with evidence) and the PAMA rating of an order.

May import: ``fhir``, ``knowledge``, ``contract``.
"""

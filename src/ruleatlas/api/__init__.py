"""The JSON contract every front end uses (CLI ``show --format json``, web ``/api/``, export).

``documents.rule_document(catalog, rule_id)`` is the one place a rule's page data is shaped.
"""

from __future__ import annotations

from ruleatlas.api.documents import DOCUMENT_KEYS, rule_document

__all__ = ["DOCUMENT_KEYS", "rule_document"]

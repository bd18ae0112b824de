"""What the Elastic query languages (EQL, KQL, ES|QL) share: the ECS fields that route a query
to data (Elastic's integrations set them per data stream) rather than describe a detection.

``event.category``/``event.type`` are what EQL's ``process where`` means; ``event.dataset``,
``data_stream.*``, ``event.module`` and ``host.os.*`` name the integration and the platform. They
play the part of Splunk's ``sourcetype`` and Sigma's ``logsource``: never indicators.
``event.code`` and ``event.action`` stay indicators (as Splunk's ``EventCode`` does).
"""

from __future__ import annotations

ROUTING_FIELDS = frozenset({
    "event.category", "event.type", "event.kind", "event.dataset", "event.module",
    "data_stream.dataset", "data_stream.namespace", "data_stream.type",
    "host.os.type", "host.os.family", "host.os.name", "host.os.platform", "_index",
})

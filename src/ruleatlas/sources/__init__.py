"""Source readers: repositories into Rule records, auto-detected from the folder layout.

``SOURCES`` maps a source name to its reader; ``detect(root)`` names the reader for a folder.
"""

from __future__ import annotations

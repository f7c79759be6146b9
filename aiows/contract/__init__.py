"""The message contract of an app as data: an AsyncAPI document, a docs page and TypeScript types.

Built from the routers (the message types and the models their handlers are
annotated with, the ``emits`` they declare) and the middleware (auth, rate
limiting): ``asyncapi_document(server)``, then ``docs_page(document)`` and
``typescript_declarations(document)``. The server serves the first two at
``asyncapi_path`` and ``docs_path``; ``aiows asyncapi`` and ``aiows
typescript`` write them to files. Interpreted, and never on a message's path.
"""

from __future__ import annotations

from .asyncapi import ASYNCAPI_VERSION, asyncapi_document
from .docs import docs_page
from .typescript import typescript_declarations

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "docs_page", "typescript_declarations"]

"""Write Runnel plugins in Python (componentize-py).

Your plugin is a class in ``app.py``; the role module next to it (``interceptor.py``,
``parser.py``, ...; ``runnel plugin new`` writes it) hands the class to this SDK, which
speaks the flat encoding for you:

- events are :class:`Event` objects whose ``fields`` and ``tags`` are plain dicts,
  decoded only when read (and with ``reads = [...]`` the host sends only those fields);
- what you return is plain Python: ``KEEP``, ``DROP``, a :class:`Patch`, a dict of
  fields, a list of route names, :class:`New` events;
- the plugin's config arrives as a dict;
- an exception is logged with its traceback in the agent's log, and the batch's events
  get the plugin's ``on_error`` treatment (the agent narrows it down to the events that
  fail).

See ``guest-plugins/sdk-python/README.md`` for the whole guide.
"""

from .api import (
    DROP,
    KEEP,
    Event,
    New,
    ParseError,
    Parsed,
    Patch,
    check_keys,
    counter,
    hostname,
    log,
    now,
    state,
)

__all__ = [
    "DROP",
    "KEEP",
    "Event",
    "New",
    "ParseError",
    "Parsed",
    "Patch",
    "check_keys",
    "counter",
    "hostname",
    "log",
    "now",
    "state",
]

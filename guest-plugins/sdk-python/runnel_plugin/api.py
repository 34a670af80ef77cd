"""What plugin code sees: events, results, and the host's functions."""

from . import flat

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "unknown")


class _Verdict:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


KEEP = _Verdict("KEEP")
"""Keep the event as it is (``None`` means the same)."""
DROP = _Verdict("DROP")
"""Drop the event (interceptors and processors)."""


class Patch:
    """Changes to one event; what is left ``None`` stays as it was.

    ``fields`` are merged into the event's fields (``replace_fields`` replaces them all),
    ``tags`` are set (added or replaced), ``level`` is a level name (``"warn"``),
    ``timestamp`` nanoseconds since the epoch, ``body`` bytes or text.
    """

    __slots__ = ("fields", "replace_fields", "tags", "level", "timestamp", "name", "body")

    def __init__(self, fields=None, replace_fields=None, tags=None, level=None,
                 timestamp=None, name=None, body=None):
        if fields is not None and replace_fields is not None:
            raise ValueError("a patch merges `fields` or sets `replace_fields`, not both")
        self.fields = fields
        self.replace_fields = replace_fields
        self.tags = tags
        self.level = level
        self.timestamp = timestamp
        self.name = name
        self.body = body


class Parsed:
    """What a parser found in a line: fields, and optionally level, timestamp, name."""

    __slots__ = ("fields", "level", "timestamp", "name")

    def __init__(self, fields=None, level=None, timestamp=None, name=None):
        self.fields = fields if fields is not None else {}
        self.level = level
        self.timestamp = timestamp
        self.name = name


class ParseError(Exception):
    """Return it (or raise it) from ``parse`` for a line that cannot be parsed: the event
    keeps its body and gets the ``parse_error`` tag, the batch goes on."""


class New:
    """A new event a processor emits (an aggregate, a joined multi-line event)."""

    __slots__ = ("name", "fields", "tags", "level", "timestamp", "body")

    def __init__(self, name, fields=None, tags=None, level="info", timestamp=None, body=b""):
        self.name = name
        self.fields = fields if fields is not None else {}
        self.tags = tags if tags is not None else {}
        self.level = level
        self.timestamp = timestamp
        self.body = body


class Event:
    """One event of a batch. ``fields`` and ``tags`` are dicts decoded on first use."""

    __slots__ = ("_batch", "_event", "index", "_fields", "_tags")

    def __init__(self, batch, event, index):
        self._batch = batch
        self._event = event
        self.index = index
        self._fields = None
        self._tags = None

    @property
    def name(self):
        span = self._event.name
        return self._batch.arena[span.offset : span.offset + span.len].decode()

    @property
    def body(self):
        """The raw body, bytes."""
        span = self._event.body
        return self._batch.arena[span.offset : span.offset + span.len]

    @property
    def text(self):
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode(errors="replace")

    @property
    def level(self):
        """The level's name: ``"info"``, ``"error"``, ..."""
        return LEVELS[self._event.level.value]

    @property
    def timestamp(self):
        """Nanoseconds since the Unix epoch, or None."""
        return self._event.timestamp

    @property
    def fields(self):
        if self._fields is None:
            nodes = self._batch.nodes
            self._fields = flat.read_value(
                self._batch.arena, nodes.kinds, nodes.keys, nodes.payloads,
                self._event.fields.start,
            )[0]
        return self._fields

    @property
    def tags(self):
        if self._tags is None:
            arena = self._batch.arena
            r = self._event.tags
            self._tags = {
                arena[t.key.offset : t.key.offset + t.key.len].decode():
                    arena[t.value.offset : t.value.offset + t.value.len].decode()
                for t in self._batch.tags[r.start : r.start + r.len]
            }
        return self._tags

    def __repr__(self):
        return f"Event(name={self.name!r}, level={self.level!r}, fields={self.fields!r})"


def check_keys(config, allowed):
    """Raises ValueError naming the first key of ``config`` not in ``allowed``."""
    for key in config:
        if key not in allowed:
            raise ValueError(f"unknown key `{key}` (expected one of: {', '.join(allowed)})")


# The host's functions: only inside a component (componentize-py's `wit_world`).
try:
    from wit_world.imports import host as _host
    from wit_world.imports import state as _state
    from wit_world.imports import types as _types
except ImportError:  # plain Python: the encoding can still be used and tested
    _host = _state = _types = None


def log(level, message):
    """Writes to the agent's log under the plugin's name (``level``: ``"info"``, ...)."""
    _host.log(_types.Level(LEVELS.index(level)), str(message))


def counter(name, delta=1):
    """Adds ``delta`` to the plugin's counter ``name`` (once per batch, not per event)."""
    _host.counter(name, delta)


def now():
    """Wall-clock time, nanoseconds since the Unix epoch (plugins have no other clock)."""
    return _host.now()


def hostname():
    return _host.hostname()


class _State:
    """Keyed state the agent keeps for the plugin: it survives traps, reloads and
    restarts, and a batch's changes count only if the batch succeeds. Keys and values
    are bytes (text is stored as UTF-8)."""

    @staticmethod
    def _bytes(b):
        return b.encode() if isinstance(b, str) else bytes(b)

    def get(self, key):
        return _state.get(self._bytes(key))

    def set(self, key, value):
        """Raises ``componentize_py_types.Err`` when the plugin's state cap is reached."""
        _state.set(self._bytes(key), self._bytes(value))

    def delete(self, key):
        _state.delete(self._bytes(key))


state = _State()

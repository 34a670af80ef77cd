"""The component side: an ``Instance`` class for each role, wrapping a plugin class.

A role module (``interceptor.py`` next to ``app.py``) is::

    import app
    from runnel_plugin.roles import interceptor
    Instance = interceptor(app.Plugin)

The plugin class is built with the config (a dict): ``Plugin(config)``. It may set
``reads`` (a list of the top-level fields it reads, so the host sends only those;
``None``: all) and, for a router, ``routes``. Then, per role:

- parser:      ``parse(line: bytes)`` → a dict of fields, a ``Parsed``, or a
               ``ParseError`` (returned or raised);
- interceptor: ``intercept(event)`` → ``KEEP`` (or ``None``), ``DROP``, a ``Patch``, or a
               dict of fields to merge;
- cleaner:     ``clean(event)`` → ``None`` (unchanged), a ``Patch`` or a dict to merge;
- router:      ``route(event)`` → a route name, a list of them, or ``None``;
- processor:   ``process(events)`` → an iterable of input events (kept), ``(event,
               Patch)`` pairs, and ``New`` events; optional ``tick(now)`` → ``New``
               events.
"""

import os
import traceback

from componentize_py_types import Err
from wit_world.imports import host, types

from . import api, flat

_NO_TAGS = types.Range(0, 0)


def _config(tree):
    value = flat.read_tree(tree.arena, tree.nodes, 0)
    return value if isinstance(value, dict) else {}


def _create(cls, tree):
    """Builds the plugin; a failure refuses the config with the Python error."""
    try:
        return cls(_config(tree))
    except Exception as e:  # noqa: BLE001 - any error refuses the config
        raise Err(f"{type(e).__name__}: {e}")


def _failed(what):
    """Logs the exception being handled, with its traceback, and traps the call: the
    agent then gives the batch's events the plugin's `on_error` treatment (narrowed down
    to the events that fail) and replaces the instance. (Aborting, rather than letting
    the exception escape, keeps componentize-py from printing it a second time.)"""
    host.log(types.Level.ERROR, f"{what} failed:\n{traceback.format_exc()}")
    os.abort()


def _reads(plugin):
    reads = getattr(plugin, "reads", None)
    return None if reads is None else [str(r) for r in reads]


def _base(cls):
    """What every role's ``Instance`` does the same way: build the plugin class ``cls``
    with the config in ``create``, and answer ``reads`` from it."""

    class Base:
        @classmethod
        def create(cls_, config):
            inst = cls_()
            inst.plugin = _create(cls, config)
            inst.created()
            return inst

        def created(self):
            """Called once the plugin is built (a role's own set-up)."""

        def reads(self):
            return _reads(self.plugin)

    return Base


class _Output:
    """A writer, plus the binding records it becomes."""

    def __init__(self):
        self.w = flat.Writer()

    def range(self, value):
        start, length = self.w.tree(value)
        return types.Range(start, length)

    def span(self, data):
        offset, length = self.w.span(data)
        return types.Span(offset, length)

    def tags(self, tags):
        start = len(self.w.tags)
        for key, value in tags.items():
            self.w.tags.append(types.Tag(self.span(str(key)), self.span(str(value))))
        return types.Range(start, len(self.w.tags) - start)

    def patch(self, p):
        if isinstance(p, dict):
            p = api.Patch(fields=p)
        if p.fields is not None:
            fields = types.FieldsUpdate_Merge(self.range(p.fields))
        elif p.replace_fields is not None:
            fields = types.FieldsUpdate_Replace(self.range(p.replace_fields))
        else:
            fields = None
        return types.Patch(
            fields=fields,
            tags=self.tags(p.tags) if p.tags else _NO_TAGS,
            level=_level(p.level),
            timestamp=p.timestamp,
            name=None if p.name is None else self.span(p.name),
            body=None if p.body is None else self.span(p.body),
        )

    def event(self, new):
        return types.Event(
            name=self.span(new.name),
            timestamp=new.timestamp,
            level=_level(new.level) or types.Level.INFO,
            body=self.span(new.body),
            fields=self.range(new.fields),
            tags=self.tags(new.tags),
        )

    def finish(self):
        w = self.w
        return types.OutputData(
            bytes(w.arena), types.Nodes(bytes(w.kinds), w.keys, w.payloads), w.tags
        )


def _level(name):
    return None if name is None else types.Level(api.LEVELS.index(name))


def _events(batch):
    return [api.Event(batch, e, i) for i, e in enumerate(batch.events)]


def parser(cls):
    from wit_world.exports import parser as wit

    class Instance(_base(cls)):

        def parse(self, input):
            out = _Output()
            results = []
            arena = input.arena
            parse = self.plugin.parse
            try:
                for packed in input.bodies:
                    offset = packed >> 32
                    try:
                        r = parse(arena[offset : offset + (packed & 0xFFFF_FFFF)])
                    except api.ParseError as e:
                        r = e
                    if isinstance(r, api.ParseError):
                        results.append(wit.ParseResult_Error(out.span(str(r))))
                        continue
                    if isinstance(r, dict):
                        r = api.Parsed(fields=r)
                    results.append(wit.ParseResult_Ok(wit.Parsed(
                        fields=out.range(r.fields),
                        level=_level(r.level),
                        timestamp=r.timestamp,
                        name=None if r.name is None else out.span(r.name),
                    )))
            except Exception:
                _failed("parse")
            return wit.ParseOutput(out.finish(), results)

    return Instance


def interceptor(cls):
    from wit_world.exports import interceptor as wit

    keep, drop = wit.Action_Keep(), wit.Action_Drop()

    class Instance(_base(cls)):

        def intercept(self, input):
            out = _Output()
            actions = []
            intercept = self.plugin.intercept
            try:
                for event in _events(input):
                    r = intercept(event)
                    if r is None or r is api.KEEP:
                        actions.append(keep)
                    elif r is api.DROP:
                        actions.append(drop)
                    else:
                        actions.append(wit.Action_Patch(out.patch(r)))
            except Exception:
                _failed("intercept")
            return wit.InterceptOutput(out.finish(), actions)

    return Instance


def cleaner(cls):
    from wit_world.exports import cleaner as wit

    class Instance(_base(cls)):

        def clean(self, input):
            out = _Output()
            patches = []
            clean = self.plugin.clean
            try:
                for event in _events(input):
                    r = clean(event)
                    patches.append(None if r is None or r is api.KEEP else out.patch(r))
            except Exception:
                _failed("clean")
            return wit.CleanOutput(out.finish(), patches)

    return Instance


def router(cls):
    class Instance(_base(cls)):
        def created(self):
            self.bits = {name: 1 << i for i, name in enumerate(self.routes())}

        def routes(self):
            return [str(r) for r in getattr(self.plugin, "routes", [])]

        def route(self, input):
            masks = []
            route = self.plugin.route
            bits = self.bits
            try:
                for event in _events(input):
                    r = route(event)
                    if r is None:
                        masks.append(0)
                    elif isinstance(r, str):
                        masks.append(bits[r])
                    else:
                        mask = 0
                        for name in r:
                            mask |= bits[name]
                        masks.append(mask)
            except Exception:
                _failed("route")
            return masks

    return Instance


def processor(cls):
    from wit_world.exports import processor as wit

    class Instance(_base(cls)):

        def process(self, input):
            try:
                return self._emit(self.plugin.process(_events(input)))
            except Exception:
                _failed("process")

        def tick(self, now):
            tick = getattr(self.plugin, "tick", None)
            try:
                return self._emit(tick(now) if tick else ())
            except Exception:
                _failed("tick")

        def _emit(self, items):
            out = _Output()
            emitted = []
            for item in items or ():
                if isinstance(item, api.Event):
                    emitted.append(wit.Emit_Keep(item.index))
                elif isinstance(item, api.New):
                    emitted.append(wit.Emit_New(out.event(item)))
                else:
                    event, patch = item
                    emitted.append(wit.Emit_Patched((event.index, out.patch(patch))))
            return wit.ProcessOutput(out.finish(), emitted)

    return Instance

"""The tester side of a split run (pasted after wire.py into the trusted tester program).

It runs the benchmark's own code (the prompt's helpers, the tests) with every name the tests
take from the candidate bound to a proxy: a call sends the arguments down the request pipe and
returns what wire.decode makes of the answer, so only plain data built here ever reaches an
`assert`. An exception the candidate raised is raised here again as the built-in exception of
that name (or CandidateError), so tests that expect one still work.

The verdict is one line on this program's stdout, `<nonce> {"passed": ...}`, printed only here,
after the tests returned. It is "failed" whatever the tests did when the candidate broke the
protocol: it died or stopped answering, sent something that is not plain data, its code did not
load, or a non-plain value (a handle) was compared or tested for truth.
"""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one."""


class CandidateBroke(Exception):
    """The candidate broke the protocol: the verdict is 'failed' whatever the tests do next."""


def _tester_main(cfg, prelude, tests, bindings):
    import builtins
    import json
    import linecache
    import sys
    import traceback

    req_fd, rep_fd, nonce = cfg["req"], cfg["rep"], cfg["nonce"]
    state = {"broken": None, "calls": 0}

    def broke(why):
        if state["broken"] is None:
            state["broken"] = why
        raise CandidateBroke(state["broken"])

    class Remote(object):
        """An object that lives in the candidate process: it can be called, passed back, and asked
        for attributes; it cannot be compared, hashed by value or tested for truth."""

        __slots__ = ("_h",)

        def __init__(self, h):
            object.__setattr__(self, "_h", h)

        def __call__(self, *args, **kwargs):
            return request({"h": self._h}, "call", True, args=args, kwargs=kwargs)

        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return request({"h": self._h}, "getattr", True, attr=attr)

        def __setattr__(self, attr, value):
            request({"h": self._h}, "setattr", True, attr=attr, value=value)

        def __repr__(self):
            return "<candidate object %d>" % self._h

        def _judged(self, *_):
            broke("a non-plain value from the candidate was compared or tested")

        __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __len__ = __iter__ = _judged
        __contains__ = __index__ = __int__ = __float__ = __str__ = __format__ = _judged
        __hash__ = object.__hash__

    def outgoing(obj):
        return obj._h if type(obj) is Remote else None

    def request(target, op, handles, args=(), kwargs=None, attr=None, value=None):
        if state["broken"] is not None:
            raise CandidateBroke(state["broken"])
        msg = dict(target, op=op, handles=handles)
        try:
            if op == "call":
                msg["args"] = encode(list(args), outgoing)
                msg["kwargs"] = encode(dict(kwargs or {}), outgoing)
            if attr is not None:
                msg["attr"] = attr
            if op == "setattr":
                msg["value"] = encode(value, outgoing)
        except NotPlain as exc:
            raise TypeError("the tests passed a value that cannot be sent to the candidate: %s" % exc)
        state["calls"] += 1
        try:
            send(req_fd, msg)
            reply = receive(rep_fd)
        except BrokenPipeError:
            broke("the candidate program ended before answering (it exited, crashed or was killed)")
        except (OSError, WireError) as exc:
            broke("the candidate's answer was not readable (%s)" % exc)
        if reply is None:
            broke("the candidate program ended before answering (it exited, crashed or was killed)")
        if type(reply) is not dict or len(reply) != 1:
            broke("the candidate sent a malformed answer")
        (kind, body), = reply.items()
        if kind == "ok":
            try:
                return decode(body, Remote if handles else None)
            except WireError as exc:
                broke("the candidate returned something that is not plain data (%s)" % exc)
        if kind == "raise" and type(body) is list and len(body) == 2 and all(type(p) is str for p in body):
            name, text = body
            cls = getattr(builtins, name, None)
            # Raised again as itself where that is harmless; never StopIteration, which would end
            # a map() or a generator inside the tests early (`all(map(candidate, xs))` is then True).
            if (isinstance(cls, type) and issubclass(cls, Exception)
                    and not issubclass(cls, (UnicodeError, StopIteration, StopAsyncIteration))):
                try:
                    exc = cls(text)
                except Exception:
                    exc = CandidateError("%s: %s" % (name, text))
            elif name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
                broke("the candidate raised %s" % name)
            else:
                exc = CandidateError("%s: %s" % (name, text))
            raise exc
        if kind == "not_plain" and type(body) is str:
            broke("the candidate returned a value that is not plain data (%s)" % body[:300])
        if kind == "load_error" and type(body) is list and len(body) == 2 and all(type(p) is str for p in body):
            broke("the candidate's code did not load: %s: %s" % (body[0], body[1][:500]))
        broke("the candidate sent a malformed answer")

    def named(name, handles):
        def proxy(*args, **kwargs):
            return request({"name": name}, "call", handles, args=args, kwargs=kwargs)

        proxy.__name__ = proxy.__qualname__ = name
        return proxy

    def load(source, filename, ns):
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), ns)

    ns = {"__name__": "__tester__"}
    verdict = {"passed": False, "error": "", "calls": 0}
    try:
        if prelude:
            load(prelude, "prompt.py", ns)
        for name, handles in bindings:
            ns[name] = named(name, handles)
        load(tests, "tests.py", ns)
        if state["broken"] is None:
            verdict["passed"] = True
    except CandidateBroke:
        pass
    except BaseException as exc:  # AssertionError, or whatever the tests raised
        # The harness's own frames say nothing about the test: only the prompt's and the tests' are shown.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("prompt.py", "tests.py")]
        lines = (["Traceback (most recent call last):\n"] + traceback.format_list(frames)
                 + traceback.format_exception_only(type(exc), exc))
        sys.stderr.write("".join(lines))
        verdict["error"] = "".join(lines[-6:])[-2000:]
    if state["broken"] is not None:
        verdict["passed"] = False
        verdict["error"] = "CandidateBroke: " + state["broken"]
    verdict["calls"] = state["calls"]
    sys.stdout.flush()
    sys.stdout.write("\n%s %s\n" % (nonce, json.dumps(verdict)))
    sys.stdout.flush()
